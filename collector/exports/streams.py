"""Validated interval energy per data stream and day, read from the store by chunk of
meters, so an export of a month for 100,000 meters holds one chunk in memory at a time.

A data stream is one meter's forward active energy on one service point (its NMI): a
replacement gives the service point two streams, each with its own meter serial. The
interval energy is the difference of the register reads at its ends times the
assignment's multiplier; its quality is the worse of the two reads' and its method the
estimated read's, so an interval next to an estimate is marked estimated too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

import numpy as np

from model import MeterAssignment, Quality
from storage.arrays import CurrentArrays
from storage.versions import ValidatedStore

ENERGY = "1-0:1.8.0"


@dataclass(frozen=True, slots=True)
class Interval:
    value: float | None
    quality: Quality
    method: str
    reason: str


@dataclass(frozen=True, slots=True)
class StreamDay:
    nmi: str
    meter: str
    day: date
    start: datetime
    """UTC start of the day (local standard time: NEM12 days have no DST)."""
    intervals: tuple[Interval, ...]


def standard_midnight(day: date, tz: tzinfo) -> datetime:
    """The day's start in the zone's standard time (its UTC offset less any DST)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=tz)
    offset = (noon.utcoffset() or timedelta(0)) - (noon.dst() or timedelta(0))
    return datetime(day.year, day.month, day.day, tzinfo=UTC) - offset


async def stream_days(store: ValidatedStore, meter_ids: Sequence[str], first: date,
                      last: date, tz: tzinfo, step: timedelta = timedelta(minutes=15),
                      chunk: int = 500) -> AsyncIterator[StreamDay]:
    """Every (stream, day) from `first` to `last` inclusive, meter by meter."""
    assignments: dict[str, list[MeterAssignment]] = {}
    for a in await store.assignments():
        assignments.setdefault(a.meter_id, []).append(a)
    lo = standard_midnight(first, tz)
    hi = standard_midnight(last + timedelta(days=1), tz)
    for c in range(0, len(meter_ids), chunk):
        ids = list(meter_ids[c:c + chunk])
        arrays = await store.current_arrays(ENERGY, lo, hi, ids)
        for meter in ids:
            if arrays.rows(meter).stop == arrays.rows(meter).start:
                continue
            own = assignments.get(meter) or [MeterAssignment(meter, meter)]
            for a in own:
                for day in _days(first, last):
                    start = standard_midnight(day, tz)
                    end = start + timedelta(days=1)
                    if not (a.start is None or a.start < end) or not (a.end is None
                                                                      or a.end > start):
                        continue
                    intervals = _intervals(arrays, meter, start, step, a)
                    if any(i.value is not None or i.quality is not Quality.NULL
                           for i in intervals):
                        yield StreamDay(a.service_point_id, meter, day, start, intervals)


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _intervals(arrays: CurrentArrays, meter: str, start: datetime, step: timedelta,
               a: MeterAssignment) -> tuple[Interval, ...]:
    rows = arrays.rows(meter)
    ts = arrays.ts[rows]
    n = int(timedelta(days=1) / step)
    ends = start.timestamp() + step.total_seconds() * np.arange(n + 1)
    at = np.searchsorted(ts, ends)
    found = (at < len(ts)) & (ts[np.minimum(at, len(ts) - 1)] == ends)
    out = []
    for k in range(1, n + 1):
        slot_start = datetime.fromtimestamp(float(ends[k - 1]), UTC)
        on = (a.start is None or slot_start >= a.start) and (a.end is None
                                                            or slot_start < a.end)
        if not (on and found[k - 1] and found[k]):
            out.append(Interval(None, Quality.NULL, "", "0"))
            continue
        i, j = rows.start + int(at[k - 1]), rows.start + int(at[k])
        v0, v1 = arrays.value[i], arrays.value[j]
        q0, q1 = arrays.quality_of(i), arrays.quality_of(j)
        worse, which = (q1, j) if q1.rank <= q0.rank else (q0, i)
        if np.isnan(v0) or np.isnan(v1):
            out.append(Interval(None, Quality.NULL, arrays.methods[int(arrays.method[which])],
                                "0"))
            continue
        method = "" if worse is Quality.ACTUAL else arrays.methods[int(arrays.method[which])]
        out.append(Interval(round(float(v1 - v0) * a.multiplier, 6), worse, method,
                            "" if worse is Quality.ACTUAL else "0"))
    return tuple(out)
