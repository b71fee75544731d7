"""Issue 10's "Found" list: each case pinned against real stores, ports and brokers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collector.acquisition.clock import SteppedClock
from collector.acquisition.headend import HeadEnd
from collector.config.settings import (
    ModbusSettings,
    MqttSettings,
    Schedule,
    Settings,
    StorageSettings,
)
from collector.ops.metrics import Metrics
from collector.ops.supervise import Supervisor
from collector.runtime.daemon import run_collector
from model import Meter
from protocols.errors import TransportError
from protocols.modbus.frames import ModbusFrameError, mbap_unwrap_header
from protocols.modbus.profile import find_profile
from protocols.serial import LineSettings, SerialBus
from simulator.broker import Mosquitto
from simulator.modbus_meter import ModbusFaults
from simulator.modbus_tcp import ModbusTcpSimulator, modbus_meters
from storage.base import Store
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

ROOT = Path(__file__).resolve().parents[2]
NOW_TS = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)


def reading(meter: str = "m1", value: object = 1.5, ts: datetime = NOW_TS) -> dict[str, object]:
    return {"meter": meter, "quantity": "1-0:1.8.0", "ts": ts.isoformat(), "value": value,
            "unit": "kWh"}


def message(seq: int, readings: list[dict[str, object]], gateway: str = "gw1",
            **extra: object) -> tuple[str, bytes]:
    body: dict[str, object] = {"v": 1, "gateway": gateway, "seq": seq, "readings": readings}
    body.update(extra)
    return f"mc/v1/{gateway}/readings", json.dumps(body).encode()


def poison(seq: int, old: bytes, new: bytes) -> tuple[str, bytes]:
    """A good message with `old` swapped for `new` in its bytes."""
    topic, payload = message(seq, [reading()])
    assert old in payload
    return topic, payload.replace(old, new)


POISON = [
    ("mc/v1/gw1/readings", b'{"v":1,"x":' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
    ("mc/v1/gw1/readings", b'{"v":1,"gateway":"gw1","seq":' + b"9" * 5000 + b"}"),
    poison(2, b"1.5", b"1" + b"0" * 400),
    poison(3, NOW_TS.isoformat().encode(), b"0001-01-01T00:30:00+01:00"),
    poison(4, b'"m1"', b'"m\\ud800"'),
    poison(5, b'"m1"', b'"m\\u0000"'),
    ("mc/v1/gw1/readings", json.dumps({"v": 1, "gateway": "gw1", "seq": 6, "attempts": [
        {"meter": "m1", "bus": "b", "ts": NOW_TS.isoformat(), "outcome": "ok",
         "latency_ms": 1}]}).encode().replace(b'"latency_ms": 1', b'"latency_ms": NaN')),
    ("mc/v1/gw1/readings", json.dumps({"v": 1, "gateway": "gw1", "seq": 7, "events": [
        {"meter": "m1", "ts": NOW_TS.isoformat(), "kind": "k", "details": {"x": 1}}]}).encode()
     .replace(b'"x": 1', b'"x": Infinity')),
    ("mc/v1/../readings", b"{}"),
]


def refuse_meter(store: Store, meter: str) -> None:
    """A real refusal by the database itself (a constraint), for rows that pass validation."""
    if isinstance(store, SqliteStore):
        with sqlite3.connect(store.path) as db:
            db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON series WHEN NEW.meter_id = "
                       f"'{meter}' BEGIN SELECT RAISE(ABORT, 'meter {meter} refused'); END")
    else:
        assert isinstance(store, PostgresStore)
        with psycopg.connect(store.url) as conn:
            conn.execute(f"ALTER TABLE series ADD CONSTRAINT refuse "
                         f"CHECK (meter_id <> '{meter}')")


async def test_poison_messages_end_as_one_dead_letter_each_and_the_rest_are_stored(
        store: Store) -> None:
    head = HeadEnd(MqttSettings(role="headend"), store)
    refuse_meter(store, "refuse-me")
    good = [message(100 + i, [reading(f"g{i}")]) for i in range(5)]
    mixed = message(200, [reading("ok-a"), reading("refuse-me"), reading("ok-b")])
    stream = [good[0], *POISON[:4], good[1], mixed, *POISON[4:], good[2]]
    await head.handle_many(stream)
    # A redelivery of everything (no ack reached the broker) changes nothing.
    await head.handle_many(stream)
    await head.handle_many(good[3:])
    stored = {r.meter_id for r in await store.latest_readings()}
    assert stored == {"g0", "g1", "g2", "g3", "g4", "ok-a", "ok-b"}
    assert await store.count_readings() == 7
    letters = await store.dead_letters()
    assert len(letters) == len(POISON) + 1
    reasons = [reason for _, _, reason in letters]
    assert all(reasons), reasons
    assert any("storage refused 1 of 3 rows" in r and "readings[1]" in r for r in reasons)
    assert sum("nests too deeply" in r for r in reasons) == 1
    assert head.stats.dead_letters == 2 * (len(POISON) + 1)


async def test_storage_outage_is_retried_and_sigterm_ends_the_retry_unacknowledged(
        tmp_path: Path) -> None:
    from collector.acquisition.headend import Stopping

    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    await store.close()  # every write now fails as if the database were gone
    head = HeadEnd(MqttSettings(role="headend"), _Unavailable(store))
    task = asyncio.create_task(head.handle_many([message(1, [reading()])]))
    while head.stats.storage_retries < 2:
        await asyncio.sleep(0.05)
    head.stop()
    with pytest.raises(Stopping):
        await asyncio.wait_for(task, 5)


class _Unavailable:
    """A store whose database has gone away: every write is a transient failure."""

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner

    async def write_readings(self, readings: object) -> None:
        from storage.base import StorageUnavailable

        raise StorageUnavailable("database restarting")


async def test_a_modbus_register_decoding_to_nan_costs_that_value_not_the_bus(
        tmp_path: Path) -> None:
    start = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    clock = SteppedClock(start - timedelta(minutes=10))
    meters = modbus_meters(find_profile("dtsu666"), range(1, 5))
    meters[2].faults = ModbusFaults(nan_obis=frozenset({"1-0:1.8.0", "1-0:16.7.0"}))
    meters[3].faults = ModbusFaults(nan_obis=frozenset({"1-0:1.8.0"}))
    sim = ModbusTcpSimulator(meters, clock.now)
    port = await sim.start()
    settings = Settings(
        source="(test)", storage=StorageSettings(url=f"sqlite:///{tmp_path / 'nan.db'}"),
        meters=tuple(Meter(f"t{u}", "modbus-tcp", f"127.0.0.1:{port}", str(u), model="dtsu666")
                     for u in range(1, 5)),
        modbus=ModbusSettings(host_concurrency=2, timeout_ms=500),
        schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0", "1-0:16.7.0")),),
    )
    store = SqliteStore(str(tmp_path / "nan.db"))
    try:
        stats = await run_collector(settings, clock=clock, until=start + timedelta(hours=1),
                                    store=store, handle_signals=False)
        rows = await store.collection_summary(start - timedelta(hours=1),
                                              start + timedelta(hours=2))
    finally:
        await sim.stop()
        await store.close()
    by_meter = {r.group: r for r in rows}
    assert by_meter["t1"].ok == by_meter["t4"].ok == 5  # healthy meters on the host
    assert by_meter["t2"].errors == 5 and "decodes to nan" in by_meter["t2"].last_error
    assert by_meter["t3"].ok == 5 and "1-0:1.8.0" in by_meter["t3"].last_error
    assert stats.meters["t3"].attempts == 5


async def test_a_wrong_mqtt_password_is_reported_and_retried_not_silently_dropped(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Mosquitto({"collector": "secret"})
    broker.start()
    os.environ["COLLECTOR_TEST_WRONG_PW"] = "wrong"
    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    supervisor = Supervisor(Metrics(), initial_s=0.05, max_s=0.1, loop_count=3)
    head = HeadEnd(MqttSettings(role="headend", port=broker.port, username="collector",
                                password_env="COLLECTOR_TEST_WRONG_PW"), store)
    unset = HeadEnd(MqttSettings(role="headend", port=broker.port, username="collector",
                                 password_env="COLLECTOR_TEST_UNSET_PW"), store)
    caplog.set_level(logging.ERROR)
    tasks = [supervisor.start("headend", head.run), supervisor.start("unset", unset.run)]
    try:
        while len(supervisor.restart_loops()) < 2:
            await asyncio.sleep(0.05)
    finally:
        supervisor.stop()
        head.stop()
        unset.stop()
        await asyncio.gather(*tasks)
        broker.destroy()
        await store.close()
    loops = supervisor.restart_loops()
    assert "refused user 'collector'" in loops["headend"]
    assert "COLLECTOR_TEST_UNSET_PW is not set" in loops["unset"]
    assert "refused user 'collector'" in caplog.text
    assert supervisor.metrics.task_restarts.labels("headend")._value.get() >= 3


async def test_a_pty_bus_reopens_with_even_parity_any_number_of_times() -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        for _ in range(3):
            bus = await SerialBus.open("bus1", os.ttyname(slave), LineSettings(9600, "E"))
            await bus.close()
    finally:
        os.close(master)
        os.close(slave)


async def test_a_port_that_refuses_its_line_settings_is_a_clear_transport_error() -> None:
    import tty

    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    seven_bits = LineSettings(9600, "N", bytesize=7)
    try:
        first = await SerialBus.open("bus1", path, seven_bits)
        await first.close()
        # A pty carries 8-bit bytes only: once configured, termios refuses 7 bits (EINVAL).
        with pytest.raises(TransportError, match=f"cannot open {path} at 9600 baud 7N1"):
            await SerialBus.open("bus1", path, seven_bits)
    finally:
        os.close(master)
        os.close(slave)


def test_a_short_mbap_header_is_a_frame_error() -> None:
    with pytest.raises(ModbusFrameError, match="MBAP header has 5 bytes"):
        mbap_unwrap_header(b"\x00\x01\x00\x00\x00")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "collector.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


CONFIG = """
[storage]
url = "{url}"
[[bus]]
name = "bus1"
port = "/dev/null-nonexistent"
[[meter]]
id = "m1"
bus = "bus1"
address = "000000000001"
[[schedule]]
name = "i"
every = "15m"
quantities = ["1-0:1.8.0"]
"""


@pytest.mark.parametrize("url", ["sqlite:////proc/no-such-dir/collector.db",
                                 "postgresql://collector@127.0.0.1:1/none"])
def test_a_store_that_cannot_be_opened_is_a_clear_message_not_a_traceback(
        tmp_path: Path, url: str) -> None:
    (tmp_path / "c.toml").write_text(CONFIG.format(url=url))
    done = run_cli("run", "-c", "c.toml", cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert "[storage] url" in done.stdout and url in done.stdout


def test_an_insecure_remote_broker_is_refused_unless_allowed(tmp_path: Path) -> None:
    from collector.config import settings as config
    from collector.errors import ConfigError

    base = {"collector": {"gateway": "gw1"}, "mqtt": {"role": "gateway", "host": "10.1.2.3"}}
    with pytest.raises(ConfigError, match="without TLS and without credentials is refused"):
        config.parse(base)
    allowed = config.parse({**base, "mqtt": {**base["mqtt"], "allow_insecure": True}})
    assert allowed.mqtt.allow_insecure
    assert config.parse({**base, "mqtt": {**base["mqtt"], "host": "127.0.0.1"}}).mqtt.host


async def test_sqlite_files_are_created_readable_by_their_owner_only(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "private.db"))
    await store.migrate()
    await store.write_readings([])
    await store.upsert_meters([Meter("m1", "dlt645", "bus1", "000000000001")])
    for name in ("private.db", "private.db-wal"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    await store.close()


def test_version_and_service_units(tmp_path: Path) -> None:
    version = run_cli("--version", cwd=tmp_path)
    assert version.returncode == 0 and "0.1.0" in version.stdout
    done = run_cli("service", "install", "headend", "--dest", str(tmp_path / "units"),
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    unit = (tmp_path / "units" / "meter-collector-headend.service").read_text()
    for line in ("Restart=on-failure", "User=meter-collector", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "run --config /etc/meter-collector/collector.toml"):
        assert line in unit
