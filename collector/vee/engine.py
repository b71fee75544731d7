"""One VEE pass: load a span of local days, estimate the gaps, judge every meter-day,
and write the estimates, the verdicts and any flag for a replacement nobody recorded.

A pass is idempotent: the same data gives the same estimates and verdicts, and the
stores write nothing for a version or verdict that is already current.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import numpy as np

from collector.acquisition.clock import local_midnight
from collector.config.vee import VeeSettings
from collector.ops.read_ahead import read_ahead
from collector.vee import codes
from collector.vee.estimate import LikeDays, estimate_meter
from collector.vee.grid import Grid, build_grid
from collector.vee.rules import judge
from model import Flag, Meter, ReadKind, ValueVersion
from storage.base import Store
from storage.versions import ValidatedStore

ENERGY = "1-0:1.8.0"
CLOCK = "0-0:1.0.0"
VOLTS = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
METER_NUMBER = "0-0:96.1.0"
"""表号: a meter answering with another number is another meter."""
UNRECORDED = "unrecorded_replacement"
BLOCK = 5000
"""Meters validated together: 5,000 × 15 days of 15-minute slots is some 60 MB of grid,
and a block's queries are large enough that the per-query cost stays small."""


class VeeStore(Store, ValidatedStore, Protocol):
    """A store that holds raw reads and their versions (both built-in stores)."""


@dataclass
class VeeRun:
    meter_days: int = 0
    validated: int = 0
    """Meter-days every rule passes, gaps resolved by estimates."""
    estimated: int = 0
    """Meter-days with at least one estimated interval (validated or not)."""
    held: int = 0
    held_by: Counter[str] = field(default_factory=Counter)
    versions: int = 0
    nulls: int = 0
    flags: int = 0

    def summary(self) -> str:
        why = ", ".join(f"{rule} {n}" for rule, n in self.held_by.most_common())
        return (f"VEE: {self.meter_days} meter-days judged: {self.validated} validated "
                f"({self.estimated} with estimates), {self.held} held"
                + (f" ({why})" if why else ""))


class VeeEngine:
    def __init__(self, store: VeeStore, settings: VeeSettings, tz: ZoneInfo,
                 meters: Sequence[Meter],
                 interval_of: Mapping[str, timedelta] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.tz = tz
        self.meters = {m.id: m for m in meters if not m.is_area_meter}
        default = timedelta(minutes=settings.interval_minutes)
        self.interval_of = {m: (interval_of or {}).get(m, default) for m in self.meters}

    async def run(self, first: date, last: date, now: datetime) -> VeeRun:
        run = VeeRun()
        groups: dict[timedelta, list[str]] = defaultdict(list)
        for meter_id, step in sorted(self.interval_of.items()):
            if step <= timedelta(hours=1) and timedelta(days=1) % step == timedelta(0):
                groups[step].append(meter_id)
        assignments: dict[str, list[Any]] = defaultdict(list)
        for a in await self.store.assignments():
            assignments[a.meter_id].append(a)
        for step, ids in groups.items():
            # Block by block: a district's grid for every meter at once would not fit.
            # The next block loads (the database's work) while this one is judged.
            blocks = [ids[n:n + BLOCK] for n in range(0, len(ids), BLOCK)]
            load = functools.partial(self.load, first=first, last=last, step=step, now=now,
                                     assignments=assignments)
            async with aclosing(read_ahead(blocks, load)) as each:
                async for _, grid in each:
                    await self._pass(grid, now, run)
        return run

    async def load(self, ids: list[str], first: date, last: date, step: timedelta,
                    now: datetime, assignments: Mapping[str, Sequence[Any]]) -> Grid:
        s = self.settings
        start = local_midnight(first - timedelta(days=s.lookback_days), self.tz)
        end = local_midnight(last + timedelta(days=1), self.tz)
        # Columns and plain rows, not a Reading per value: a district's block holds
        # hundreds of thousands of frozen registers and voltage reads.
        current, frozen, other = await asyncio.gather(
            self.store.current_arrays(ENERGY, start, end, ids),
            self.store.current_arrays(ENERGY, start, end, ids, ReadKind.FROZEN_DAILY),
            self.store.values_in(start, end, [CLOCK, *VOLTS, METER_NUMBER], ids))
        clock = [(r[0], r[3], r[4]) for r in other if r[1] == CLOCK]
        volts = [(r[0], r[3], r[4]) for r in other if r[1] in VOLTS]
        numbers = [(r[0], r[3], r[4]) for r in other if r[1] == METER_NUMBER]
        return build_grid(ids, first, last, s.lookback_days, step, self.tz, now, current,
                          frozen, clock, volts,
                          [a for m in ids for a in assignments.get(m, ())], numbers)

    async def _pass(self, grid: Grid, now: datetime, run: VeeRun) -> None:
        s = self.settings
        complete = [d for d in range(len(grid.days)) if grid.ts(int(grid.edges[d + 1])) <= now]
        complete_until = int(grid.edges[complete[-1] + 1]) if complete else -1
        like = LikeDays(grid, self.tz, s.holidays)
        versions: list[ValueVersion] = []
        for i, meter_id in enumerate(grid.meter_ids):
            for est in estimate_meter(grid, i, like, s, complete_until):
                grid.value[i, est.slot] = np.nan if est.value is None else est.value
                grid.auto[i, est.slot] = True
                run.nulls += est.value is None
                versions.append(ValueVersion(
                    meter_id, ENERGY, grid.ts(est.slot), est.value, est.quality, est.method,
                    "0", codes.ACTOR, est.note))
        run.versions += await self.store.write_versions(versions)
        phases = np.array([self.meters[m].phases for m in grid.meter_ids], dtype=np.int64)
        exporter = np.array([self.meters[m].exporter for m in grid.meter_ids], dtype=bool)
        judgement = judge(grid, s, phases, exporter)
        await self.store.write_verdicts(judgement.verdicts())
        held = judgement.held()
        run.meter_days += int(judgement.judged.sum())
        run.held += int(held.sum())
        run.validated += int((judgement.judged & ~held).sum())
        run.estimated += int(((judgement.estimated > 0) & judgement.judged).sum())
        for rule in codes.RULES:
            holding = int(judgement.holds(rule).sum())
            if holding:
                run.held_by[rule] += holding
        flags = []
        for (rule, i, d), ev in judgement.evidence.items():
            if rule == codes.REPLACEMENT:
                day = grid.days[grid.judged_from + d]
                meter = self.meters[grid.meter_ids[i]]
                flags.append(Flag(meter.id, UNRECORDED, "critical",
                                  local_midnight(day, self.tz),
                                  local_midnight(day + timedelta(days=1), self.tz),
                                  ev, meter.area))
        if flags:
            run.flags += await self.store.raise_flags(flags)
