"""Validated interval energy per data stream and day, read from the store by chunk of
meters, so an export of a month for 100,000 meters holds one chunk in memory at a time.

A data stream is one meter's forward active energy on one service point (its NMI): a
replacement gives the service point two streams, each with its own meter serial. The
interval energy is the difference of the register reads at its ends times the
assignment's multiplier; its quality is the worse of the two reads' and its method the
estimated read's, so an interval next to an estimate is marked estimated too.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

import numpy as np
from numpy.typing import NDArray

from model import MeterAssignment, Quality
from storage.arrays import CurrentArrays
from storage.base import QUALITY_CODES
from storage.versions import ValidatedStore

ENERGY = "1-0:1.8.0"


@dataclass(frozen=True, slots=True)
class Interval:
    value: float | None
    quality: Quality
    method: str
    reason: str


@dataclass(frozen=True)
class StreamDay:
    nmi: str
    meter: str
    day: date
    start: datetime
    """UTC start of the day (local standard time: NEM12 days have no DST)."""
    values: NDArray[np.float64]
    """kWh per interval; NaN where null."""
    qualities: tuple[Quality, ...] | None
    """Per interval; None when every interval is actual (nearly every day)."""
    methods: tuple[str, ...] = ()

    @property
    def intervals(self) -> tuple[Interval, ...]:
        out = []
        for k, v in enumerate(self.values.tolist()):
            q = Quality.ACTUAL if self.qualities is None else self.qualities[k]
            value = None if v != v else v  # NaN
            method = "" if self.qualities is None else self.methods[k]
            out.append(Interval(value, q, method, "" if q is Quality.ACTUAL else "0"))
        return tuple(out)


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
    per_day = int(timedelta(days=1) / step)
    days = _days(first, last)
    starts = [standard_midnight(d, tz) for d in days]
    contiguous = all(b - a == timedelta(days=1) for a, b in itertools.pairwise(starts))
    chunks = [list(meter_ids[c:c + chunk]) for c in range(0, len(meter_ids), chunk)]

    def fetch(n: int) -> asyncio.Task[CurrentArrays] | None:
        return (asyncio.ensure_future(store.current_arrays(ENERGY, lo, hi, chunks[n]))
                if n < len(chunks) else None)

    # The next chunk is read while this one is written out: the database works in its
    # own process, so on two cores the read and the formatting overlap.
    ahead = fetch(0)
    try:
        for n, ids in enumerate(chunks):
            assert ahead is not None
            arrays = await ahead
            ahead = fetch(n + 1)
            for meter in ids:
                if arrays.rows(meter).stop == arrays.rows(meter).start:
                    continue
                for a in assignments.get(meter) or [MeterAssignment(meter, meter)]:
                    # One pass over the whole span where the days join up (a zone whose
                    # standard offset did not change), else a day at a time.
                    spans = ([(0, lo, len(days))] if contiguous
                             else [(i, t, 1) for i, t in enumerate(starts)])
                    for first_day, begin, count in spans:
                        got = _span(arrays, meter, begin, count * per_day, step, a)
                        for k in range(count):
                            part = slice(k * per_day, (k + 1) * per_day)
                            day = StreamDay(a.service_point_id, meter, days[first_day + k],
                                            starts[first_day + k], *_judged(arrays, got, part))
                            if day.qualities is None or not all(
                                    q is Quality.NULL for q in day.qualities):
                                yield day
    finally:
        if ahead is not None:
            ahead.cancel()  # a consumer that stopped early leaves no read running


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


_RANK_OF_CODE = np.zeros(max(QUALITY_CODES.values()) + 1, dtype=np.int8)
for _q, _code in QUALITY_CODES.items():
    _RANK_OF_CODE[_code] = _q.rank


Span = tuple[NDArray[np.float64], NDArray[np.bool_], NDArray[np.bool_], NDArray[np.int64]]


def _span(arrays: CurrentArrays, meter: str, start: datetime, n: int, step: timedelta,
          a: MeterAssignment) -> Span:
    """Interval energy over n slots from `start`, whether each is actual, usable (both
    ends read, on the service point then), and the row of its worse end; as arrays, a
    meter-month at a time: an export of a month for 100,000 meters is 288 M intervals."""
    rows = arrays.rows(meter)
    ts = arrays.ts[rows]
    ends = start.timestamp() + step.total_seconds() * np.arange(n + 1)
    at = np.minimum(np.searchsorted(ts, ends), max(len(ts) - 1, 0))
    found = (ts[at] == ends) if len(ts) else np.zeros(n + 1, dtype=bool)
    idx = rows.start + at
    slot_start = ends[:-1]
    on = np.ones(n, dtype=bool)
    if a.start is not None:
        on &= slot_start >= a.start.timestamp()
    if a.end is not None:
        on &= slot_start < a.end.timestamp()
    value = arrays.value[idx]
    rank = _RANK_OF_CODE[arrays.quality[idx]]
    worse = np.where(rank[1:] <= rank[:-1], idx[1:], idx[:-1])
    usable = on & found[:-1] & found[1:]
    energy = np.round(np.where(usable, (value[1:] - value[:-1]) * a.multiplier, np.nan), 6)
    actual = usable & ~np.isnan(energy) & (_RANK_OF_CODE[arrays.quality[worse]]
                                           == Quality.ACTUAL.rank)
    return energy.astype(np.float64), actual, usable, worse


def _judged(arrays: CurrentArrays, got: Span, part: slice
            ) -> tuple[NDArray[np.float64], tuple[Quality, ...] | None, tuple[str, ...]]:
    """One day's values, and its qualities and methods unless every interval is actual."""
    energy, actual, usable, worse = got[0][part], got[1][part], got[2][part], got[3][part]
    if actual.all():
        return energy, None, ()
    qualities: list[Quality] = []
    methods: list[str] = []
    for k in range(len(energy)):
        if actual[k]:
            qualities.append(Quality.ACTUAL)
            methods.append("")
        elif not usable[k] or np.isnan(energy[k]):
            qualities.append(Quality.NULL)
            methods.append(arrays.methods[int(arrays.method[worse[k]])] if usable[k] else "")
        else:
            qualities.append(arrays.quality_of(int(worse[k])))
            methods.append(arrays.methods[int(arrays.method[worse[k]])])
    return energy, tuple(qualities), tuple(methods)
