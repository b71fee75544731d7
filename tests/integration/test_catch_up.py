"""A daemon killed mid-slot re-reads what it missed from the meters' memory on restart."""

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
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from collector.acquisition.catch_up import catch_up
from collector.acquisition.clock import SimulatedClock, SteppedClock, align_down
from collector.acquisition.pipeline import CollectionResult
from collector.acquisition.scheduler import Scheduler
from collector.config.settings import CollectorSettings, Schedule, Settings
from model import CollectionAttempt, Meter, Outcome, Reading
from simulator.bus import WireTiming
from simulator.fleet import FleetSpec, build_fleet, meter_address
from storage.sqlite import SqliteStore
from tests.integration.conftest import TZ, PtyBus

ROOT = Path(__file__).resolve().parents[2]
SPEED = 300.0  # a 15-minute slot every 3 s
EVERY = timedelta(minutes=15)
METERS = 6

DAEMON = textwrap.dedent("""
    import asyncio, json, sys
    from datetime import datetime, timedelta
    from collector.acquisition.clock import SimulatedClock
    from collector.config.settings import (BusConfig, CollectorSettings, FlagSettings, Schedule,
                                  Settings, StorageSettings)
    from collector.runtime.daemon import run_collector
    from model import Meter

    args = json.loads(sys.argv[1])
    clock = SimulatedClock(datetime.fromisoformat(args["start"]), args["speed"], args["t0"])
    settings = Settings(
        source="(test)", collector=CollectorSettings(timezone="Asia/Shanghai"),
        storage=StorageSettings(url="sqlite:///" + args["db"]),
        buses=(BusConfig("bus1", args["port"], baud=38400, latency_ms=300, retries=1),),
        meters=tuple(Meter(f"m{n}", "dlt645", "bus1", f"{n:012d}")
                     for n in range(1, args["meters"] + 1)),
        schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0", "1-0:32.7.0")),),
        flags=FlagSettings(enabled=False))
    asyncio.run(run_collector(settings, clock=clock))
""")


def rows(db: Path, sql: str, *args: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        try:
            return conn.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return []  # not migrated yet


async def wait_for(check: object, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_a_slot_interrupted_by_sigkill_is_re_read_from_meter_memory(
        tmp_path: Path) -> None:
    start = datetime.now(UTC).replace(second=0, microsecond=0)
    t0 = time.monotonic()
    clock = SimulatedClock(start, SPEED, t0)
    fleet = build_fleet(FleetSpec(meters=METERS, buses=1, tz=TZ,
                                  timing=WireTiming(latency_s=0.15)),
                        clock.now, start - timedelta(days=1))
    (port,) = await fleet.start()
    db = tmp_path / "gw.db"
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON)
    args = json.dumps({"start": start.isoformat(), "speed": SPEED, "t0": t0, "db": str(db),
                       "port": port, "meters": METERS})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def spawn() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, str(script), args], env=env)

    def attempts_at(slot: datetime) -> set[str]:
        return {r[0] for r in rows(db, "SELECT meter_id FROM collection_attempts WHERE ts = ?",
                                   slot.timestamp())}  # type: ignore[misc]

    def complete_slots() -> list[datetime]:
        found = rows(db, "SELECT ts FROM collection_attempts GROUP BY ts HAVING count(*) = ?",
                     METERS)
        return sorted(datetime.fromtimestamp(float(r[0]), UTC) for r in found)  # type: ignore[arg-type]

    daemon = spawn()
    try:
        # The first slot the daemon reads whole, however long it took to start.
        await wait_for(complete_slots)
        first = complete_slots()[0]
        second = first + EVERY
        await wait_for(lambda: len(attempts_at(second)) >= 1)
        daemon.send_signal(signal.SIGKILL)  # mid-slot: some meters of `second` are unread
        daemon.wait()
        unread = {f"m{n}" for n in range(1, METERS + 1)} - attempts_at(second)
        assert unread, "the kill came after the slot was complete"
        third = second + EVERY
        await wait_for(lambda: clock.now() > third + EVERY / 2)  # `third` passes while down

        daemon = spawn()
        wanted = {(f"m{n}", slot.timestamp()) for n in range(1, METERS + 1)
                  for slot in (first, second, third)}

        def stored() -> dict[tuple[str, float], tuple[float, str]]:
            found = rows(db, "SELECT meter_id, ts, value, source FROM reading_values WHERE "
                         "quantity = '1-0:1.8.0' AND ts IN (?, ?, ?)", first.timestamp(),
                         second.timestamp(), third.timestamp())
            return {(str(m), float(ts)): (float(v), str(s))  # type: ignore[arg-type]
                    for m, ts, v, s in found}

        await wait_for(lambda: wanted <= stored().keys())
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(20) == 0
        await fleet.stop()
    readings = stored()
    recovered = {key for key, (_, source) in readings.items() if source.endswith(":memory")}
    assert {(m, second.timestamp()) for m in unread} <= recovered
    assert {(f"m{n}", third.timestamp()) for n in range(1, METERS + 1)} <= recovered
    for n, meter in fleet.meters.items():
        for slot in (second, third):
            if (f"m{n}", slot.timestamp()) in recovered:
                # What the meter measured at the slot's end, to the register's resolution.
                expect = round(meter.registers.forward(slot.timestamp())[0], 2)
                assert readings[(f"m{n}", slot.timestamp())][0] == expect
    notes = rows(db, "SELECT count(*) FROM collection_attempts WHERE outcome = 'ok' AND "
                 "error = 'recovered from meter memory after downtime'")
    assert notes[0][0] >= len(recovered)
    assert meter_address(1) == "000000000001"


class AttemptsWaitStore(SqliteStore):
    """A real store whose attempt write waits to be let through, so a stop can land
    between a result's readings and its attempt on every run, not just on unlucky ones."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.at_attempts = asyncio.Event()
        self.go_on = asyncio.Event()

    async def write_attempts(self, attempts: Sequence[CollectionAttempt]) -> None:
        self.at_attempts.set()
        await self.go_on.wait()
        await super().write_attempts(attempts)


async def test_a_stop_between_a_recovered_slots_readings_and_its_attempt_keeps_both(
        tmp_path: Path) -> None:
    store = AttemptsWaitStore(str(tmp_path / "gw.db"))
    await store.migrate()
    start = datetime(2026, 3, 1, 12, tzinfo=UTC)
    meter = Meter("m1", "dlt645", "bus1", meter_address(1))
    scheduler = Scheduler(meters=[meter], schedules=[], readers={}, store=store,
                          clock=SimulatedClock(start, 1.0, time.monotonic()), tz=UTC)
    result = CollectionResult(meter, start, readings=[
        Reading("m1", "1-0:1.8.0", start, 12.5, "kWh", source="dlt645:bus1:memory")])
    result.attempt = CollectionAttempt("m1", "bus1", start, Outcome.OK, 1.0,
                                       "recovered from meter memory after downtime")
    catching_up = asyncio.create_task(scheduler.persist(result))
    await store.at_attempts.wait()
    catching_up.cancel()  # what the daemon's stop does to catch-up
    await asyncio.sleep(0)  # the cancel is delivered while the attempt write waits
    store.go_on.set()
    with contextlib.suppress(asyncio.CancelledError):
        await catching_up
    assert catching_up.cancelled()
    await store.close()
    assert rows(tmp_path / "gw.db", "SELECT meter_id, outcome FROM collection_attempts") == [
        ("m1", "ok")]
    assert rows(tmp_path / "gw.db", "SELECT count(*) FROM reading_values") == [(1,)]


async def test_meters_never_read_before_a_crash_are_caught_up_with_the_others(
        tmp_path: Path, pty_bus_factory: Callable[..., Awaitable[PtyBus]]) -> None:
    """A kill early in the daemon's first slot leaves the meters later on the bus with no
    attempt at all; catch-up must not take them for meters with nothing missed."""
    pty = await pty_bus_factory(meters=3)
    store = SqliteStore(str(tmp_path / "gw.db"))
    await store.migrate()
    now_slot = align_down(datetime.now(UTC), EVERY)
    clock = SteppedClock(now_slot)  # stands still: a slot boundary cannot pass mid-test
    first = now_slot - 2 * EVERY
    meters = [Meter(f"m{n}", "dlt645", "bus1", meter_address(n)) for n in (1, 2, 3)]
    await store.write_attempts([CollectionAttempt("m1", "bus1", first, Outcome.OK, 5.0)])
    settings = Settings(source="(test)", collector=CollectorSettings(timezone=str(TZ)),
                        schedules=(Schedule("i", EVERY, ("1-0:1.8.0",)),))
    persisted: list[CollectionResult] = []

    async def persist(result: CollectionResult) -> None:
        persisted.append(result)

    recovered = await catch_up(settings, meters, store, clock, lambda m: pty.client, persist)
    got = {(r.meter.id, r.slot) for r in persisted if r.readings}
    assert got == {("m1", first + EVERY), ("m1", now_slot),
                   *((m, slot) for m in ("m2", "m3")
                     for slot in (first, first + EVERY, now_slot))}
    assert recovered == len(got)
    await store.close()
