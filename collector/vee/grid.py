"""Meters × interval slots as arrays, with each local day's edges, for the rules to judge.

Reads are register values stamped at their interval's end, so slot k's interval energy
is value[k] − value[k−1], and a local day holds the slots after its midnight up to and
including the next one: 96 on most days, 92 or 100 on a DST day.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.acquisition.clock import local_midnight
from model import MeterAssignment
from storage.arrays import CurrentArrays

F64 = NDArray[np.float64]
BOOL = NDArray[np.bool_]
Point = tuple[str, float, float]
"""(meter, epoch seconds, value): a read the grid only needs the time and value of."""


@dataclass
class Grid:
    meter_ids: list[str]
    start: datetime
    step: timedelta
    days: list[date]
    edges: NDArray[np.int64]
    """Slot index of each local midnight: day d holds slots edges[d]+1 … edges[d+1]."""
    value: F64
    """Current register value per meter and slot (M × T+1); NaN where none or null."""
    fixed: BOOL
    """The value came from the meter or a person: estimates never move it."""
    auto: BOOL
    """The current value is VEE's own estimate (it may be re-estimated)."""
    expected: BOOL
    """A read is due: the meter was on its service point then, and the slot has passed."""
    frozen: F64
    """The meter's frozen daily register at each local midnight (M × D+1)."""
    clock: F64
    """Largest |meter clock − server| seen each day, s (M × D); NaN: not checked."""
    volts: F64
    """Highest phase voltage seen each day (M × D); NaN: not read."""
    judged_from: int
    """Days before this index are history only (like days, spike reference)."""
    renumbered: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    """(meter row, day) → the meter number read before and after, where it changed."""

    @property
    def slots(self) -> int:
        return int(self.value.shape[1])

    def ts(self, k: int) -> datetime:
        return self.start + k * self.step

    def energy(self) -> F64:
        """Interval energy per slot (slot 0 has none)."""
        e = np.empty_like(self.value)
        e[:, 0] = np.nan
        np.subtract(self.value[:, 1:], self.value[:, :-1], out=e[:, 1:])
        return e


def build_grid(
    meter_ids: Sequence[str], first: date, last: date, history_days: int, step: timedelta,
    tz: ZoneInfo, now: datetime, current: CurrentArrays, frozen: CurrentArrays,
    clock: Iterable[Point] = (),
    volts: Iterable[Point] = (), assignments: Sequence[MeterAssignment] = (),
    numbers: Iterable[Point] = (),
) -> Grid:
    days = [first - timedelta(days=history_days) + timedelta(days=i)
            for i in range((last - first).days + history_days + 1)]
    start = local_midnight(days[0], tz)
    edge_ts = [local_midnight(d, tz) for d in days] + [local_midnight(last + timedelta(1), tz)]
    edges = np.array([round((t - start) / step) for t in edge_ts], dtype=np.int64)
    row = {m: i for i, m in enumerate(meter_ids)}
    m, t, d = len(meter_ids), int(edges[-1]) + 1, len(days)
    value = np.full((m, t), np.nan)
    fixed = np.zeros((m, t), dtype=bool)
    auto = np.zeros((m, t), dtype=bool)

    def slot(ts: datetime) -> int | None:
        k, off = divmod(ts - start, step)
        return k if not off and 0 <= k < t else None

    start_s, step_s = start.timestamp(), step.total_seconds()
    for r, rows, ks, on in _on_slots(current, row, start_s, step_s, t):
        v, auto_v = current.value[rows][on], current.automatic[rows][on]
        auto[r, ks] = auto_v
        has = ~np.isnan(v)
        value[r, ks[has]] = v[has]
        fixed[r, ks[has]] = ~auto_v[has]
    frozen_at = np.full((m, d + 1), np.nan)
    for r, rows, ks, on in _on_slots(frozen, row, start_s, step_s, t):
        which = np.searchsorted(edges, ks)
        v = frozen.value[rows][on]
        midnight = (edges[np.minimum(which, d)] == ks) & ~np.isnan(v)
        ks, which, v = ks[midnight], which[midnight], v[midnight]
        frozen_at[r, which] = v
        # The meter's own register at midnight, from its daily memory: it makes the
        # slots after it due (a meter first read at 00:45 still owes 00:15 and 00:30)
        # and bounds their estimate, as an interval read there would.
        free = ~fixed[r, ks]
        value[r, ks[free]], fixed[r, ks[free]], auto[r, ks[free]] = v[free], True, False
    for a in assignments:
        # The register reads recorded at a swap anchor the intervals either side of it.
        i = row.get(a.meter_id)
        for ts, read in ((a.start, a.start_read), (a.end, a.final_read)):
            k = slot(ts) if ts is not None and i is not None else None
            if i is not None and k is not None and read is not None and not fixed[i, k]:
                value[i, k], fixed[i, k], auto[i, k] = read, True, False
    edge_s = np.array([e.timestamp() for e in edge_ts])
    clock_max = _daily_max(clock, row, edge_s, m, d, absolute=True)
    volts_max = _daily_max(volts, row, edge_s, m, d, absolute=False)
    expected = _expected(meter_ids, fixed, start, step, now, assignments,
                         local_midnight(first, tz))
    return Grid(list(meter_ids), start, step, days, edges, value, fixed, auto, expected,
                frozen_at, clock_max, volts_max, history_days,
                _renumbered(numbers, row, edge_s, d))


def _on_slots(arrays: CurrentArrays, row: dict[str, int], start_s: float,
              step_s: float, t: int) -> Iterator[tuple[int, slice, NDArray[np.int64], BOOL]]:
    """Per meter of the grid in `arrays`: its row, its values' slice, and the slots its
    values fall exactly on (with the mask of those values); a time off the grid is none."""
    for j, meter in enumerate(arrays.meter_ids):
        i = row.get(meter)
        if i is None:
            continue
        rows = slice(int(arrays.bounds[j]), int(arrays.bounds[j + 1]))
        at = (arrays.ts[rows] - start_s) / step_s
        near = np.rint(at).astype(np.int64)
        on = (np.abs(at - near) < 1e-6) & (near >= 0) & (near < t)
        yield i, rows, near[on], on


def _renumbered(numbers: Iterable[Point], row: dict[str, int], edge_s: F64,
                d: int) -> dict[tuple[int, int], dict[str, Any]]:
    """The days on which a meter's number (表号) read differs from the read before it:
    another meter answers at this meter's address."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    last: dict[str, Point] = {}
    for r in sorted(numbers, key=lambda r: (r[0], r[1])):
        meter, at, number = r
        before = last.get(meter)
        last[meter] = r
        i = row.get(meter)
        if before is None or i is None or before[2] == number:
            continue
        day = int(np.searchsorted(edge_s, at, side="left")) - 1
        if 0 <= day < d:
            out.setdefault((i, day), {"ts": datetime.fromtimestamp(at, UTC).isoformat(),
                                      "from": int(before[2]), "to": int(number)})
    return out


def _daily_max(reads: Iterable[Point], row: dict[str, int], edge_s: F64, m: int, d: int,
               *, absolute: bool) -> F64:
    """The largest read per meter and day, NaN where none: a block's hourly voltages are
    hundreds of thousands of reads, so the day search and the max run over arrays."""
    out = np.full((m, d), np.nan)
    reads = list(reads)
    if not reads:
        return out
    meters, ats, values = zip(*reads, strict=True)
    i = np.fromiter((row.get(meter, -1) for meter in meters), np.int64, len(reads))
    day = np.searchsorted(edge_s, np.asarray(ats, dtype=np.float64), side="left") - 1
    v = np.asarray(values, dtype=np.float64)
    ok = (i >= 0) & (day >= 0) & (day < d) & ~np.isnan(v)
    np.fmax.at(out, (i[ok], day[ok]), np.abs(v[ok]) if absolute else v[ok])
    return out


def _expected(meter_ids: Sequence[str], fixed: BOOL, start: datetime, step: timedelta,
              now: datetime, assignments: Sequence[MeterAssignment],
              judged_from: datetime) -> BOOL:
    """Due slots: from the meter's first read we hold (or its recorded installation),
    up to now, and only while it was on its service point. A meter on the books that
    has sent nothing at all is due over the judged days: it is not responding."""
    m, t = fixed.shape
    times = np.array([(start + k * step).timestamp() for k in range(t)])
    expected = np.zeros((m, t), dtype=bool)
    windows: dict[str, list[MeterAssignment]] = {}
    for a in assignments:
        windows.setdefault(a.meter_id, []).append(a)
    for i, meter in enumerate(meter_ids):
        seen = np.flatnonzero(fixed[i])
        begin = times[seen[0]] if len(seen) else judged_from.timestamp() + step.total_seconds()
        own = windows.get(meter)
        if not own:
            expected[i] = times >= begin
        else:
            for a in own:
                lo = min(a.start.timestamp(), begin) if a.start else begin
                hi = a.end.timestamp() if a.end else np.inf
                expected[i] |= (times >= lo) & (times <= hi)
    expected &= times[None, :] <= now.timestamp()
    return expected
