"""The whole collector (config → scheduler → pty → SQLite) on a simulated clock."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from collector.acquisition.clock import SteppedClock
from collector.acquisition.pipeline import CollectionResult
from collector.config.settings import (
    BusConfig,
    CollectorSettings,
    Schedule,
    Settings,
    StorageSettings,
)
from collector.runtime.daemon import run_collector
from model import Meter, PrepaidEvent
from simulator.dlt645_meter import MeterFaults
from simulator.fleet import Fleet, FleetSpec, build_fleet, meter_address
from tests.integration.conftest import TZ

QUANTITIES = ("1-0:1.8.0", "1-0:1.8.1", "1-0:2.8.0", "1-0:32.7.0")
START = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)  # local midnight in Shanghai


def settings_for(fleet: Fleet, db: Path, meters: int) -> Settings:
    return Settings(
        source="(test)",
        collector=CollectorSettings(timezone="Asia/Shanghai", gateway="gw-test"),
        storage=StorageSettings(url=f"sqlite:///{db}"),
        buses=tuple(BusConfig(f"bus{i + 1}", p, baud=38400, latency_ms=10, retries=1)
                    for i, p in enumerate(fleet.paths)),
        meters=tuple(Meter(f"m{n}", "dlt645", f"bus{fleet.bus_of[n] + 1}", meter_address(n))
                     for n in range(1, meters + 1)),
        schedules=(Schedule("interval", timedelta(minutes=15), QUANTITIES),),
    )


async def run_window(db: Path, start: datetime, hours: float, meters: int = 4,
                     faults: dict[int, MeterFaults] | None = None) -> tuple[int, int]:
    clock = SteppedClock(start - timedelta(minutes=10))
    spec = FleetSpec(meters=meters, buses=2, tz=TZ, faults=faults or {})
    fleet = build_fleet(spec, clock.now, START - timedelta(days=1))
    await fleet.start()
    try:
        stats = await run_collector(settings_for(fleet, db, meters), clock=clock,
                                    until=start + timedelta(hours=hours), handle_signals=False)
    finally:
        await fleet.stop()
    return stats.readings, stats.new


def rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def test_every_slot_of_every_meter_is_stored_once(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    taken, new = await run_window(db, START, hours=2)
    slots = 2 * 4 + 1  # 00:00 through 02:00 inclusive
    assert taken == new == slots * 4 * len(QUANTITIES)
    per_meter = rows(db, "SELECT meter_id, count(DISTINCT ts) FROM reading_values "
                         "GROUP BY meter_id")
    assert per_meter == [(f"m{n}", slots) for n in range(1, 5)]
    ts = rows(db, "SELECT DISTINCT ts FROM reading_values ORDER BY ts")
    assert [datetime.fromtimestamp(float(t), UTC) for (t,) in ts][:2] == [
        START, START + timedelta(minutes=15)]


async def test_restarting_over_an_existing_database_creates_no_duplicate_rows(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.db"
    await run_window(db, START, hours=1)
    # The daemon restarts half an hour "earlier": it re-reads slots it already stored.
    _, new = await run_window(db, START + timedelta(minutes=30), hours=1)
    assert new == 2 * 4 * len(QUANTITIES)  # only 01:15 and 01:30 are new
    (count,) = rows(db, "SELECT count(*) FROM reading_values")[0]
    (distinct,) = rows(db, "SELECT count(*) FROM (SELECT DISTINCT meter_id, quantity, ts "
                           "FROM reading_values)")[0]
    assert count == distinct == 7 * 4 * len(QUANTITIES)


async def test_a_silent_meter_is_logged_and_counted_and_the_rest_are_read(
    tmp_path: Path,
) -> None:
    db = tmp_path / "c.db"
    await run_window(db, START, hours=1, faults={3: MeterFaults(silent=True)})
    outcomes = dict(rows(db, "SELECT meter_id || ':' || outcome, count(*) FROM "
                             "collection_attempts GROUP BY 1"))
    assert outcomes["m3:timeout"] == 5
    assert all(outcomes[f"m{n}:ok"] == 5 for n in (1, 2, 4))
    errors = rows(db, "SELECT error FROM collection_attempts WHERE meter_id = 'm3'")
    assert "no reply" in str(errors[0][0]) and "bus=bus1" in str(errors[0][0])


async def test_sigterm_stops_after_the_in_flight_read_and_keeps_it(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    clock = SteppedClock(START - timedelta(seconds=1))
    spec = FleetSpec(meters=4, buses=2, tz=TZ)
    fleet = build_fleet(spec, clock.now, START - timedelta(days=1))
    await fleet.start()
    seen: list[str] = []
    six_done = asyncio.Event()

    def on_result(result: CollectionResult) -> None:
        seen.append(result.meter.id)
        if len(seen) == 6:
            six_done.set()

    try:
        task = asyncio.create_task(run_collector(settings_for(fleet, db, 4), clock=clock,
                                                 on_result=on_result))
        await asyncio.wait_for(six_done.wait(), timeout=30)
        os.kill(os.getpid(), signal.SIGTERM)
        stats = await asyncio.wait_for(task, timeout=10)
    finally:
        await fleet.stop()
    attempts = rows(db, "SELECT count(*) FROM collection_attempts")[0][0]
    assert attempts == sum(s.attempts for s in stats.meters.values()) == len(seen)
    assert rows(db, "SELECT count(*) FROM reading_values")[0][0] == stats.readings


async def test_a_drifting_clock_is_flagged_and_a_time_sync_fixes_it(tmp_path: Path) -> None:
    from dataclasses import replace

    from collector.config.settings import FlagSettings
    from storage.sqlite import SqliteStore

    db = tmp_path / "c.db"
    clock = SteppedClock(START - timedelta(minutes=10))
    spec = FleetSpec(meters=3, buses=1, tz=TZ, faults={2: MeterFaults(clock_offset_s=300.0)})
    fleet = build_fleet(spec, clock.now, START - timedelta(days=1))
    await fleet.start()
    settings = replace(
        settings_for(fleet, db, 3),
        schedules=(Schedule("interval", timedelta(minutes=15), QUANTITIES, clock=True),),
        flags=FlagSettings(auto_time_sync=True))
    try:
        await run_collector(settings, clock=clock, until=START + timedelta(hours=1),
                            handle_signals=False)
    finally:
        await fleet.stop()
    store = SqliteStore(str(db))
    flags = [r.flag for r in await store.list_flags(kind="clock_drift")]
    offsets = await store.series("m2", "0-0:1.0.0", START, START + timedelta(hours=1))
    await store.close()
    assert [f.subject for f in flags] == ["m2"]
    assert offsets[0].value > 290
    assert abs(offsets[-1].value) <= 2  # synced by the flag pass, then read again
    assert abs(fleet.meters[2].faults.clock_offset_s) <= 2


async def test_the_daemon_charges_prepaid_after_each_cycle_and_trips_over_its_own_bus(
        tmp_path: Path, monkeypatch: Any) -> None:
    from dataclasses import replace

    from collector.config.billing import PrepaidSettings
    from model import MeterAssignment, ServicePoint
    from storage.sqlite import SqliteStore

    monkeypatch.setenv("COLLECTOR_TEST_METER_PASSWORD", "02000000")
    db = tmp_path / "c.db"
    store = SqliteStore(str(db))
    await store.migrate()
    await store.upsert_service_points([ServicePoint("sp1", "A1", "cn-residential", "S01")],
                                      [MeterAssignment("sp1", "m1")])
    await store.open_prepaid("A1", "sp1", START)
    await store.post_prepaid((await store.prepaid_accounts("A1"))[0], [PrepaidEvent(
        "A1", START, "topup", 0.1, reference="pay-1")])
    await store.close()
    clock = SteppedClock(START - timedelta(minutes=10))
    spec = FleetSpec(meters=2, buses=1, tz=TZ)
    fleet = build_fleet(spec, clock.now, START - timedelta(days=1))
    await fleet.start()
    settings = replace(settings_for(fleet, db, 2), prepaid=PrepaidSettings(
        grace=timedelta(0), protected_from=timedelta(0), protected_to=timedelta(0),
        protected_weekends=False, password_env="COLLECTOR_TEST_METER_PASSWORD"))
    try:
        await run_collector(settings, clock=clock, until=START + timedelta(hours=3),
                            handle_signals=False)
    finally:
        await fleet.stop()
    store = SqliteStore(str(db))
    events = await store.prepaid_events("A1")
    (acct,) = await store.prepaid_accounts("A1")
    await store.close()
    charges = [e for e in events if e.kind == "charge"]
    assert len(charges) >= 2  # one per pass that found new reads, not one at the end
    assert acct.charged_to >= START + timedelta(hours=2)
    kinds = [e.kind for e in events]
    assert "alert:zero" in kinds and "trip" in kinds
    assert fleet.meters[1].relay_open and not fleet.meters[2].relay_open
    assert acct.relay == "open"


async def read_an_hour_late(db: Path, latency_s: float) -> tuple[Fleet, list[tuple[Any, ...]]]:
    """An hour of four meters on one bus at 300×: each request costs `latency_s` of
    real time, so the bus reaches the fourth meter a minute or more after the slot."""
    from collector.acquisition.clock import SimulatedClock
    from simulator.bus import WireTiming

    clock = SimulatedClock(START - timedelta(minutes=5), speed=300.0)
    spec = FleetSpec(meters=4, buses=1, tz=TZ, timing=WireTiming(latency_s=latency_s))
    fleet = build_fleet(spec, clock.now, START - timedelta(days=1))
    await fleet.start()
    try:
        await run_collector(settings_for(fleet, db, 4), clock=clock,
                            until=START + timedelta(hours=1), handle_signals=False)
    finally:
        await fleet.stop()
    return fleet, rows(db, "SELECT meter_id, ts, value, source FROM reading_values WHERE "
                           "quantity = '1-0:1.8.0' AND kind = 'interval' ORDER BY meter_id, ts")


async def test_an_interval_read_is_the_register_at_the_slots_end_however_late_the_bus_gets_there(
        tmp_path: Path) -> None:
    """The value stamped with a slot is the one the meter froze at the slot's end, not
    its register when the bus got there. A live read stamped with the slot made one
    interval too large and the next too small (issue 28: 0.64 kWh then 0.09), so the
    same registers billed a different demand on each run."""
    demand = []
    for n, latency in enumerate((0.005, 0.03)):
        fleet, stored = await read_an_hour_late(tmp_path / f"c{n}.db", latency)
        assert len(stored) >= 4
        off = [row for row in stored if row[2] != round(fleet.meters[int(str(row[0])[1:])]
                                                        .registers.forward(float(row[1]))[0], 2)]
        assert not off
        # From the slot's own record, or read back from memory after a timeout.
        assert all(str(source).endswith((":profile", ":memory")) for *_, source in stored)
        by_meter: dict[object, list[float]] = {}
        for meter, _, value, _ in stored:
            by_meter.setdefault(meter, []).append(float(value))  # type: ignore[arg-type]
        demand.append({m: max(b - a for a, b in itertools.pairwise(v))
                       for m, v in by_meter.items() if len(v) == 5})
    shared = demand[0].keys() & demand[1].keys()
    assert shared and all(demand[0][m] == demand[1][m] for m in shared)


async def test_commands_queued_from_the_api_are_run_on_the_meters_bus_and_answered(
        tmp_path: Path) -> None:
    """An operator's 'read now' and 'disconnect' go from the API, through the store, to
    the daemon that reaches the meter's bus (issue 28: meter actions behind the write
    scope), and each comes back with the meter's answer."""
    import httpx

    from collector.api.app import create_app
    from collector.config.billing import PrepaidSettings
    from storage.sqlite import SqliteStore

    os.environ["COLLECTOR_TEST_METER_PASSWORD"] = "02000000"
    db = tmp_path / "c.db"
    clock = SteppedClock(START - timedelta(minutes=10))
    fleet = build_fleet(FleetSpec(meters=2, buses=1, tz=TZ), clock.now, START - timedelta(days=1))
    await fleet.start()
    settings = replace(settings_for(fleet, db, 2), prepaid=PrepaidSettings(
        password_env="COLLECTOR_TEST_METER_PASSWORD"))
    store = SqliteStore(str(db))
    await store.migrate()
    await store.upsert_meters(settings.meters)
    ops = await store.create_token("ops", ["read", "write"])
    app = create_app(settings, store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test") as client:
        auth = {"Authorization": f"Bearer {ops}"}
        for body in ({"command": "read"}, {"command": "trip", "reason": "site visit: unsafe"}):
            got = await client.post("/v1/meters/m2/commands", json=body, headers=auth)
            assert got.status_code == 202, got.text
        refused = await client.post("/v1/meters/m2/commands", json={"command": "trip"},
                                    headers=auth)
        assert refused.status_code == 422 and "reason" in refused.json()["detail"]
    try:
        await run_collector(settings, clock=clock, until=START + timedelta(minutes=15),
                            store=store, handle_signals=False)
        done = await store.meter_commands(["m2"])
    finally:
        await fleet.stop()
        await store.close()
    assert [(c.command, c.status) for c in reversed(done)] == [("read", "done"),
                                                               ("trip", "done")]
    assert "confirmed by the meter" in done[0].result
    assert fleet.meters[2].relay_open and not fleet.meters[1].relay_open
    instant = rows(db, "SELECT count(*) FROM reading_values WHERE meter_id = 'm2' AND "
                       "kind = 'instant'")
    assert instant[0][0] > 0  # the on-demand read, off the interval grid
