"""A service point's consumption over a span, from whichever meters were on it.

Across a replacement it is (old final − old at start) × m_old + (new at end − new start)
× m_new: the swap reads recorded by the technician bound each meter's part, so nothing
measured by either meter is lost or counted twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from collector.vee.engine import ENERGY, VeeStore
from model import Quality


@dataclass(frozen=True, slots=True)
class Part:
    meter_id: str
    start: datetime
    end: datetime
    start_read: float | None
    end_read: float | None
    multiplier: float
    kwh: float | None
    quality: Quality


@dataclass(frozen=True, slots=True)
class Consumption:
    service_point_id: str
    kwh: float | None
    """None when a part has no register read at one of its ends."""
    quality: Quality
    parts: list[Part]


def register_delta(before: float, after: float, register_max: float = 999999.99,
                   resolution: float = 0.01) -> float:
    """after − before, where a register near its top that restarts low rolled over."""
    delta = after - before
    if delta < 0 and before > register_max / 2:
        delta += register_max + resolution
    return delta


async def consumption(store: VeeStore, service_point_id: str, start: datetime, end: datetime,
                      register_max: float = 999999.99, resolution: float = 0.01) -> Consumption:
    parts = []
    assignments = await store.assignments(service_point_id)
    if not assignments:
        assignments = await store.assignments(meter_id=service_point_id)
    for a in assignments:
        lo = max(start, a.start) if a.start else start
        hi = min(end, a.end) if a.end else end
        if hi <= lo:
            continue
        ends: list[tuple[float | None, Quality]] = []
        for at, recorded in ((lo, a.start_read if a.start == lo else None),
                             (hi, a.final_read if a.end == hi else None)):
            if recorded is not None:
                ends.append((recorded, Quality.ACTUAL))
                continue
            got = await store.current_values(ENERGY, at, at, [a.meter_id])
            ends.append((got[0].value, got[0].quality) if got else (None, Quality.NULL))
        (r0, q0), (r1, q1) = ends
        kwh = None
        if r0 is not None and r1 is not None:
            kwh = register_delta(r0, r1, register_max, resolution) * a.multiplier
        quality = min(q0, q1, key=lambda q: q.rank)
        parts.append(Part(a.meter_id, lo, hi, r0, r1, a.multiplier, kwh, quality))
    total = None if any(p.kwh is None for p in parts) else sum(p.kwh or 0.0 for p in parts)
    worst = min((p.quality for p in parts), key=lambda q: q.rank, default=Quality.NULL)
    return Consumption(service_point_id, total, worst, parts)
