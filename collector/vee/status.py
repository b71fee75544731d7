"""Readiness for billing: per service point and day, validated or held and why.

Billing bills service points, VEE judges meters; a service point's day is held when
any meter on it that day is held, so a swap day is judged on both meters.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from zoneinfo import ZoneInfo

from collector.acquisition.clock import local_midnight
from collector.vee import codes
from collector.vee.engine import VeeStore
from model import Meter, MeterAssignment, Verdict


@dataclass
class Readiness:
    first: date
    last: date
    points: int = 0
    """Service point-days judged."""
    validated: int = 0
    estimated: int = 0
    held: int = 0
    held_by: Counter[str] = field(default_factory=Counter)
    worst: list[tuple[str, int, list[str]]] = field(default_factory=list)
    """(service point, held days, failing rules), most held first."""


def failing(verdicts: Sequence[Verdict]) -> list[str]:
    """The rules that hold a meter-day: a gap every estimate filled does not."""
    out = []
    for v in verdicts:
        if v.passed:
            continue
        if v.rule == codes.GAP and not v.evidence.get("null", 0):
            continue
        out.append(v.rule)
    return out


def point_of(meter_id: str, day: date, tz: ZoneInfo,
             assignments: Sequence[MeterAssignment]) -> str:
    start = local_midnight(day, tz)
    for a in assignments:
        if a.meter_id == meter_id and (a.end is None or a.end > start):
            return a.service_point_id
    return meter_id


async def readiness(store: VeeStore, first: date, last: date, tz: ZoneInfo,
                    meters: Sequence[Meter], area: str | None = None,
                    worst: int = 10) -> Readiness:
    assignments = await store.assignments()
    areas = {m.id: m.area for m in meters}
    point_area = {p.id: p.area for p in await store.service_points()}
    per_meter_day: dict[tuple[str, date], list[Verdict]] = defaultdict(list)
    for v in await store.verdicts(first, last):
        per_meter_day[(v.meter_id, v.day)].append(v)
    points: dict[tuple[str, date], tuple[list[str], bool]] = {}
    for (meter_id, day), vs in per_meter_day.items():
        point = point_of(meter_id, day, tz, assignments)
        if area and (point_area.get(point) or areas.get(meter_id, "")) != area:
            continue
        rules, estimated = points.get((point, day), ([], False))
        gap = next((v for v in vs if v.rule == codes.GAP and not v.passed), None)
        points[(point, day)] = (rules + failing(vs),
                                estimated or bool(gap and gap.evidence.get("estimated")))
    out = Readiness(first, last, points=len(points))
    held_days: Counter[str] = Counter()
    why: dict[str, set[str]] = defaultdict(set)
    for (point, _day), (rules, estimated) in points.items():
        out.estimated += estimated
        if rules:
            out.held += 1
            held_days[point] += 1
            why[point].update(rules)
            out.held_by.update(set(rules))
        else:
            out.validated += 1
    out.worst = [(p, n, sorted(why[p])) for p, n in held_days.most_common(worst)]
    return out
