"""Read every online concentrator on schedule; catch up the days a terminal was away.

Where a terminal's meters stand is read from the store (the last curve point of each),
so a restart of the head-end and a terminal that was offline for days are the same
case: from there (at most `collector.catch_up` back) to now, every day's curve and
daily freeze is fetched, day by day, and written idempotently. Nothing is confirmed to
a terminal before it is stored.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from collector.acquisition.clock import Clock, looks_like_zone_error, sleep_until_or_stopped
from collector.acquisition.q1376 import translate as tr
from collector.acquisition.q1376.frontend import FrontEnd
from collector.acquisition.q1376.link import TerminalLink
from collector.acquisition.q1376.states import last_points
from collector.config.settings import Settings
from collector.ops.metrics import Metrics
from model import CollectionAttempt, Event, Flag, Meter, Outcome, Reading
from protocols.errors import ProtocolError
from protocols.q1376 import formats as fm
from protocols.q1376 import frame as fr
from protocols.q1376 import items, points
from protocols.q1376.events import EventPage
from protocols.q1376.items import Unit
from protocols.q1376.values import CurveRequest
from storage import Store

log = logging.getLogger(__name__)
UNITS_PER_REQUEST = 8
"""pn × Fn per request: a day's curve for 8 points is ~3 KB, a few frames over GPRS."""
EVENTS_PER_PAGE = 32


def curves(meter: Meter, wanted: tuple[str, ...]) -> tuple[int, ...]:
    """The curves read per day ([q1376] curves): the registers, and voltage and current
    of each phase the meter has (the flags' wiring and voltage checks need them)."""
    phases = 3 if meter.phases == 3 else 1
    out: list[int] = []
    for name, fns in (("forward", (items.F_CURVE_FORWARD,)),
                      ("reverse", (items.F_CURVE_REVERSE,)),
                      ("voltage", items.F_VOLTAGE_CURVES[:phases]),
                      ("current", items.F_CURRENT_CURVES[:phases])):
        if name in wanted:
            out += fns
    return tuple(out)


@dataclass
class TerminalRun:
    """What one collection of one terminal did."""

    terminal: str
    readings: int = 0
    events: int = 0
    days: list[date] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ok_meters: set[str] = field(default_factory=set)


class Q1376Service:
    def __init__(self, settings: Settings, store: Store, clock: Clock,
                 metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.q = settings.q1376
        self.store = store
        self.clock = clock
        self.tz = settings.collector.tz
        self.horizon = settings.collector.catch_up or timedelta(days=2)
        self.metrics = metrics or Metrics()
        by_id = {m.id: m for m in settings.meters}
        self.points: dict[str, dict[int, Meter]] = {}
        for meter_id, (address, pn) in self.q.points.items():
            self.points.setdefault(address, {})[pn] = by_id[meter_id]
        self.ids = self.q.terminal_ids()
        self.front = FrontEnd(self.q, metrics=self.metrics, on_login=self._logged_in,
                              on_report=self._report, on_status=self._status,
                              on_heartbeat=self._heartbeat)
        self.port = 0
        self.ready = asyncio.Event()
        self.runs: list[TerminalRun] = []
        self.collected = asyncio.Condition()
        self._stop = asyncio.Event()
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._tables_checked: set[TerminalLink] = set()
        self._event_pointer: dict[str, int] = {}
        self._status_writes: set[asyncio.Task[None]] = set()
        self._beats: dict[str, datetime] = {}
        self._collecting = asyncio.Semaphore(self.q.max_collecting)
        """Terminals read at once: bounds the readings held in memory (a day of 32
        points is ~4,000) while thousands log in together."""

    def password(self) -> bytes:
        env = self.q.password_env
        text = os.environ.get(env, "") if env else ""
        try:
            pw = bytes.fromhex(text) if text else bytes(16)
        except ValueError:
            pw = b""
        if len(pw) != 16:
            raise ProtocolError(f"[q1376] password_env {env}: must hold 32 hex digits")
        return pw

    async def run(self) -> None:
        host, _, port = self.q.listen.rpartition(":")
        self.port = await self.front.start(host.strip("[]") or "0.0.0.0", int(port))
        log.info("q1376 front end listening on %s:%d for %d concentrators", host, self.port,
                 len(self.q.concentrators))
        self.ready.set()
        try:
            every = self.q.poll_every
            while True:
                now = self.clock.now()
                nxt = datetime.fromtimestamp(
                    (now.timestamp() // every.total_seconds() + 1) * every.total_seconds(), UTC)
                if await sleep_until_or_stopped(self.clock, nxt, self._stop):
                    return
                for link in self.front.online():
                    self._kick(link)
        finally:
            for task in list(self._busy.values()):
                task.cancel()
            await asyncio.gather(*self._busy.values(), return_exceptions=True)
            await self.front.close()
            await asyncio.gather(*self._status_writes, return_exceptions=True)

    def stop(self) -> None:
        self._stop.set()

    def _status(self, address: str, online: bool, peer: str) -> None:
        """Logins and lost links are events of the terminal, so the API and the web view
        (other processes) can tell who is online, and since when."""
        self._terminal_event(address, "terminal_online" if online else "terminal_offline",
                             {"terminal": address, "peer": peer})

    def _heartbeat(self, address: str) -> None:
        """At most one stored heartbeat per terminal per poll interval: enough for
        `collector concentrators` to say when it was last heard, without a row a beat."""
        now = self.clock.now()
        last = self._beats.get(address)
        if last is not None and now - last < self.q.poll_every:
            return
        self._beats[address] = now
        self._terminal_event(address, "terminal_heartbeat", {"terminal": address})

    def _terminal_event(self, address: str, kind: str, details: dict[str, Any]) -> None:
        event = Event(self.ids.get(address, address), self.clock.now(), kind, details)
        task = asyncio.create_task(self._write_status(event))
        self._status_writes.add(task)
        task.add_done_callback(self._status_writes.discard)

    async def _write_status(self, event: Event) -> None:
        try:
            await self.store.write_events([event])
        except Exception as exc:  # the link goes on; the next change is written again
            log.warning("terminal %s: status not stored (%s)", event.meter_id, exc)

    def _logged_in(self, link: TerminalLink) -> None:
        self._tables_checked.discard(link)
        self._kick(link)  # a terminal back from offline: catch up at once

    def _kick(self, link: TerminalLink) -> None:
        key = link.name
        running = self._busy.get(key)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._collect_logged(link), name=f"q1376 {key}")
        self._busy[key] = task

    async def _collect_logged(self, link: TerminalLink) -> None:
        try:
            async with self._collecting:
                await self.collect(link)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.metrics.task_failures.labels(f"q1376 {link.name}").inc()
            log.exception("terminal %s: collection failed; the front end goes on", link.name)

    # --- one collection ------------------------------------------------------------------

    async def collect(self, link: TerminalLink) -> TerminalRun:
        address = link.name
        terminal_id = self.ids.get(address, address)
        meters = self.points.get(address, {})
        run = TerminalRun(address)
        started = time.monotonic()
        now = self.clock.now()
        try:
            if link not in self._tables_checked:
                await self._check_table(link, meters, now)
                self._tables_checked.add(link)
            await self._clock(link, terminal_id, now)
            if meters:
                for day in await self._days(meters, now):
                    await self._day(link, meters, day, now, run)
                    run.days.append(day)
                await self._present(link, meters, now, run)
            await self._events(link, meters, terminal_id, now, run)
        except ProtocolError as exc:
            run.errors.append(str(exc))
            log.warning("terminal %s: %s", address, exc)
        latency = (time.monotonic() - started) * 1000
        attempts = [
            CollectionAttempt(m.id, m.bus, now,
                              Outcome.OK if m.id in run.ok_meters else (
                                  Outcome.TIMEOUT if run.errors else Outcome.ERROR),
                              latency, "" if m.id in run.ok_meters else (
                                  run.errors[-1] if run.errors else "no data for this point"),
                              terminal_id)
            for m in meters.values()]
        await self.store.write_attempts(attempts)
        for a in attempts:
            self.metrics.reads.labels(a.bus, a.outcome.value).inc()
        self.runs.append(run)
        async with self.collected:
            self.collected.notify_all()
        return run

    async def _write(self, readings: list[Reading], run: TerminalRun) -> None:
        if readings:
            await self.store.write_readings(readings)
            run.readings += len(readings)
            run.ok_meters.update(r.meter_id for r in readings)

    async def _days(self, meters: dict[int, Meter], now: datetime) -> list[date]:
        """Local dates from the earliest meter's last curve point to today."""
        floor = now - self.horizon
        latest = await last_points(self.store, [m.id for m in meters.values()], floor, now)
        since = min(latest.get(m.id, floor) for m in meters.values())
        # A point at local midnight belongs to the day before (it ends that day).
        first = (since - timedelta(seconds=1)).astimezone(self.tz).date()
        today = now.astimezone(self.tz).date()
        return [first + timedelta(days=i) for i in range((today - first).days + 1)]

    async def _ask(self, link: TerminalLink, afn: int, units: list[Unit]) -> list[Unit]:
        out: list[Unit] = []
        for i in range(0, len(units), UNITS_PER_REQUEST):
            for frame in await link.request(afn, units[i:i + UNITS_PER_REQUEST]):
                self.metrics.q1376_frames.labels(link.name, "ok").inc()
                if frame.afn == fr.AFN_CONFIRM:
                    continue  # denied for these points: nothing to store, nothing lost
                out.extend(items.split_units(frame))
        return out

    async def _day(self, link: TerminalLink, meters: dict[int, Meter], day: date,
                   now: datetime, run: TerminalRun) -> None:
        step = timedelta(minutes=15)
        start_local = datetime.combine(day, datetime.min.time()) + step
        ask = CurveRequest(start_local, 15, self.q.curve_points).encode()
        units = [Unit(pn, fn, ask) for pn in sorted(meters)
                 for fn in curves(meters[pn], self.q.curves)]
        closed = tr.day_end(day, self.tz) <= now
        if closed:
            units += [Unit(pn, fn, fm.encode_a20(day)) for pn in sorted(meters)
                      for fn in items.DAILY]
        if closed and (day + timedelta(days=1)).day == 1:
            units += [Unit(pn, fn, fm.encode_a21(day)) for pn in sorted(meters)
                      for fn in items.MONTHLY]
        await self._read_units(link, fr.AFN_CLASS2, units, meters, now, run)

    async def _read_units(self, link: TerminalLink, afn: int, units: list[Unit],
                          meters: dict[int, Meter], now: datetime, run: TerminalRun) -> None:
        readings: list[Reading] = []
        for unit in await self._ask(link, afn, units):
            meter = meters.get(unit.pn)
            if meter is not None:
                readings += tr.unit_readings(meter, unit.fn, items.decode_value(afn, unit),
                                             self.tz, now)
        await self._write(readings, run)

    async def _present(self, link: TerminalLink, meters: dict[int, Meter], now: datetime,
                       run: TerminalRun) -> None:
        units = [Unit(pn, fn) for pn in sorted(meters)
                 for fn in (items.F_FORWARD, items.F_REVERSE, items.F_PRESENT)]
        await self._read_units(link, fr.AFN_CLASS1, units, meters, now, run)

    async def _offset(self, link: TerminalLink) -> float | None:
        """The terminal clock (AFN 0C F2) against ours at the middle of the round trip,
        in seconds; None when it gave no time."""
        before = self.clock.now()
        found = await self._ask(link, fr.AFN_CLASS1, [Unit(0, items.F_CLOCK)])
        after = self.clock.now()
        local = items.decode_value(fr.AFN_CLASS1, found[0]) if found else None
        if not isinstance(local, datetime):
            return None
        return (tr.utc(local, self.tz) - (before + (after - before) / 2)).total_seconds()

    async def _clock(self, link: TerminalLink, terminal_id: str, now: datetime) -> None:
        offset = await self._offset(link)
        if offset is None:
            return
        await self.store.write_readings([Reading(
            terminal_id, "0-0:1.0.0", now, round(offset, 1), "s",
            source=f"q1376:{terminal_id}:clock")])

    async def _events(self, link: TerminalLink, meters: dict[int, Meter], terminal_id: str,
                      now: datetime, run: TerminalRun) -> None:
        key = link.name
        pm = self._event_pointer.get(key, 0)
        ask = bytes([pm, (pm + EVENTS_PER_PAGE) % 256])
        found = await self._ask(link, fr.AFN_CLASS3, [Unit(0, items.F_IMPORTANT_EVENTS, ask)])
        for unit in found:
            page = items.decode_value(fr.AFN_CLASS3, unit)
            if not isinstance(page, EventPage):
                continue
            events = tr.page_events(page, meters, key, terminal_id, self.tz, now)
            if events:
                await self.store.write_events(events)
                run.events += len(events)
            self._event_pointer[key] = page.pn

    async def _check_table(self, link: TerminalLink, meters: dict[int, Meter],
                           now: datetime) -> None:
        """The terminal's own pn → meter table against ours: a mismatch is a flag."""
        if not meters:
            return
        found = await self._ask(link, fr.AFN_QUERY, [Unit(0, items.F_POINT_TABLE,
                                                          points.encode_query(sorted(meters)))])
        said = {e.pn: e.meter_address for u in found
                for e in items.decode_value(fr.AFN_QUERY, u)}
        flags = []
        for pn, meter in sorted(meters.items()):
            theirs = said.get(pn)
            if meter.address and theirs != meter.address:
                flags.append(Flag(meter.id, "point_mismatch", "warning", now, now, {
                    "terminal": link.name, "pn": pn, "configured": meter.address,
                    "terminal_says": theirs or "(no such point)",
                    "hint": "the terminal reads another meter at this pn: check the "
                            "terminal's F10 table and collector.toml before trusting reads"},
                    meter.area))
        if flags:
            log.warning("terminal %s: %d points disagree with the configuration",
                        link.name, len(flags))
            await self.store.raise_flags(flags)

    # --- what terminals send unasked -------------------------------------------------------

    async def _report(self, link: TerminalLink, frame: fr.Frame) -> bool:
        """主动上报: store what can be read, then confirm; a report we cannot read is kept
        as a dead letter and not confirmed, so the terminal sends it again."""
        meters = self.points.get(link.name, {})
        terminal_id = self.ids.get(link.name, link.name)
        now = self.clock.now()
        try:
            found = items.split_units(frame)
            readings: list[Reading] = []
            events: list[Event] = []
            for unit in found:
                value: Any = items.decode_value(frame.afn, unit)
                meter = meters.get(unit.pn)
                if isinstance(value, EventPage):
                    events += tr.page_events(value, meters, link.name, terminal_id, self.tz,
                                             now)
                elif meter is not None:
                    readings += tr.unit_readings(meter, unit.fn, value, self.tz, now,
                                                 "report")
        except fr.FrameError as exc:
            log.warning("terminal %s: report AFN %02X unreadable (%s); kept as a dead letter",
                        link.name, frame.afn, exc)
            await self.store.write_dead_letter(f"q1376:{link.name}", frame.body, str(exc))
            self.metrics.dead_letters.labels("q1376").inc()
            return False
        if readings:
            await self.store.write_readings(readings)
        if events:
            await self.store.write_events(events)
        return True

    # --- control ---------------------------------------------------------------------------

    async def time_sync(self, address: str, *, force: bool = False) -> str:
        """Set a terminal's clock (AFN 05 F31); refused across whole hours, as for meters."""
        link = self.front.links.get(address)
        if link is None:
            raise ProtocolError(f"terminal {address} is not online")
        offset = await self._offset(link) or 0.0
        if not force and looks_like_zone_error(offset):
            return (f"refused: terminal {address} is {offset / 3600:+.1f} h off, a time-zone "
                    "setting rather than drift; fix the zone, or force")
        target = (self.clock.now() + timedelta(milliseconds=500)).astimezone(self.tz)
        await link.request(fr.AFN_CONTROL, [Unit(0, items.F_TIME_SYNC, fm.encode_a1(
            target.replace(tzinfo=None, microsecond=0)))], pw=self.password())
        return f"terminal {address}: clock set (was {offset:+.0f} s)"

    async def prepaid_switch(self, meter_id: str, action: str, reason: str) -> bool:
        """Prepaid's switch for meters behind concentrators: True once the terminal
        confirmed the control."""
        try:
            await self.switch(meter_id, trip=action == "trip")
        except ProtocolError as exc:
            log.warning("%s of %s not done (%s): %s", action, meter_id, reason, exc)
            return False
        log.info("%s of %s done through its concentrator (%s)", action, meter_id, reason)
        return True

    async def switch(self, meter_id: str, trip: bool) -> None:
        """Remote trip (AFN 05 F1) or allow close (F2) of a prepaid meter's point."""
        address, pn = self.q.points[meter_id]
        link = self.front.links.get(address)
        if link is None:
            raise ProtocolError(f"terminal {address} of meter {meter_id} is not online",
                                meter=meter_id)
        unit = Unit(pn, items.F_TRIP, b"\x00") if trip else Unit(pn, items.F_ALLOW_CLOSE)
        frames = await link.request(fr.AFN_CONTROL, [unit], pw=self.password())
        verdict = items.split_units(frames[0])
        if verdict and verdict[0].fn == items.F_ITEMISED:
            _, results = items.decode_itemised(verdict[0].data)
            if not all(v.ok for v in results):
                raise ProtocolError(f"terminal {address} refused the control of pn {pn}",
                                    meter=meter_id)
