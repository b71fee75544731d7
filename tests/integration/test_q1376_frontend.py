"""Simulated concentrators dial the front end over real TCP and report their meters.

The terminals hold the same simulated DL/T 645 meters the other tests read over a pty,
so what arrives here can be checked value by value against the meters' own registers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from collector.acquisition.q1376.service import Q1376Service, TerminalRun
from collector.config.settings import Settings, parse
from model import BillStatus, MeterAssignment, ReadKind, ServicePoint
from protocols.q1376 import frame as fr
from simulator.dlt645_meter import as_read
from simulator.fleet import FleetSpec, build_fleet
from simulator.q1376_terminal import SimulatedTerminal, TerminalFaults
from storage.sqlite import SqliteStore
from tests.integration.conftest import TZ

NOW = datetime(2026, 11, 21, 2, 30, tzinfo=UTC)  # 10:30 in Shanghai
SINCE = NOW - timedelta(days=3)
ADDRESS = fr.Address("4101", 1)


def config(points: int = 4, **q1376: Any) -> dict[str, Any]:
    return {
        "collector": {"timezone": "Asia/Shanghai", "catch_up": "2d"},
        "q1376": {"listen": "127.0.0.1:0", "timeout": "2s", "retries": 1, **q1376},
        "concentrator": [{"address": ADDRESS.text, "area": "T01", "name": "dc01"}],
        "meter": [{"id": f"m{n}", "protocol": "q1376", "concentrator": "dc01", "pn": n,
                   "address": f"{n:012d}"} for n in range(1, points + 1)],
    }


class ManualClock:
    """Time that moves only when the test says: a terminal away for two days is two
    days away, whatever the machine is doing."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._moved = asyncio.Event()

    def now(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> None:
        self._now += by
        self._moved.set()
        self._moved = asyncio.Event()

    async def sleep_until(self, when: datetime) -> None:
        while self._now < when:
            await self._moved.wait()

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


@dataclass
class Rig:
    service: Q1376Service
    store: SqliteStore
    clock: ManualClock
    settings: Settings

    async def terminal(self, terminal: SimulatedTerminal, *, runs: int = 1) -> TerminalRun:
        """Connect the terminal and wait for its `runs`-th collection to finish."""
        before = len(self.service.runs)
        task = asyncio.create_task(terminal.run("127.0.0.1", self.service.port))
        self._tasks.append(task)
        async with self.service.collected:
            await self.service.collected.wait_for(
                lambda: len(self.service.runs) >= before + runs)
        return self.service.runs[-1]

    async def offline(self, address: str = ADDRESS.text) -> None:
        front = self.service.front
        async with front.changed:
            await front.changed.wait_for(lambda: not front.status[address].online)

    async def hang_up(self) -> None:
        """Cut the terminals' links (a modem losing its carrier) and wait until the
        front end has seen it."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.offline()

    _tasks: list[asyncio.Task[None]]


def rig(tmp_path: Path, **cfg: Any) -> contextlib.AbstractAsyncContextManager[Rig]:
    return serving(tmp_path, config(**cfg))


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, cfg: dict[str, Any], now: datetime = NOW,
                  ) -> AsyncIterator[Rig]:
    """A front end on its own store and a manual clock, stopped with its terminals."""
    settings = parse(cfg)
    store = SqliteStore(tmp_path / "c.db")
    await store.migrate()
    await store.upsert_meters(settings.meters)
    clock = ManualClock(now)
    service = Q1376Service(settings, store, clock)
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    r = Rig(service, store, clock, settings, [])
    try:
        yield r
    finally:
        service.stop()
        await task
        for t in r._tasks:
            t.cancel()
        await asyncio.gather(*r._tasks, return_exceptions=True)
        await store.close()


def nameless(determinants: dict[str, Any]) -> dict[str, Any]:
    """A bill's determinants without whose they are: what two bills of the same meter's
    day must agree on."""
    out = {k: v for k, v in determinants.items() if k not in ("service_point", "account")}
    out["parts"] = [{**part, "meters": [{k: v for k, v in m.items() if k != "meter"}
                                        for m in part["meters"]]}
                    for part in determinants["parts"]]
    return out


def make_terminal(clock: ManualClock, points: int = 4, **kw: Any) -> SimulatedTerminal:
    fleet = build_fleet(FleetSpec(meters=points, buses=1), clock.now, SINCE)
    return SimulatedTerminal(ADDRESS, dict(fleet.meters), clock.now, TZ, **kw)


async def test_a_terminal_logs_in_and_reports_its_meters_curves_and_freezes(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        run = await r.terminal(terminal)
        assert not run.errors and run.ok_meters == {"m1", "m2", "m3", "m4"}
        meter = terminal.points[1]
        day_end = datetime(2026, 11, 20, 16, 0, tzinfo=UTC)  # Shanghai midnight
        series = await r.store.series("m1", "1-0:1.8.0", day_end - timedelta(days=1), day_end)
        assert len(series) == 97
        for reading in series:
            want = round(meter.registers.forward(reading.ts.timestamp())[0], 2)
            assert reading.value == pytest.approx(want, abs=0.005)
        frozen = await r.store.series("m1", "1-0:1.8.0", day_end, day_end,
                                      ReadKind.FROZEN_DAILY)
        # The freeze the terminal read from its meter, to the meter's own 0.01 kWh.
        assert [f.value for f in frozen] == as_read(meter.registers.forward(
            day_end.timestamp()))[:1]
        status = r.service.front.status[ADDRESS.text]
        assert status.online and status.logins == 1


async def test_a_terminal_back_after_two_days_offline_has_its_days_caught_up(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        await r.terminal(terminal)
        await r.hang_up()
        r.clock.advance(timedelta(days=2))
        run = await r.terminal(terminal)
        assert [d.isoformat() for d in run.days] == ["2026-11-21", "2026-11-22", "2026-11-23"]
        start = datetime(2026, 11, 20, 16, 15, tzinfo=UTC)  # 00:15 on the 21st
        series = await r.store.series("m3", "1-0:1.8.0", start, r.clock.now())
        want = int((r.clock.now() - start) / timedelta(minutes=15)) + 1
        assert len(series) == want
        assert [b.ts - a.ts for a, b in itertools.pairwise(series)] == [
            timedelta(minutes=15)] * (want - 1)
        daily = await r.store.series("m3", "1-0:1.8.0", start, r.clock.now(),
                                     ReadKind.FROZEN_DAILY)
        assert len(daily) == 2  # the 21st and the 22nd, caught up
        assert r.service.front.status[ADDRESS.text].logins == 2


async def test_an_unknown_terminal_is_refused_unless_allowed(tmp_path: Path) -> None:
    stranger = fr.Address("4101", 99)
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        terminal.address = stranger
        await asyncio.wait_for(terminal.run("127.0.0.1", r.service.port), 10)
        assert r.service.front.refused == 1 and stranger.text not in r.service.front.links
    async with rig(tmp_path / "open", accept_unknown=True) as r:
        terminal = make_terminal(r.clock)
        terminal.address = stranger
        task = asyncio.create_task(terminal.run("127.0.0.1", r.service.port))
        r._tasks.append(task)
        front = r.service.front
        async with front.changed:
            await front.changed.wait_for(lambda: stranger.text in front.links)


async def test_a_second_login_for_an_online_address_replaces_the_old_link_only_after_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with rig(tmp_path) as r:
        first = make_terminal(r.clock)
        await r.terminal(first)
        old = r.service.front.links[ADDRESS.text]
        # A half-open socket that never logs in changes nothing.
        _, idle = await asyncio.open_connection("127.0.0.1", r.service.port)
        assert r.service.front.links[ADDRESS.text] is old
        second = make_terminal(r.clock)
        await r.terminal(second)
        await old.closed.wait()
        assert r.service.front.links[ADDRESS.text] is not old
        assert "a second connection" in caplog.text
        idle.close()


async def test_a_connection_that_never_logs_in_is_closed(tmp_path: Path) -> None:
    async with rig(tmp_path, login_within="1s") as r:
        reader, writer = await asyncio.open_connection("127.0.0.1", r.service.port)
        writer.write(bytes.fromhex("68fe3ffe3f68") + b"\x00" * 32)  # claims a 4 KB frame
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 10) == b""  # closed by the front end
        writer.close()


async def test_a_garbled_terminal_costs_only_its_own_requests(tmp_path: Path) -> None:
    cfg = config()
    cfg["concentrator"].append({"address": "4101-00002", "name": "dc02"})
    cfg["meter"] += [{"id": "x1", "protocol": "q1376", "concentrator": "dc02", "pn": 1}]
    async with serving(tmp_path, cfg) as r:
        good = make_terminal(r.clock)
        bad = make_terminal(r.clock, 1, faults=TerminalFaults(corrupt_every=1))
        bad.address = fr.Address("4101", 2)
        r._tasks += [asyncio.create_task(t.run("127.0.0.1", r.service.port))
                     for t in (bad, good)]
        async with r.service.collected:
            await r.service.collected.wait_for(lambda: len(r.service.runs) >= 2)
        by = {run.terminal: run for run in r.service.runs}
        assert by["4101-00002"].errors and not by["4101-00002"].ok_meters
        assert not by[ADDRESS.text].errors and len(by[ADDRESS.text].ok_meters) == 4


async def test_a_meter_the_terminal_cannot_read_is_missing_and_never_zero(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        terminal.points[2].faults.silent = True
        run = await r.terminal(terminal)
        assert run.ok_meters == {"m1", "m3", "m4"}
        assert await r.store.series("m2", "1-0:1.8.0", SINCE, NOW) == []
        hour = (NOW - timedelta(hours=1), NOW + timedelta(minutes=1))
        by_meter = await r.store.collection_summary(*hour, "meter")
        assert {a.group: a.ok for a in by_meter} == {"m1": 1, "m2": 0, "m3": 1, "m4": 1}
        [dc] = await r.store.collection_summary(*hour, "gateway")
        assert (dc.group, dc.attempts, dc.ok) == ("dc01", 4, 3)


async def test_a_point_table_that_disagrees_with_the_configuration_is_flagged(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock, faults=TerminalFaults(wrong_table={3: "000000009999"}))
        await r.terminal(terminal)
        flags = await r.store.list_flags()
        [flag] = [f.flag for f in flags if f.flag.kind == "point_mismatch"]
        assert flag.subject == "m3" and flag.evidence["terminal_says"] == "000000009999"


async def test_terminal_events_become_events_of_their_meters(tmp_path: Path) -> None:
    from protocols.q1376 import events as ev

    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        local = datetime(2026, 11, 21, 3, 0)
        terminal.records += [ev.power_record(local, local + timedelta(minutes=40)),
                             ev.point_record(ev.ERC_METER_FAULT, local, 2, extra=b"\x01")]
        run = await r.terminal(terminal)
        assert run.events == 2
        stored = await r.store.events_in(NOW - timedelta(days=1), NOW)
        assert {(e.meter_id, e.kind) for e in stored} == {
            ("dc01", "power_down"), ("m2", "meter_fault"), ("dc01", "terminal_online")}
        await r.hang_up()
        await r.terminal(terminal)  # the same records are not read twice on this run
        assert r.service.runs[-1].events == 0


async def test_a_report_the_terminal_sends_unasked_is_stored_before_it_is_confirmed(
        tmp_path: Path) -> None:
    from protocols.q1376 import items
    from protocols.q1376.values import Registers

    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        await r.terminal(terminal)
        terminal._confirmed.clear()
        regs = Registers(datetime(2026, 11, 21, 10, 29), (4321.1234, 1.0, 2.0, 3.0, 4321.1234 - 6))
        await terminal.report(fr.AFN_CLASS1, [items.Unit(4, items.F_FORWARD, regs.encode())])
        await asyncio.wait_for(terminal._confirmed.wait(), 10)
        at = datetime(2026, 11, 21, 2, 29, tzinfo=UTC)  # the register's own read time
        [stored] = await r.store.series("m4", "1-0:1.8.0", at, at, ReadKind.INSTANT)
        assert stored.value == 4321.1234 and stored.source.endswith(":report")


async def test_remote_trip_needs_the_password_and_reaches_the_meter(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from protocols.errors import ProtocolError

    monkeypatch.setenv("Q1376_PW", "11" * 16)
    async with rig(tmp_path, password_env="Q1376_PW") as r:
        terminal = make_terminal(r.clock, password=bytes([0x11]) * 16)
        await r.terminal(terminal)
        await r.service.switch("m2", trip=True)
        assert terminal.points[2].relay_open
        await r.service.switch("m2", trip=False)
        assert not terminal.points[2].relay_open
        monkeypatch.setenv("Q1376_PW", "22" * 16)
        with pytest.raises(ProtocolError, match="denied"):
            await r.service.switch("m2", trip=True)
        assert not terminal.points[2].relay_open


async def test_a_time_sync_across_whole_hours_is_refused_and_a_drift_is_fixed(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        await r.terminal(terminal)
        terminal.clock_offset_s = 3600
        assert "refused" in await r.service.time_sync(ADDRESS.text)
        terminal.clock_offset_s = 95
        assert "clock set" in await r.service.time_sync(ADDRESS.text)
        assert abs(terminal.clock_offset_s) <= 1


async def test_a_day_read_through_the_concentrator_matches_the_same_meters_over_dlt645(
        tmp_path: Path, pty_bus_factory: Any) -> None:
    """The same simulated meters, read once over RS-485 (DL/T 645 load profile, the
    existing catch-up) and once through a concentrator: the same 96 register values a
    day, the same daily freeze, the same VEE verdict on every rule and the same bill."""
    from collector.acquisition.catch_up import backfill
    from collector.acquisition.clock import RealClock
    from collector.acquisition.pipeline import CollectionResult, Dlt645Reader
    from collector.billing.cycles import Cycle
    from collector.billing.run import Biller
    from collector.config.billing import BillingSettings
    from collector.config.vee import VeeSettings
    from collector.vee.engine import VeeEngine

    pty = await pty_bus_factory(meters=3)
    now = datetime.now(UTC)
    cfg = config(3)
    for m in cfg["meter"]:
        m["id"] = "c" + m["id"][1:]
    cfg["bus"] = [{"name": "bus1", "port": pty.path}]
    cfg["meter"] += [{"id": f"d{n}", "protocol": "dlt645", "bus": "bus1",
                      "address": f"{n:012d}"} for n in range(1, 4)]
    cfg["schedule"] = [{"name": "interval", "every": "15m", "quantities": ["1-0:1.8.0"]},
                       {"name": "daily", "every": "1d", "at": "00:05", "frozen_days": 2,
                        "meters": ["d*"]}]
    async with serving(tmp_path, cfg, now) as r:
        store, settings = r.store, r.settings
        terminal = SimulatedTerminal(ADDRESS, dict(pty.fleet.meters),
                                     lambda: datetime.now(UTC), TZ)
        await r.terminal(terminal)

        day = (now.astimezone(TZ) - timedelta(days=1)).date()
        start = datetime.combine(day, datetime.min.time(), TZ).astimezone(UTC)
        end = start + timedelta(days=1)

        async def persist(result: CollectionResult) -> None:
            await store.write_readings(result.readings)

        by_id = {m.id: m for m in settings.meters}
        daily = next(s for s in settings.schedules if s.frozen_days)
        reader = Dlt645Reader(pty.client, RealClock(), TZ)
        for n in range(1, 4):
            await backfill(settings, by_id[f"d{n}"], start, end + timedelta(minutes=15),
                           pty.client, persist)
            await persist(await reader.collect(by_id[f"d{n}"], daily, datetime.now(UTC)))
        first = start + timedelta(minutes=15)
        for n in range(1, 4):
            over_rs485 = await store.series(f"d{n}", "1-0:1.8.0", first, end)
            via_dc = await store.series(f"c{n}", "1-0:1.8.0", first, end)
            assert len(over_rs485) == len(via_dc) == 96
            assert [(x.ts, x.value) for x in over_rs485] == [(x.ts, x.value) for x in via_dc]
        engine = VeeEngine(store, VeeSettings(lookback_days=1), TZ, list(settings.meters))
        await engine.run(day, day, datetime.now(UTC))
        verdicts = {(v.meter_id, v.rule): v.passed for v in await store.verdicts(day, day)}
        for n in range(1, 4):
            mine = {rule: ok for (meter, rule), ok in verdicts.items() if meter == f"c{n}"}
            theirs = {rule: ok for (meter, rule), ok in verdicts.items() if meter == f"d{n}"}
            assert mine and mine == theirs

        await store.upsert_service_points(
            [ServicePoint(f"sp-{m}{n}", f"acct-{m}{n}", "cn-residential", "S01")
             for m in "cd" for n in range(1, 4)],
            [MeterAssignment(f"sp-{m}{n}", f"{m}{n}") for m in "cd" for n in range(1, 4)])
        biller = Biller(store, BillingSettings(segments={"S01": 1}), VeeSettings(), TZ)
        run = await biller.run(Cycle.parse(day.isoformat()))
        bills = {b.service_point_id: b for b in run.bills}
        assert len(bills) == 6, run.summary()
        for n in range(1, 4):
            via_dc, over_rs485 = bills[f"sp-c{n}"], bills[f"sp-d{n}"]
            assert via_dc.status is BillStatus.RELEASED, via_dc.holds
            assert via_dc.kwh is not None and via_dc.kwh > 0
            assert (via_dc.kwh, via_dc.amount, via_dc.quality, via_dc.holds) == (
                over_rs485.kwh, over_rs485.amount, over_rs485.quality, over_rs485.holds)
            assert nameless(via_dc.determinants) == nameless(over_rs485.determinants)


async def test_a_meter_fault_the_terminal_recorded_raises_a_flag_explained_in_words(
        tmp_path: Path) -> None:
    from collector.flags.engine import FlagEngine
    from collector.flags.explain import explain
    from protocols.q1376 import events as ev

    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        terminal.records.append(ev.point_record(ev.ERC_METER_FAULT,
                                                datetime(2026, 11, 21, 9, 0), 3, extra=b"\x04"))
        await r.terminal(terminal)
        engine = FlagEngine(r.store, list(r.settings.meters), every=timedelta(minutes=15),
                            tz=TZ)
        await engine.run(NOW, full=False)
        [row] = [x for x in await r.store.list_flags() if x.flag.kind == "meter_fault"]
        assert row.flag.subject == "m3" and row.flag.area == "T01"
        assert "ERC 13" in explain(row.flag).seen


async def test_voltage_and_current_curves_arrive_with_the_registers(tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock)
        await r.terminal(terminal)
        volts = await r.store.series("m1", "1-0:32.7.0", SINCE, NOW)
        amps = await r.store.series("m1", "1-0:31.7.0", SINCE, NOW)
        assert len(volts) == len(amps) > 96
        assert all(200 < v.value < 260 for v in volts)


async def test_a_terminal_that_stops_answering_times_out_and_its_meters_say_so(
        tmp_path: Path) -> None:
    async with rig(tmp_path, timeout="1s", retries=1) as r:
        terminal = make_terminal(r.clock, faults=TerminalFaults(silent=True))
        run = await r.terminal(terminal)
        assert run.errors and "no reply" in run.errors[0] and not run.ok_meters
        hour = (NOW - timedelta(hours=1), NOW + timedelta(minutes=1))
        [dc] = await r.store.collection_summary(*hour, "gateway")
        assert (dc.group, dc.attempts, dc.ok, dc.timeouts) == ("dc01", 4, 0, 4)


async def test_a_chattering_terminal_is_cut_off_at_its_frame_budget(tmp_path: Path) -> None:
    from protocols.q1376 import items

    async with rig(tmp_path, max_frames_per_minute=20) as r:
        terminal = make_terminal(r.clock)
        await r.terminal(terminal)
        for _ in range(30):
            await terminal.report(fr.AFN_LINK, [items.Unit(0, items.F_HEARTBEAT)])
        await r.offline()


async def test_duplicated_frames_and_gprs_jitter_change_nothing_that_is_stored(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        plain = make_terminal(r.clock)
        await r.terminal(plain)
        want = await r.store.series("m2", "1-0:1.8.0", SINCE, NOW)
    async with rig(tmp_path / "noisy") as r:
        noisy = make_terminal(r.clock, faults=TerminalFaults(
            duplicate_every=2, latency_s=0.02, jitter_s=0.02))
        run = await r.terminal(noisy)
        assert not run.errors
        assert await r.store.series("m2", "1-0:1.8.0", SINCE, NOW) == want


async def test_a_link_dropped_inside_a_multi_frame_reply_loses_nothing_once_it_is_back(
        tmp_path: Path) -> None:
    async with rig(tmp_path) as r:
        terminal = make_terminal(r.clock, faults=TerminalFaults(drop_mid_reply=True))
        run = await r.terminal(terminal)
        assert run.errors  # the half-delivered reply is not taken for a whole one
        await r.offline()
        terminal.faults.drop_mid_reply = False
        run = await r.terminal(terminal)
        assert not run.errors
        start = datetime(2026, 11, 19, 16, 15, tzinfo=UTC)  # 00:15 on the 20th
        for n in range(1, 5):
            series = await r.store.series(f"m{n}", "1-0:1.8.0", start, NOW)
            assert len(series) == int((NOW - start) / timedelta(minutes=15)) + 1


async def test_trace_logs_every_frame_both_ways_with_the_terminal(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", "collector.acquisition.q1376.link")
    async with rig(tmp_path, trace=True) as r:
        await r.terminal(make_terminal(r.clock))
    lines = [m for m in caplog.messages if m.startswith("q1376 trace")]
    assert any(" <- 68 " in m for m in lines) and any(" -> 68 " in m for m in lines)
    assert all(ADDRESS.text in m or "not logged in" in m for m in lines)


async def test_collector_simulate_q1376_terminals_dial_in_and_are_read(tmp_path: Path) -> None:
    from simulator.q1376_terminal import run_concentrators

    async with rig(tmp_path) as r:
        task = asyncio.create_task(run_concentrators("127.0.0.1", r.service.port, 1, 4,
                                                     latency_s=0.01, tz=TZ))
        r._tasks.append(task)
        async with r.service.collected:
            await r.service.collected.wait_for(lambda: bool(r.service.runs))
        assert r.service.runs[0].ok_meters == {"m1", "m2", "m3", "m4"}
