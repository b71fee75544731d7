"""Gateway → mosquitto → head-end → storage, with a real broker started on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt
import psycopg
import pytest

from collector.acquisition import mqtt_link
from collector.acquisition.clock import SimulatedClock, SteppedClock, align_down
from collector.acquisition.headend import HeadEnd
from collector.acquisition.uplink import Uplink
from collector.config.settings import (
    BusConfig,
    CollectorSettings,
    MqttSettings,
    Schedule,
    Settings,
    StorageSettings,
)
from collector.runtime.daemon import run_collector, store_for
from model import Meter, Reading
from protocols.mqtt import schema, topics
from simulator.broker import Mosquitto
from simulator.concentrator import ConcentratorSpec, publish, readings
from simulator.dlt645_meter import MeterFaults
from simulator.fleet import FleetSpec, build_fleet, meter_address
from storage.base import Store
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.integration.conftest import PASSWORD_ENV, TZ
from tests.support.services import PgCluster

START = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)


def mqtt(broker: Mosquitto, role: str, **kw: object) -> MqttSettings:
    return MqttSettings(role=role, port=broker.port, username="collector",
                        password_env=PASSWORD_ENV, **kw)  # type: ignore[arg-type]


async def started_headend(settings: MqttSettings, store: Store, client_id: str,
                          now: Callable[[], datetime] | None = None,
                          ) -> tuple[HeadEnd, asyncio.Task[None]]:
    """A head-end running and subscribed, so nothing published from here on is missed.
    `now` is the clock it judges timestamps by: the test's, where the data is on one."""
    head = HeadEnd(settings, store, client_id=client_id, now=now)
    task = asyncio.create_task(head.run())
    await asyncio.wait_for(head.ready.wait(), 10)
    return head, task


async def wait_for_count(store: PostgresStore | SqliteStore, n: int, within: float = 30) -> int:
    count = 0
    for _ in range(int(within / 0.1)):
        count = await store.count_readings()
        if count >= n:
            break
        await asyncio.sleep(0.1)
    return count


async def test_meters_to_gateway_to_broker_to_headend_to_postgres_match_exactly(
    broker: Mosquitto, pg_cluster: PgCluster, tmp_path: Path,
) -> None:
    pg = PostgresStore(pg_cluster.create_database("mqtt_e2e"))
    await pg.migrate()
    clock = SteppedClock(START - timedelta(minutes=10))
    head, head_task = await started_headend(mqtt(broker, "headend"), pg, "he-e2e", clock.now)
    fleet = build_fleet(FleetSpec(meters=6, buses=2, tz=TZ), clock.now, START - timedelta(days=1))
    await fleet.start()
    settings = Settings(
        source="(test)", collector=CollectorSettings(timezone="Asia/Shanghai", gateway="gw-e2e"),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'gw.db'}"),
        buses=tuple(BusConfig(f"bus{i + 1}", p, baud=38400, latency_ms=10)
                    for i, p in enumerate(fleet.paths)),
        meters=tuple(Meter(f"m{n}", "dlt645", f"bus{fleet.bus_of[n] + 1}", meter_address(n))
                     for n in range(1, 7)),
        schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0", "1-0:32.7.0")),),
        mqtt=mqtt(broker, "gateway", batch_size=20),
    )
    try:
        stats = await run_collector(settings, clock=clock, until=START + timedelta(hours=2),
                                    handle_signals=False)
    finally:
        await fleet.stop()
    gateway_rows = stats.readings
    assert gateway_rows == 6 * 9 * 2
    assert await wait_for_count(pg, gateway_rows) == gateway_rows
    with psycopg.connect(pg.url) as conn:
        attempts = conn.execute("SELECT count(*), min(gateway) FROM collection_attempts").fetchone()
    assert attempts == (6 * 9, "gw-e2e")
    head.stop()
    await head_task
    await pg.close()


async def preload_outbox(path: Path, n: int) -> SqliteStore:
    store = SqliteStore(str(path), outbox=True, outbox_max_rows=1_000_000)
    await store.migrate()
    # 40 meters' recent history: a backlog a head-end accepts (timestamps near now).
    t0 = align_down(datetime.now(UTC), timedelta(days=1)) - timedelta(days=n // 40 // 96 + 1)
    await store.write_readings([Reading(f"m{i % 40}", "1-0:1.8.0",
                                        t0 + timedelta(minutes=15 * (i // 40)), float(i), "kWh")
                                for i in range(n)])
    return store


async def test_a_broker_restart_mid_stream_loses_and_doubles_nothing(
    broker: Mosquitto, tmp_path: Path,
) -> None:
    head_store = SqliteStore(str(tmp_path / "he.db"))
    await head_store.migrate()
    head, head_task = await started_headend(mqtt(broker, "headend"), head_store, "he-restart")
    gw = await preload_outbox(tmp_path / "gw.db", 20_000)
    up = Uplink(mqtt(broker, "gateway", batch_size=100), "gw-r", gw)
    up_task = asyncio.create_task(up.run())
    await wait_for_count(head_store, 2000)
    assert up.ready.is_set()  # what the gateway's /readyz reports as "broker"
    await asyncio.to_thread(broker.stop)           # mid-stream
    await asyncio.sleep(1.0)
    await asyncio.to_thread(broker.start)
    assert await wait_for_count(head_store, 20_000, within=60) == 20_000
    assert await gw.outbox_size() == 0
    assert up.stats.connects >= 2 and head.stats.connects >= 2
    up.stop()
    head.stop()
    await asyncio.gather(up_task, head_task)


WORKER_SCRIPT = textwrap.dedent("""
    import asyncio, json, signal, sys
    from collector.config.settings import MqttSettings
    from collector.acquisition.headend import HeadEnd
    from storage.postgres import PostgresStore

    async def main():
        store = PostgresStore(sys.argv[2])
        await store.migrate()
        head = HeadEnd(MqttSettings(role="headend", port=int(sys.argv[1]), username="collector",
                                    password_env="COLLECTOR_TEST_MQTT_PASSWORD"), store,
                       client_id=sys.argv[3])
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, head.stop)
        task = asyncio.create_task(head.run())
        await head.ready.wait()
        print("subscribed", flush=True)
        await task
        print(json.dumps({"readings": head.stats.readings, "new": head.stats.new}), flush=True)
        await store.close()

    asyncio.run(main())
""")


async def test_a_headend_killed_mid_stream_gets_every_message_again_exactly_once(
    broker: Mosquitto, pg_cluster: PgCluster, tmp_path: Path,
) -> None:
    url = pg_cluster.create_database("mqtt_kill")
    pg = PostgresStore(url)
    await pg.migrate()
    script = tmp_path / "headend.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def spawn() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, str(script), str(broker.port), url,
                                 "he-killable"], env=env, stdout=subprocess.PIPE)
        # Subscribed with a persistent session: what it misses from now on waits for it.
        assert proc.stdout is not None and proc.stdout.readline() == b"subscribed\n"
        return proc

    first = await asyncio.to_thread(spawn)
    gw = await preload_outbox(tmp_path / "gw.db", 20_000)
    up = Uplink(mqtt(broker, "gateway", batch_size=100), "gw-k", gw)
    up_task = asyncio.create_task(up.run())
    await wait_for_count(pg, 3000)
    first.send_signal(signal.SIGKILL)               # mid-stream, no goodbye
    first.wait()
    stored_at_kill = await pg.count_readings()
    second = await asyncio.to_thread(spawn)
    try:
        assert await wait_for_count(pg, 20_000, within=90) == 20_000
        with psycopg.connect(url) as conn:
            distinct = conn.execute("SELECT count(DISTINCT (meter_id, quantity, ts)) "
                                    "FROM reading_values").fetchone()[0]
        assert distinct == 20_000
        assert stored_at_kill < 20_000
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(10)
        up.stop()
        await up_task
        await pg.close()


GATEWAY_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo
    from collector.acquisition.clock import SimulatedClock, align_down
    from collector.config.settings import (BusConfig, CollectorSettings, MqttSettings, Schedule,
                                  Settings, StorageSettings)
    from collector.runtime.daemon import run_collector
    from model import Meter
    from simulator.fleet import FleetSpec, build_fleet, meter_address

    async def main():
        start = datetime.fromisoformat(sys.argv[3])
        clock = SimulatedClock(start, speed=7200)
        fleet = build_fleet(FleetSpec(meters=4, buses=1, tz=ZoneInfo("Asia/Shanghai")),
                            clock.now, start - timedelta(days=1))
        (path,) = await fleet.start()
        settings = Settings(
            source="(power-cut)",
            collector=CollectorSettings(gateway="gw-cut"),
            storage=StorageSettings(url="sqlite:///" + sys.argv[1]),
            buses=(BusConfig("bus1", path, baud=38400, latency_ms=10),),
            meters=tuple(Meter(f"m{n}", "dlt645", "bus1", meter_address(n)) for n in range(1, 5)),
            schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0",)),),
            mqtt=MqttSettings(role="gateway", port=int(sys.argv[2])),  # nobody listens there
        )
        print("running", flush=True)
        await run_collector(settings, clock=clock, handle_signals=False)

    asyncio.run(main())
""")


async def test_a_power_cut_on_the_gateway_loses_nothing_it_had_stored(
    broker: Mosquitto, tmp_path: Path,
) -> None:
    from simulator.ports import free_port

    db = tmp_path / "gw.db"
    script = tmp_path / "gateway.py"
    script.write_text(GATEWAY_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen([sys.executable, str(script), str(db), str(free_port()),
                             START.isoformat()], env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"running\n"
    def stored_so_far() -> int:
        with contextlib.suppress(sqlite3.OperationalError), sqlite3.connect(db) as conn:
            return int(conn.execute("SELECT count(*) FROM readings").fetchone()[0])
        return 0  # not migrated yet

    # Polling, uplink dead, outbox filling: a few slots in, however slow the start was.
    for _ in range(600):
        if stored_so_far() >= 12:
            break
        await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gw = SqliteStore(str(db), outbox=True)
    stored = await gw.count_readings()

    with sqlite3.connect(db) as conn:
        attempts = conn.execute("SELECT count(*) FROM collection_attempts").fetchone()[0]
    # Every stored reading and attempt is still queued: the kill lost nothing.
    assert stored > 0 and await gw.outbox_size() == stored + attempts
    head_store = SqliteStore(str(tmp_path / "he.db"))
    await head_store.migrate()
    # The gateway's simulated clock began at START and ran at 7200×: judged as of a month
    # on (a slow start-up runs simulated days), not as of today, a year or more later.
    head, head_task = await started_headend(mqtt(broker, "headend"), head_store, "he-cut",
                                            lambda: START + timedelta(days=30))
    up = Uplink(mqtt(broker, "gateway"), "gw-cut", gw)  # the gateway after power returns
    up_task = asyncio.create_task(up.run())
    assert await wait_for_count(head_store, stored) == stored
    up.stop()
    head.stop()
    await asyncio.gather(up_task, head_task)


async def test_two_headend_workers_on_a_shared_subscription_store_each_reading_once(
    broker: Mosquitto, pg_cluster: PgCluster,
) -> None:
    url = pg_cluster.create_database("mqtt_shared")
    stores = [PostgresStore(url), PostgresStore(url)]
    await stores[0].migrate()
    workers = [HeadEnd(mqtt(broker, "headend"), s, client_id=f"he-w{i}")
               for i, s in enumerate(stores)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    for w in workers:
        await asyncio.wait_for(w.ready.wait(), 10)
    spec = ConcentratorSpec(meters=50, intervals=96, batch=100)
    async with mqtt_link.client(mqtt(broker, "gateway"), "dc-pub") as client:
        published = await publish(spec, client)
    total = len(readings(spec))
    assert await wait_for_count(stores[0], total) == total
    assert all(w.stats.batches > 0 for w in workers)
    assert sum(w.stats.batches for w in workers) == published
    assert sum(w.stats.new for w in workers) == total
    for w in workers:
        w.stop()
    await asyncio.gather(*tasks)
    for s in stores:
        await s.close()


async def test_duplicates_out_of_order_and_malformed_payloads_from_a_concentrator(
    broker: Mosquitto, tmp_path: Path,
) -> None:
    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    head, task = await started_headend(mqtt(broker, "headend"), store, "he-dc")
    spec = ConcentratorSpec(meters=20, intervals=48, batch=50, duplicate_every=3, shuffle=True,
                            malformed=5)
    async with mqtt_link.client(mqtt(broker, "gateway"), "dc-pub") as client:
        await publish(spec, client)
        await client.publish(topics.topic("dc-01", "readings"),
                             schema.encode_batch("someone-else", 1, readings=readings(spec)[:1]),
                             qos=1)
    total = len(readings(spec))
    assert await wait_for_count(store, total) == total
    for _ in range(50):
        if head.stats.dead_letters == 6:
            break
        await asyncio.sleep(0.1)
    reasons = [reason for _, _, reason in await store.dead_letters()]
    assert len(reasons) == 6
    assert any("not UTF-8" in r for r in reasons)
    assert any("not JSON" in r for r in reasons)
    assert any("unsupported payload version 9" in r for r in reasons)
    assert any("batch.gateway is missing" in r for r in reasons)
    assert any("'someone-else' in the payload, 'dc-01' in the topic" in r for r in reasons)
    assert await store.count_readings() == total
    head.stop()
    await task


async def test_a_wrong_password_is_refused_with_a_clear_error(broker: Mosquitto,
                                                             tmp_path: Path) -> None:
    os.environ["COLLECTOR_TEST_WRONG_PW"] = "not-the-password"
    settings = MqttSettings(role="headend", port=broker.port, username="collector",
                            password_env="COLLECTOR_TEST_WRONG_PW")
    store = SqliteStore(str(tmp_path / "he.db"))
    with pytest.raises(mqtt_link.MqttAuthError, match="refused user 'collector'"):
        await asyncio.wait_for(HeadEnd(settings, store).run(), 10)


async def next_on(client: aiomqtt.Client, kind: str) -> aiomqtt.Message:
    """The next message on gateway gw-cmd's `kind` topic, skipping any others."""
    async with asyncio.timeout(30):
        async for message in client.messages:
            if message.topic.matches(topics.topic("gw-cmd", kind)):
                return message
    raise AssertionError("the subscription ended")


async def test_the_gateway_answers_an_on_demand_read_command(
    broker: Mosquitto, tmp_path: Path,
) -> None:
    clock = SimulatedClock(START - timedelta(minutes=10), speed=60)
    fleet = build_fleet(FleetSpec(meters=2, buses=1, tz=TZ,
                                  faults={2: MeterFaults(clock_offset_s=200.0)}),
                        clock.now, START - timedelta(days=1))
    (path,) = await fleet.start()
    settings = Settings(
        source="(test)", collector=CollectorSettings(timezone="Asia/Shanghai",
                                                     gateway="gw-cmd"),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'gw.db'}"),
        buses=(BusConfig("bus1", path, baud=38400, latency_ms=10),),
        meters=(Meter("m2", "dlt645", "bus1", meter_address(2)),),
        schedules=(Schedule("daily", timedelta(days=1), ("1-0:1.8.0",)),),
        mqtt=mqtt(broker, "gateway"),
    )
    gateway = asyncio.create_task(run_collector(settings, clock=clock, handle_signals=False))
    try:
        async with mqtt_link.client(mqtt(broker, "headend"), "he-cmd") as client:
            await client.subscribe(topics.topic("gw-cmd", "status"), qos=1)
            await client.subscribe(topics.topic("gw-cmd", "cmd/reply"), qos=1)
            # The gateway is listening for commands once it says it is online.
            while json.loads((await next_on(client, "status")).payload)["state"] != "online":
                pass
            command = schema.Command("c-1", "read", "m2", ("1-0:1.8.0", "1-0:32.7.0"))
            await client.publish(topics.topic("gw-cmd", "cmd"), schema.encode_command(command),
                                 qos=1)
            message = await next_on(client, "cmd/reply")
        reply = json.loads(message.payload)  # type: ignore[arg-type]
        assert reply["id"] == "c-1" and reply["ok"] is True
        assert {r["quantity"] for r in reply["readings"]} == {"1-0:1.8.0", "1-0:32.7.0"}
        async with mqtt_link.client(mqtt(broker, "headend"), "he-cmd2") as client:
            await client.subscribe(topics.topic("gw-cmd", "cmd/reply"), qos=1)
            sync = schema.Command("c-2", "time_sync")
            await client.publish(topics.topic("gw-cmd", "cmd"), schema.encode_command(sync),
                                 qos=1)
            message = await next_on(client, "cmd/reply")
        reply = json.loads(message.payload)  # type: ignore[arg-type]
        assert reply == {"v": 1, "id": "c-2", "ok": True,
                         "detail": "time sync broadcast on bus1", "readings": []}
        assert abs(fleet.meters[2].faults.clock_offset_s) <= 1
    finally:
        gateway.cancel()
        await asyncio.gather(gateway, return_exceptions=True)
        await fleet.stop()


async def test_readings_cross_a_tls_broker_and_plain_clients_are_refused(
    tmp_path: Path,
) -> None:
    os.environ[PASSWORD_ENV] = "secret"
    broker = Mosquitto({"collector": "secret"}, tls=True)
    broker.start()
    try:
        tls = {"tls": True, "ca_file": broker.ca_file}
        store = SqliteStore(str(tmp_path / "he.db"))
        await store.migrate()
        head, task = await started_headend(mqtt(broker, "headend", **tls), store, "he-tls")
        gw = await preload_outbox(tmp_path / "gw.db", 500)
        up = Uplink(mqtt(broker, "gateway", **tls), "gw-tls", gw)
        up_task = asyncio.create_task(up.run())
        assert await wait_for_count(store, 500) == 500
        up.stop()
        head.stop()
        await asyncio.gather(up_task, task)
        with pytest.raises(aiomqtt.MqttError):
            async with mqtt_link.client(mqtt(broker, "gateway"), "plain-client"):
                pass
    finally:
        broker.destroy()


def test_store_for_a_headend_keeps_nothing_only_in_memory(tmp_path: Path) -> None:
    settings = Settings(source="(t)", storage=StorageSettings(
        url="postgresql://u@127.0.0.1:1/db", spill_path=str(tmp_path / "s.db")),
        mqtt=MqttSettings(role="headend"))
    store = store_for(settings)
    assert getattr(store, "max_memory_rows", None) == 0


async def test_three_shared_workers_one_killed_and_restarted_store_every_read_once(
    broker: Mosquitto, pg_cluster: PgCluster, tmp_path: Path,
) -> None:
    """Scale-out as deployed: a $share group of three head-ends over one PostgreSQL."""
    url = pg_cluster.create_database("mqtt_share3")
    pg = PostgresStore(url)
    await pg.migrate()
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def spawn(client_id: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen([sys.executable, str(script), str(broker.port), url, client_id],
                                env=env, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline() == b"subscribed\n"
        return proc

    def finish(proc: subprocess.Popen[bytes]) -> None:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert b'"readings"' in out  # it stopped cleanly and said so

    workers = {cid: await asyncio.to_thread(spawn, cid) for cid in ("he-0", "he-1", "he-2")}
    gw = await preload_outbox(tmp_path / "gw.db", 20_000)
    up = Uplink(mqtt(broker, "gateway", batch_size=100), "gw-s", gw)
    up_task = asyncio.create_task(up.run())
    try:
        await wait_for_count(pg, 4000)
        workers["he-1"].send_signal(signal.SIGKILL)   # mid-stream, holding unacked messages
        workers["he-1"].wait()
        stored_at_kill = await pg.count_readings()
        workers["he-1"] = await asyncio.to_thread(spawn, "he-1")  # its session resumes
        assert await wait_for_count(pg, 20_000, within=90) == 20_000
        assert await gw.outbox_size() == 0
        with psycopg.connect(url) as conn:
            distinct = conn.execute("SELECT count(DISTINCT (meter_id, quantity, ts)) "
                                    "FROM reading_values").fetchone()[0]
        assert distinct == 20_000 and stored_at_kill < 20_000
        for proc in workers.values():
            await asyncio.to_thread(finish, proc)
        # Nothing was left unacknowledged. A resumed session gets its queued and unacked
        # messages right after CONNACK, before the SUBACK of anything it subscribes to,
        # so once a subscribe has returned, whatever the session held has arrived.
        for cid in workers:
            async with mqtt_link.client(mqtt(broker, "headend"), cid, persistent=True) as c:
                await c.subscribe("meter-collector-test/probe", qos=1)
                assert len(c.messages) == 0, f"session {cid} still held messages"
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
        up.stop()
        await up_task
        await pg.close()
