"""Run the rules over what storage holds and raise Flags: once each, open until cleared.

A fast pass after each collection cycle covers the last day (missed reads, faults,
wiring, clock, tamper); the daily pass adds theft and line loss over the trailing
baseline. Findings come back from collector.flags.detect as index windows on each
meter's interval grid; here they become times and rows.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from operator import itemgetter
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.acquisition.clock import align_down
from collector.config.thresholds import Thresholds
from collector.flags import detect
from collector.ops.read_ahead import read_ahead
from model import Flag, Meter, ReadKind
from storage.base import Store

ENERGY, REVERSE = "1-0:1.8.0", "1-0:2.8.0"
TARIFFS = ("1-0:1.8.1", "1-0:1.8.2", "1-0:1.8.3", "1-0:1.8.4")
VOLTS = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
AMPS = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")
WATTS = ("1-0:36.7.0", "1-0:56.7.0", "1-0:76.7.0")
ANGLES = ("1-0:81.7.4", "1-0:81.7.15", "1-0:81.7.26")
NEUTRAL, CLOCK = "1-0:91.7.0", "0-0:1.0.0"
FROZEN = "frozen:1-0:1.8.0"
TERMINAL_FAULTS = ("meter_fault", "voltage_loss")
"""Event kinds a concentrator records about its meters (1376.1 ERC 13/10): the terminal
saw what the head-end cannot, so each is a flag of its own."""
EVENT_FLAGS = {"cover_open": "tamper", "magnetic_field": "tamper",
               **{kind: kind for kind in TERMINAL_FAULTS}}
"""Event kind → the flag it raises on its meter."""
QUANTITIES = (ENERGY, REVERSE, *TARIFFS, *VOLTS, *AMPS, *WATTS, *ANGLES, NEUTRAL, CLOCK)


@dataclass
class FlagRun:
    findings: list[Flag] = field(default_factory=list)
    raised: int = 0


@dataclass(frozen=True)
class _Points:
    """One series' reads in the window: epoch seconds and values, in time order."""
    at: detect.F64
    value: detect.F64

    def __len__(self) -> int:
        return len(self.at)


_NONE = _Points(np.empty(0), np.empty(0))


@dataclass
class _Grid:
    start: datetime
    every: timedelta
    n: int

    def time(self, i: int) -> datetime:
        return self.start + self.every * min(max(i, 0), self.n - 1)

    def on_slots(self, points: _Points) -> tuple[NDArray[np.int64], detect.F64]:
        """The slots the reads fall on, and their values; any other instant is off the
        grid."""
        i = (points.at - self.start.timestamp()) / self.every.total_seconds()
        on = (i == np.floor(i)) & (i >= 0) & (i < self.n)
        return i[on].astype(np.int64), points.value[on]

    def series(self, points: _Points) -> detect.F64:
        out = np.full(self.n, np.nan)
        if len(points):
            k, v = self.on_slots(points)
            out[k] = v
        return out


BLOCK = 500
"""Meters judged together. Their 35 days come as one row per read: with 15-minute curves
that is 1.7 M rows for 500 meters, some 350 MB while the block is judged (5,000 took a
2,000-meter district's pass to 3.4 GB)."""
_ByMeter = dict[str, dict[str, _Points]]


def _by_meter(rows: Sequence[tuple[str, str, str, float, float]]) -> _ByMeter:
    """Each meter's reads by quantity, as arrays. Daily frozen energy is another channel:
    it fills the register series but does not say when interval polling began. Where
    two kinds of one other quantity share an instant, the later kind in the rows'
    order wins, as it always has."""
    out: _ByMeter = {}
    for (meter, quantity, kind), group in groupby(rows, key=itemgetter(0, 1, 2)):
        if kind == ReadKind.INSTANT.value:
            continue  # an on-demand read off the slot grid
        key = FROZEN if kind == ReadKind.FROZEN_DAILY.value and quantity == ENERGY \
            else quantity
        chunk = list(group)
        at = np.fromiter((r[3] for r in chunk), np.float64, len(chunk))
        value = np.fromiter((r[4] for r in chunk), np.float64, len(chunk))
        series = out.setdefault(meter, {})
        if key in series:
            at, value = (np.concatenate([series[key].at, at]),
                         np.concatenate([series[key].value, value]))
            last = len(at) - 1 - np.unique(at[::-1], return_index=True)[1]
            at, value = at[last], value[last]
        series[key] = _Points(at, value)
    return out


class FlagEngine:
    def __init__(self, store: Store, meters: Sequence[Meter], *, every: timedelta,
                 tz: ZoneInfo, thresholds: Thresholds | None = None,
                 interval_of: Mapping[str, timedelta] | None = None) -> None:
        """`interval_of` gives each meter's register schedule; a meter read less often
        than `every` (a transformer meter read daily) is judged only in the balance."""
        self.store = store
        self.meters = {m.id: m for m in meters}
        self.every = every
        self.interval_of = dict(interval_of or {})
        self.tz = tz
        self.t = thresholds or Thresholds()

    async def run(self, now: datetime, *, full: bool) -> FlagRun:
        days = self.t.baseline_days + 2 * self.t.recent_days if full else 1  # theft's span
        end = align_down(now, self.every)
        start = end - timedelta(days=days)
        grid = _Grid(start, self.every, int((end - start) / self.every) + 1)
        run = FlagRun()
        judged = [m for m in self.meters.values()
                  if self.interval_of.get(m.id, self.every) == self.every]

        def judge(block: Sequence[Meter], rows: Sequence[tuple[str, str, str, float, float]]
                  ) -> list[Flag]:
            by_meter = _by_meter(rows)
            return [f for m in block for f in self._meter(m, by_meter.get(m.id, {}), grid, full)]

        def read(block: Sequence[Meter]) -> Awaitable[list[tuple[str, str, str, float, float]]]:
            return self.store.values_in(start, end, QUANTITIES, [m.id for m in block])

        # Block by block, so a district's 35 days never sit in Python at once, the next
        # block's read running in the database while this one is judged; the arithmetic
        # runs on a worker thread: the event loop belongs to the buses.
        blocks = [judged[n:n + BLOCK] for n in range(0, len(judged), BLOCK)]
        async with aclosing(read_ahead(blocks, read)) as each:
            async for block, rows in each:
                run.findings += await asyncio.to_thread(judge, block, rows)
        unknown = sorted(set(await self.store.heard_from(start, end)) - set(self.meters))
        strays = _by_meter(await self.store.values_in(start, end, QUANTITIES, unknown)
                           if unknown else [])
        for stray in sorted(strays):
            run.findings.append(Flag(stray, "unregistered_meter", "warning", start, end,
                                     {"readings": sum(len(v) for v in strays[stray].values()),
                                      "hint": "answers but has no record: add it to the config"}))
        for event in await self.store.events_in(start, end):
            owner = self.meters.get(event.meter_id)
            kind = EVENT_FLAGS.get(event.kind)
            # A concentrator's record that a fault ended (1376.1 D15 = 0) is no new fault.
            ended = event.kind in TERMINAL_FAULTS and not event.details.get("began", True)
            if kind is not None and owner is not None and not ended:
                run.findings.append(Flag(owner.id, kind, "warning", event.ts, event.ts,
                                         {"event": event.kind, **event.details}, owner.area))
        if full:
            runaway = {f.subject: f.start for f in run.findings if f.kind == "runaway"}
            run.findings += await self._line_loss(start, end, runaway)
        run.raised = await self.store.raise_flags(run.findings)
        return run

    def _meter(self, meter: Meter, q: dict[str, _Points], grid: _Grid,
               full: bool) -> list[Flag]:
        if not q:
            return [Flag(meter.id, "never_heard", "warning", grid.time(0), grid.time(grid.n - 1),
                         {"hint": "registered but no reading in the window: check the meter, "
                                  "its address and its bus"}, meter.area)]
        t = self.t
        polled = grid.series(q.get(ENERGY, _NONE))
        register = np.where(np.isnan(polled), grid.series(q.get(FROZEN, _NONE)), polled)
        kwh = np.diff(register, prepend=np.nan)
        found: list[detect.Finding] = []
        # Slots before the meter's first interval read in the window were not yet expected
        # of it (commissioning); the first read only anchors the first difference.
        first = int(np.flatnonzero(~np.isnan(polled))[0]) if (~np.isnan(polled)).any() \
            else grid.n
        expected = polled[first + 1:]
        if np.isnan(expected).any():
            found += [detect.Finding(f.kind, f.severity, f.start + first + 1, f.end + first + 1,
                                     f.evidence)
                      for f in detect.gaps(expected)]
        def per_phase(names: Sequence[str]) -> detect.F64:
            return np.stack([grid.series(q.get(x, _NONE)) for x in names], axis=1)

        # Most meters report no phase currents or voltages: no grids of NaN for them.
        amps = per_phase(AMPS) if any(a in q for a in AMPS) else None
        found += detect.runaway(kwh, meter.phases, t, self.every.total_seconds() / 3600)
        present = np.flatnonzero(~np.isnan(register))
        found += [detect.Finding(f.kind, f.severity, int(present[f.start]), int(present[f.end]),
                                 f.evidence)
                  for f in detect.backward(register[present], t)]
        if amps is not None and np.isfinite(amps).any():
            found += detect.stopped(kwh, amps, t, 1)
        if TARIFFS[0] in q:
            # Compared only where a tariff register was read (its midnights), not over
            # every slot of the month: elsewhere the difference is 0 by definition.
            read = [grid.on_slots(q.get(x, _NONE)) for x in TARIFFS]
            slots = np.unique(np.concatenate([k for k, _ in read]))
            stacked = np.full((len(TARIFFS), len(slots)), np.nan)
            for row, (k, v) in zip(stacked, read, strict=True):
                row[np.searchsorted(slots, k)] = v
            total = register[slots]
            read_together = np.isfinite(stacked).any(axis=0) & np.isfinite(total)
            delta = np.zeros(grid.n)
            delta[slots] = np.where(read_together, total - np.nansum(stacked, axis=0), 0.0)
            found += detect.tariff_mismatch(delta, t)
        if CLOCK in q:
            offsets = grid.series(q[CLOCK])
            found += detect.clock_drift(np.nan_to_num(offsets), t)
        if REVERSE in q:
            reverse = grid.series(q[REVERSE])
            found += detect.reverse_growth(np.diff(reverse[~np.isnan(reverse)]),
                                           meter.exporter, t)
        # The phase checks judge only slots with all three voltages and currents read:
        # without currents there is none, so nothing to build or judge.
        volts = (per_phase(VOLTS) if meter.phases == 3 and amps is not None
                 and any(v in q for v in VOLTS) else None)
        if amps is not None and volts is not None and np.isfinite(volts).all(axis=1).any():
            ok = np.isfinite(volts).all(axis=1) & np.isfinite(amps).all(axis=1)
            v, a = volts[ok], amps[ok]
            found += detect.voltage_loss(v, a, t) + detect.current_loss(v, a, t)
            found += detect.imbalance(a, t)
            watts = per_phase(WATTS)[ok]
            if np.isfinite(watts).all():
                found += detect.negative_phase_power(watts, meter.exporter, t)
            angles = per_phase(ANGLES)[ok]
            if np.isfinite(angles).all() and len(angles):
                found += detect.phasor_diagnosis(angles, a, meter.exporter, t)
        flags = [Flag(meter.id, f.kind, f.severity, grid.time(f.start), grid.time(f.end),
                      f.evidence, meter.area) for f in found]
        if full and not meter.is_area_meter:
            flags += self._theft(meter, kwh, q, grid, found)
        return flags

    def _theft(self, meter: Meter, kwh: detect.F64, q: dict[str, _Points],
               grid: _Grid, found: list[detect.Finding]) -> list[Flag]:
        per_day = int(timedelta(days=1) / self.every)
        days = grid.n // per_day
        covered: np.ndarray = np.asarray(
            np.isfinite(kwh[-days * per_day:].reshape(days, per_day)).any(axis=1))
        if covered.sum() < self.t.recent_days + 7 or not covered[-self.t.recent_days:].all():
            return []  # too little history to judge a change against
        # A register that jumped backwards is a fault, not negative consumption.
        profile = np.where(kwh < 0, np.nan, kwh)[-days * per_day:].reshape(days, per_day)
        neutral = grid.series(q[NEUTRAL])[-days * per_day:] if NEUTRAL in q else None
        phase = grid.series(q[AMPS[0]])[-days * per_day:] if AMPS[0] in q else None
        if neutral is not None and phase is not None:
            ok = np.isfinite(neutral) & np.isfinite(phase)
            neutral, phase = neutral[ok], phase[ok]
        signals = detect.theft_signals(profile, self.t, neutral, phase, exporter=meter.exporter)
        wiring = any(f.kind in ("wiring", "negative_phase_power", "reverse_energy")
                     for f in found)
        score, reasons = detect.theft_score(signals, self.t, wiring=wiring)
        if score < self.t.theft_score or any(f.kind in ("stopped", "runaway") for f in found):
            return []
        return [Flag(meter.id, "theft", "critical", grid.time(grid.n - self.t.recent_days
                                                              * per_day), grid.time(grid.n - 1),
                     {"score": score, "reasons": reasons,
                      "recent_vs_baseline": round(signals.drop_ratio, 3)}, meter.area)]

    async def _line_loss(self, start: datetime, end: datetime,
                         runaway: Mapping[str, datetime]) -> list[Flag]:
        """Area by area, in groups of about a block's meters: each group's daily reads
        come from its own meters' midnight registers, so a district is never in memory
        at once, and the store computes no day for anyone outside the group."""
        members: dict[str, list[Meter]] = defaultdict(list)
        for m in self.meters.values():
            if m.area:
                members[m.area].append(m)
        flags: list[Flag] = []
        group: list[str] = []
        size = 0
        for area in sorted(members):
            group.append(area)
            size += len(members[area])
            if size >= BLOCK:
                flags += await self._balance(group, members, start, end, runaway)
                group, size = [], 0
        if group:
            flags += await self._balance(group, members, start, end, runaway)
        return flags

    async def _balance(self, areas: Sequence[str], members: Mapping[str, Sequence[Meter]],
                       start: datetime, end: datetime,
                       runaway: Mapping[str, datetime]) -> list[Flag]:
        meters = [m for a in areas for m in members[a]]
        daily = await self.store.daily_consumption(start, end, by="meter", tz=str(self.tz),
                                                   meter_ids=[m.id for m in meters])
        per_meter: dict[str, dict[str, float]] = defaultdict(dict)
        for row in daily:
            per_meter[row.subject][row.day] = row.kwh
        for meter_id, since in runaway.items():
            if meter_id not in per_meter:
                continue
            # The balance estimates a runaway register's days from its own days before.
            series = per_meter[meter_id]
            cut = since.astimezone(self.tz).date().isoformat()
            before = [v for d, v in series.items() if d < cut]
            for d in series:
                if d >= cut and before:
                    series[d] = sum(before) / len(before)
        # An exporter's generation feeds the same transformer: the customers' side of
        # the balance is what they imported less what they exported.
        exported: dict[str, dict[str, float]] = defaultdict(dict)
        exporters = [m.id for m in meters if m.exporter]
        if exporters:
            for row in await self.store.daily_consumption(start, end, by="meter",
                                                          tz=str(self.tz), quantity=REVERSE,
                                                          meter_ids=exporters):
                exported[row.subject][row.day] = row.kwh
        flags = []
        for area in areas:
            supply = [m for m in members[area] if m.is_area_meter]
            customers = [m for m in members[area] if not m.is_area_meter]
            if len(supply) != 1 or not customers:
                continue
            days = sorted(per_meter.get(supply[0].id, {}))
            if len(days) < 1:
                continue
            supplied = np.array([per_meter[supply[0].id][d] for d in days])
            billed = np.array([sum(per_meter.get(c.id, {}).get(d, 0.0)
                                   - exported.get(c.id, {}).get(d, 0.0) for c in customers)
                               for d in days])
            window = min(7, len(days))
            for f in detect.line_loss(supplied, billed, self.t, window):
                evidence = {**f.evidence, "days": days[-window:],
                            "supplied_kwh": round(float(supplied[-window:].sum()), 3),
                            "billed_kwh": round(float(billed[-window:].sum()), 3)}
                if f.kind == "high_line_loss" and len(days) >= 7:
                    corr = detect.loss_correlation(
                        np.array([[per_meter.get(c.id, {}).get(d, 0.0) for d in days]
                                  for c in customers]), supplied - billed)
                    order = np.argsort(corr)[:10]
                    evidence["suspects_by_loss_correlation"] = [
                        {"meter": customers[i].id, "corr": round(float(corr[i]), 3)}
                        for i in order]
                flags.append(Flag(area, f.kind, f.severity, start, end, evidence, area))
        return flags

