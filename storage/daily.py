"""Daily consumption from boundary register reads, shared by the backends that compute it."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from storage.base import DailyConsumption


def daily_from_rows(
    rows: Iterable[tuple[str, str, bool, float, float]],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    by: str,
) -> list[DailyConsumption]:
    """Consumption per local day from register reads stamped exactly at local midnights.

    Rows are (meter, area, is the area's own meter, epoch seconds, register); a later
    row for the same instant replaces an earlier one. A day counts only when both its
    boundary reads exist, so a gap is a missing day rather than a wrong number. The
    boundaries are matched over arrays: the line-loss balance asks for a month of
    every meter in the district, and a dictionary per meter and a lookup per meter-day
    were a quarter of the flag pass.
    """
    rows = list(rows)
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    days = [first + timedelta(days=i) for i in range((last - first).days)]
    if not rows or not days:
        return []
    edges = np.array([datetime(d.year, d.month, d.day, tzinfo=zone).timestamp()
                      for d in [*days, days[-1] + timedelta(days=1)]])
    meters, areas, area_meters, ats, values = zip(*rows, strict=True)
    row_of: dict[str, int] = {}
    index = np.fromiter((row_of.setdefault(m, len(row_of)) for m in meters), np.int64,
                        len(rows))
    info = dict(zip(meters, zip(areas, area_meters, strict=True), strict=True))  # last wins
    at = np.asarray(ats, dtype=np.float64)
    pos = np.minimum(np.searchsorted(edges, at), len(days))
    on = edges[pos] == at
    width = len(edges)
    keys = index[on] * width + pos[on]
    picked = np.asarray(values, dtype=np.float64)[on]
    latest = len(keys) - 1 - np.unique(keys[::-1], return_index=True)[1]
    register = np.full((len(row_of), width), np.nan)
    have = np.zeros((len(row_of), width), dtype=bool)
    register.flat[keys[latest]] = picked[latest]
    have.flat[keys[latest]] = True
    kwh = register[:, 1:] - register[:, :-1]
    both = have[:, 1:] & have[:, :-1]
    names = [d.isoformat() for d in days]
    out: list[DailyConsumption] = []
    if by == "area":
        members: dict[str, list[int]] = {}
        for meter, i in row_of.items():
            area, area_meter = info[meter]
            if area and not area_meter:
                members.setdefault(area, []).append(i)
        for area in sorted(members):
            rows_of = members[area]
            total = np.where(both[rows_of], kwh[rows_of], 0.0).sum(axis=0)
            counted = both[rows_of].any(axis=0)
            sums = total.tolist()
            out += [DailyConsumption(area, names[d], round(sums[d], 6))
                    for d in np.flatnonzero(counted).tolist()]
        return out
    out = []
    for meter in sorted(row_of):
        i = row_of[meter]
        values_of = kwh[i].tolist()  # Python floats: no numpy scalar per meter-day
        out += [DailyConsumption(meter, names[d], round(values_of[d], 6))
                for d in np.flatnonzero(both[i]).tolist()]
    return out
