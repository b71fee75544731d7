"""Daily consumption from boundary register reads, shared by the backends that compute it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from storage.base import DailyConsumption


def daily_from_rows(
    rows: Iterable[tuple[str, str, bool, float, float]],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    by: str,
) -> list[DailyConsumption]:
    """daily_from_boundaries over (meter, area, is area meter, epoch seconds, register)
    rows, a later row for the same instant replacing an earlier one."""
    per_meter: dict[str, dict[float, float]] = defaultdict(dict)
    info: dict[str, tuple[str, bool]] = {}
    for meter_id, area, area_meter, at, value in rows:
        per_meter[meter_id][at] = value
        info[meter_id] = (area, bool(area_meter))
    return daily_from_boundaries(per_meter, info, start, end, zone, by)


def daily_from_boundaries(
    per_meter: dict[str, dict[float, float]],
    info: dict[str, tuple[str, bool]],
    start: datetime,
    end: datetime,
    zone: ZoneInfo,
    by: str,
) -> list[DailyConsumption]:
    """Consumption per local day from register reads stamped exactly at local midnights.

    `per_meter` maps meter → {epoch seconds: register}; `info` maps meter → (area, is the
    area's own meter). A day counts only when both its boundary reads exist, so a gap is
    a missing day rather than a wrong number.
    """
    out: dict[tuple[str, str], float] = defaultdict(float)
    day = start.astimezone(zone).date()
    last = end.astimezone(zone).date()
    while day < last:
        lo = datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
        nxt = day + timedelta(days=1)
        hi = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone).timestamp()
        for meter_id, values in per_meter.items():
            if lo in values and hi in values:
                area, area_meter = info[meter_id]
                if by == "area":
                    if not area or area_meter:
                        continue
                    key = (area, day.isoformat())
                else:
                    key = (meter_id, day.isoformat())
                out[key] += values[hi] - values[lo]
        day = nxt
    return [DailyConsumption(s, d, round(k, 6)) for (s, d), k in sorted(out.items())]
