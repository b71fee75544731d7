"""A district for the end-to-end benchmark: gateways, each with one transformer area of
household meters and its area meter, over a month of history and one collected day.

Everything is a pure function of (meters, seed, gateway): the publishers, the COPY
baseline and the detection tally rebuild the same rows gateway by gateway, so none of
them ever holds the whole district. Injected along the way: reads missing in 6-hour
gaps (0.5 % of the day's reads), registers that go backward or run away, theft (a
drop to a third over the last sixteen days, some with a cover-open event) and areas whose
transformer supplies a quarter more than its customers take.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cached_property
from zoneinfo import ZoneInfo

import numpy as np

from model import Event, Meter, MeterAssignment, Reading, ReadKind, ServicePoint

TZ = ZoneInfo("Asia/Shanghai")
DAY = date(2026, 11, 18)
"""The collected day; its frozen registers at the next midnight are reading day 19's."""
STEP = timedelta(minutes=15)
PER_GATEWAY = 100
HISTORY = 36
"""Days of history before the day (the flag pass looks back 35); the store holds their
daily frozen registers, HISTORY + 1 midnights up to the day's own opening one."""
SEGMENTS = {"S19": 19, "S05": 5, "S12": 12, "S26": 26}
BILLED = "S19"
"""The segment whose reading day the day's closing midnight is."""
PEAK = slice(32, 88)
"""The slots that start 08:00–21:45 local: a residential two-rate meter's peak, on
register 2; the rest is valley, on register 4 (the shipped cn-residential tariff)."""
ENERGY, VOLTS = "1-0:1.8.0", "1-0:32.7.0"
TOU = tuple(f"1-0:1.8.{r}" for r in range(1, 5))
GAP = range(30, 54)
"""The missing slots of a meter with a gap: 6 hours, a quarter of its day."""


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=TZ).astimezone(UTC)


@dataclass(frozen=True)
class District:
    meters: int = 100_000
    seed: int = 5
    curves: bool = False
    """Seed the history as 15-minute curves too (theft's rules need them); only sensible
    for a small district: 100,000 meters' 35 days would be 336 M rows."""

    @property
    def gateways(self) -> int:
        return -(-self.meters // PER_GATEWAY)

    def size(self, g: int) -> int:
        return min(PER_GATEWAY, self.meters - g * PER_GATEWAY)

    @staticmethod
    def meter_id(g: int, j: int) -> str:
        return f"g{g:04d}m{j:03d}"

    @staticmethod
    def area(g: int) -> str:
        return f"T{g:04d}"

    @cached_property
    def injected(self) -> dict[str, frozenset[str]]:
        rng = np.random.default_rng(self.seed)
        ids = [self.meter_id(g, j) for g in range(self.gateways) for j in range(self.size(g))]
        pick = rng.permutation(len(ids))
        n_gap = max(1, len(ids) // 50)  # 2 % of meters lose a quarter of the day: 0.5 %
        sets, at = {}, 0
        for name, n in (("backward", 10), ("runaway", 10), ("theft", 50), ("gap", n_gap)):
            n = min(n, max(0, len(ids) - at))
            sets[name] = frozenset(ids[i] for i in pick[at:at + n])
            at += n
        sets["tamper"] = frozenset(sorted(sets["theft"])[:10])
        hot = rng.permutation(self.gateways)[:min(5, self.gateways)]
        sets["hot_area"] = frozenset(self.area(int(g)) for g in hot)
        return sets

    def records(self, g: int) -> tuple[list[Meter], list[ServicePoint], list[MeterAssignment]]:
        names = sorted(SEGMENTS)
        meters = [Meter(self.meter_id(g, j), "dlt645", f"{self.area(g)}-485",
                        f"{g * PER_GATEWAY + j:012d}", area=self.area(g),
                        gateway=f"gw{g:04d}") for j in range(self.size(g))]
        meters.append(Meter(f"{self.area(g)}-supply", "dlt645", f"{self.area(g)}-485",
                            f"9{g:011d}", area=self.area(g), gateway=f"gw{g:04d}",
                            is_area_meter=True, phases=3))
        points = [ServicePoint(f"sp-{m.id}", f"acct-{m.id}", "cn-residential",
                               names[k % len(names)], m.area)
                  for k, m in enumerate(meters[:-1])]
        return meters, points, [MeterAssignment(p.id, p.id[3:]) for p in points]

    def _load(self, g: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per meter: daily kWh over the history and the day, the day's 96 slots, and
        each meter's register at the first midnight."""
        rng = np.random.default_rng((self.seed, g))
        n = self.size(g)
        days = HISTORY + 1
        daily = rng.uniform(3, 15, (n, 1)) * rng.lognormal(0, 0.15, (n, days))
        ids = [self.meter_id(g, j) for j in range(n)]
        theft = np.array([m in self.injected["theft"] for m in ids])
        # Two recent weeks and more: the theft rule wants a drop that holds for both.
        daily[theft, -16:] /= 3
        hour = (np.arange(96) + 0.5) / 4
        shape = 0.25 + 0.45 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2) + np.exp(
            -0.5 * ((hour - 19.5) / 1.8) ** 2)
        slots = shape[None, None, :] * rng.lognormal(0, 0.3, (n, days, 96))
        slots *= (daily / slots.sum(axis=2))[:, :, None]
        return daily, slots, rng.uniform(1000, 50000, n)

    def history(self, g: int) -> list[Reading]:
        """What the store holds before the day: daily frozen registers at each midnight
        (and the billed segment's TOU registers at its cycle's first), curves if asked."""
        daily, slots, opening = self._load(g)
        meters, points, _ = self.records(g)
        first = DAY - timedelta(days=HISTORY)
        cycle_start = midnight(date(DAY.year, DAY.month - 1, SEGMENTS[BILLED]))
        billed = {p.id[3:] for p in points if p.segment == BILLED}
        out: list[Reading] = []
        registers = opening[:, None] + np.concatenate(
            [np.zeros((len(opening), 1)), np.cumsum(daily[:, :-1], axis=1)], axis=1)
        for j, m in enumerate(meters[:-1]):
            for d in range(HISTORY + 1):
                ts = midnight(first + timedelta(days=d))
                total = float(registers[j, d])
                out.append(Reading(m.id, ENERGY, ts, round(total, 2), "kWh",
                                   kind=ReadKind.FROZEN_DAILY))
                if ts == cycle_start and m.id in billed:
                    out += _tou(m.id, ts, opening[j], slots[j, :d])
            if self.curves:
                reg = registers[j, 0] + np.cumsum(slots[j, :-1].reshape(-1))
                start = midnight(first)
                out += [Reading(m.id, ENERGY, start + (k + 1) * STEP, round(float(v), 3),
                                "kWh") for k, v in enumerate(reg)]
        out += self._supply(g, daily, range(HISTORY + 1), first)
        return out

    def _supply(self, g: int, daily: np.ndarray, days: range, first: date) -> list[Reading]:
        """The area meter's frozen register: the customers' energy plus the line loss."""
        loss = 1.25 if self.area(g) in self.injected["hot_area"] else 1.04
        supply = 10_000 + np.concatenate([[0.0], np.cumsum(daily.sum(axis=0) * loss)])
        return [Reading(f"{self.area(g)}-supply", ENERGY, midnight(first + timedelta(days=d)),
                        round(float(supply[d]), 2), "kWh", kind=ReadKind.FROZEN_DAILY)
                for d in days]

    def day_rows(self) -> int:
        """How many readings the day publishes: day() without building them."""
        per_meter = 96 + 1 + len(TOU) + 24
        return (self.meters * per_meter - len(GAP) * len(self.injected["gap"])
                + self.gateways)

    def day(self, g: int) -> tuple[list[Reading], list[Event]]:
        """What the gateway publishes for the day: 96 register reads per meter (less its
        gap), the closing midnight's frozen registers, hourly voltage, and events."""
        daily, slots, opening = self._load(g)
        meters, _, _ = self.records(g)
        start = midnight(DAY)
        close = midnight(DAY + timedelta(days=1))
        inj = self.injected
        out: list[Reading] = []
        events: list[Event] = []
        rng = np.random.default_rng((self.seed, g, 1))
        for j, m in enumerate(meters[:-1]):
            reg = opening[j] + daily[j, :-1].sum() + np.cumsum(slots[j, -1])
            if m.id in inj["backward"]:
                reg[40:] -= 5.0
            if m.id in inj["runaway"]:
                reg[50:] += 400.0
            gap = GAP if m.id in inj["gap"] else range(0)
            out += [Reading(m.id, ENERGY, start + (k + 1) * STEP, round(float(reg[k]), 3),
                            "kWh") for k in range(96) if k not in gap]
            total = round(float(reg[-1]), 3)
            out.append(Reading(m.id, ENERGY, close, total, "kWh", kind=ReadKind.FROZEN_DAILY))
            out += _tou(m.id, close, opening[j], slots[j])
            volts = 220 + rng.normal(0, 3, 24)
            out += [Reading(m.id, VOLTS, start + timedelta(hours=h + 1), round(float(v), 1),
                            "V", kind=ReadKind.INSTANT) for h, v in enumerate(volts)]
            if m.id in inj["tamper"]:
                events.append(Event(m.id, start + timedelta(hours=3), "cover_open"))
            if j % 25 == 0:  # a short outage on a few meters: events, not faults
                events += [Event(m.id, start + timedelta(hours=11), "power_off"),
                           Event(m.id, start + timedelta(hours=11, minutes=20), "power_on")]
        out += self._supply(g, daily, range(HISTORY + 1, HISTORY + 2),
                            DAY - timedelta(days=HISTORY))
        return out, events


def _tou(meter: str, ts: datetime, opening: float, slots: np.ndarray) -> list[Reading]:
    """TOU registers that hold what the slots used in each period, as a meter's tariff
    registers do: they sum to the total, and to the curve summed over the calendar."""
    peak = float(slots[:, PEAK].sum())
    used = (0.0, peak, 0.0, float(slots.sum()) - peak)
    return [Reading(meter, q, ts, round(float(opening / 4 + u), 2), "kWh",
                    kind=ReadKind.FROZEN_DAILY) for q, u in zip(TOU, used, strict=True)]
