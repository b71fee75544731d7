"""Current values of one quantity for many meters as columns.

A billing cycle or a VEE pass reads millions of interval values and needs of each only
its time, value, quality, method and whether VEE made it. An object per value costs
more than the database's read (about 8 µs against 1 µs), so both stores also answer in
columns: one array per field, each meter's rows contiguous and in time order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from model import Quality, ValueVersion
from storage.base import QUALITY_CODES, QUALITY_OF_CODE

ACTUAL_CODE = QUALITY_CODES[Quality.ACTUAL]

Row = tuple[str, float, float | None, int, str, bool, int, str]
"""(meter_id, epoch seconds, value or None, quality code, method, automatic, version,
unit)."""


@dataclass(frozen=True)
class CurrentArrays:
    meter_ids: tuple[str, ...]
    bounds: NDArray[np.int64]
    """Meter i's rows are bounds[i]:bounds[i + 1]."""
    ts: NDArray[np.float64]
    """Epoch seconds (UTC) of each value's interval end."""
    value: NDArray[np.float64]
    """NaN for a null (N) version."""
    quality: NDArray[np.int8]
    """The stored quality code (storage.base.QUALITY_CODES)."""
    method: NDArray[np.int32]
    """Index into `methods`."""
    methods: tuple[str, ...]
    automatic: NDArray[np.bool_]
    """VEE wrote this version itself (it may be re-estimated)."""
    version: NDArray[np.int32]
    """0 for the raw read."""
    units: tuple[str, ...] = ()
    """Each meter's unit of this quantity, by meter_ids' order."""

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def rows(self, meter_id: str) -> slice:
        i = self._index().get(meter_id)
        if i is None:
            return slice(0, 0)
        return slice(int(self.bounds[i]), int(self.bounds[i + 1]))

    def unit(self, meter_id: str) -> str:
        i = self._index().get(meter_id)
        return self.units[i] if i is not None and i < len(self.units) else ""

    def quality_of(self, k: int) -> Quality:
        return QUALITY_OF_CODE[int(self.quality[k])]

    def _index(self) -> dict[str, int]:
        found: dict[str, int] | None = self.__dict__.get("_by_meter")
        if found is None:
            found = {m: i for i, m in enumerate(self.meter_ids)}
            object.__setattr__(self, "_by_meter", found)
        return found


def from_rows(rows: Sequence[Row]) -> CurrentArrays:
    """Rows ordered by meter, then time."""
    if not rows:
        return empty()
    meters, ts, values, quality, method, automatic, version, units = zip(*rows, strict=True)
    names = tuple(dict.fromkeys(method))
    index = {n: i for i, n in enumerate(names)}
    meter_arr = np.array(meters, dtype=object)
    starts = np.flatnonzero(np.r_[True, meter_arr[1:] != meter_arr[:-1]])
    unit_arr = np.array(units, dtype=object)
    return CurrentArrays(
        meter_ids=tuple(meter_arr[starts].tolist()),
        bounds=np.r_[starts, len(rows)].astype(np.int64),
        ts=np.array(ts, dtype=np.float64),
        value=np.array([np.nan if v is None else v for v in values], dtype=np.float64),
        quality=np.array(quality, dtype=np.int8),
        method=np.array([index[m] for m in method], dtype=np.int32),
        methods=names,
        automatic=np.array(automatic, dtype=bool),
        version=np.array(version, dtype=np.int32),
        units=tuple(unit_arr[starts].tolist()),
    )


def from_columns(meter_of: Mapping[int, str], columns: NDArray[np.float64],
                 methods: Sequence[str], unit_of: Mapping[int, str] | None = None
                 ) -> CurrentArrays:
    """Raw reads and later versions as one float matrix, a row each: series id, epoch
    seconds, value, quality code, method id (an index into `methods`), version,
    automatic (0/1). Raw rows come ordered by series and time; each (series, time)
    keeps its top version, and the series are put in meter order."""
    if not len(columns):
        return empty()
    sid, ts, version = columns[:, 0], columns[:, 1], columns[:, 5]
    if version.any():
        order = np.lexsort((-version, ts, sid))
        columns = columns[order]
        sid, ts = columns[:, 0], columns[:, 1]
        first = np.r_[True, (sid[1:] != sid[:-1]) | (ts[1:] != ts[:-1])]
        columns = columns[first]
        sid = columns[:, 0]
    starts = np.flatnonzero(np.r_[True, sid[1:] != sid[:-1]])
    ends = np.r_[starts[1:], len(sid)]
    names = [meter_of[int(i)] for i in sid[starts]]
    units = [(unit_of or {}).get(int(i), "") for i in sid[starts]]
    by_meter = sorted(range(len(names)), key=names.__getitem__)
    rank = np.empty(len(names), dtype=np.int64)
    rank[by_meter] = np.arange(len(names))
    if by_meter != sorted(by_meter):  # series ids made in meter order need no reorder
        columns = columns[np.argsort(np.repeat(rank, ends - starts), kind="stable")]
    sizes = (ends - starts)[by_meter]
    quality = columns[:, 3].astype(np.int8)
    value = np.where(quality == QUALITY_CODES[Quality.NULL], np.nan, columns[:, 2])
    return CurrentArrays(
        meter_ids=tuple(names[j] for j in by_meter),
        bounds=np.r_[0, np.cumsum(sizes)].astype(np.int64),
        ts=np.ascontiguousarray(columns[:, 1]),
        value=value,
        quality=quality,
        method=columns[:, 4].astype(np.int32),
        methods=tuple(methods),
        automatic=columns[:, 6].astype(bool),
        version=columns[:, 5].astype(np.int32),
        units=tuple(units[j] for j in by_meter),
    )


def from_versions(versions: Iterable[ValueVersion]) -> CurrentArrays:
    """The same columns from ValueVersion objects (tests, and small callers)."""
    ordered = sorted(versions, key=lambda v: (v.meter_id, v.ts))
    return from_rows([(v.meter_id, v.ts.timestamp(), v.value, QUALITY_CODES[v.quality],
                       v.method, v.automatic, v.version, v.unit) for v in ordered])


def empty() -> CurrentArrays:
    return CurrentArrays((), np.zeros(1, dtype=np.int64), np.zeros(0), np.zeros(0),
                         np.zeros(0, dtype=np.int8), np.zeros(0, dtype=np.int32), (),
                         np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int32))
