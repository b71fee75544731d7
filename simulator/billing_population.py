"""Service points for billing over one cycle, with a known true consumption per TOU period.

Each service point gets a reading segment (and so its reading day), a tariff, a meter
with that tariff's calendar, and register reads at its cycle's boundaries (the frozen
daily values billing uses); a share also get 15-minute interval reads (the commercial
meters with demand charges, as 96-point curves are collected for a subset in
practice). Some get a tariff change mid-cycle, some miss their end read, some are
prepaid with a top-up. Chunks are generated one at a time so 100,000 service points
fit in bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np

from model import Meter, MeterAssignment, Reading, ReadKind, ServicePoint, TariffChange
from simulator.load import FOUR_RATE, TWO_RATE

PERIOD_NAMES = ("sharp", "peak", "flat", "valley")
STEP = timedelta(minutes=15)


@dataclass
class BillingSpec:
    points: int = 100_000
    seed: int = 3
    tz: ZoneInfo = field(default_factory=lambda: ZoneInfo("Asia/Shanghai"))
    cycle_month: tuple[int, int] = (2026, 11)
    segments: dict[str, int] = field(default_factory=lambda: {"S01": 1, "S15": 15})
    commercial_share: float = 0.02
    """Commercial service points: four-rate meters with 15-minute intervals and demand."""
    tariff_change_share: float = 0.002
    missing_end_share: float = 0.003
    prepaid_share: float = 0.02


@dataclass
class Truth:
    kwh: float
    by_period: dict[str, float]
    actual: bool
    """All reads the bill needs were written (no missing end read)."""


@dataclass
class BillingChunk:
    meters: list[Meter]
    points: list[ServicePoint]
    assignments: list[MeterAssignment]
    readings: list[Reading]
    changes: list[TariffChange]
    prepaid: list[tuple[str, str, float]]
    truth: dict[str, Truth]


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(UTC)


def _shape() -> np.ndarray:
    hour = (np.arange(96) + 0.5) / 4
    bump = (0.45 * np.exp(-0.5 * ((hour - 7.5) / 1.2) ** 2)
            + np.exp(-0.5 * ((hour - 19.5) / 1.8) ** 2) + 0.25)
    out: np.ndarray = bump / bump.sum()
    return out


def chunks(spec: BillingSpec, size: int = 5000) -> Iterator[BillingChunk]:
    rng = np.random.default_rng(spec.seed)
    shape = _shape()
    year, month = spec.cycle_month
    names = sorted(spec.segments)
    for lo in range(0, spec.points, size):
        n = min(size, spec.points - lo)
        seg = rng.integers(0, len(names), n)
        commercial = rng.random(n) < spec.commercial_share
        change = rng.random(n) < spec.tariff_change_share
        missing = rng.random(n) < spec.missing_end_share
        prepaid = rng.random(n) < spec.prepaid_share
        daily = np.where(commercial, rng.uniform(80, 400, n), rng.uniform(3, 15, n))
        opening = rng.uniform(1000, 50000, n)
        out = BillingChunk([], [], [], [], [], [], {})
        for i in range(n):
            k = lo + i
            sp, meter = f"sp{k:06d}", f"m{k:06d}"
            day = spec.segments[names[seg[i]]]
            end = date(year, month, day)
            first = date(year - (month == 1), 12 if month == 1 else month - 1, day)
            days = (end - first).days
            calendar = FOUR_RATE if commercial[i] or change[i] else TWO_RATE
            tariff = "commercial-tou" if commercial[i] or change[i] else "cn-residential"
            out.meters.append(Meter(meter, "dlt645", "bus1", f"{k:012d}", phases=3
                                    if commercial[i] else 1))
            out.points.append(ServicePoint(sp, f"acct{k:06d}", tariff, names[seg[i]]))
            out.assignments.append(MeterAssignment(sp, meter))
            noise = rng.normal(1.0, 0.15, (days, 96)).clip(0.2)
            slots = (daily[i] * rng.normal(1.0, 0.1, (days, 1)).clip(0.5)
                     * shape[None, :] * noise).round(4).reshape(-1)
            start = _midnight(first, spec.tz)
            # Local hour of each slot's start: the calendar is by local time.
            hours = ((np.arange(days * 96) // 4) % 24)
            period = np.asarray(calendar)[hours]
            cut = None
            if change[i]:
                cut = first + timedelta(days=int(rng.integers(5, days - 5)))
                out.changes.append(TariffChange(sp, "cn-residential", cut))
            boundaries = [first, end] + ([cut] if cut else [])
            for b in sorted(boundaries):
                if b == end and missing[i]:
                    continue
                upto = (b - first).days * 96
                done = slots[:upto]
                ts = _midnight(b, spec.tz)
                total = opening[i] + float(done.sum())
                out.readings.append(Reading(meter, "1-0:1.8.0", ts, round(total, 2), "kWh",
                                            kind=ReadKind.FROZEN_DAILY))
                for r in range(1, 5):
                    part = opening[i] / 4 + float(done[period[:upto] == r].sum())
                    out.readings.append(Reading(meter, f"1-0:1.8.{r}", ts, round(part, 2),
                                                "kWh", kind=ReadKind.FROZEN_DAILY))
            if commercial[i]:
                reg = opening[i] + np.concatenate([[0.0], np.cumsum(slots)])
                out.readings += [Reading(meter, "1-0:1.8.0", start + j * STEP,
                                         round(float(reg[j]), 4), "kWh")
                                 for j in range(days * 96 + 1)]
            by_period = {PERIOD_NAMES[r - 1]: float(slots[period == r].sum())
                         for r in range(1, 5)}
            out.truth[sp] = Truth(float(slots.sum()), by_period, not missing[i])
            if prepaid[i]:
                out.prepaid.append((f"P{k:06d}", sp, float(round(daily[i] * 10, 2))))
        yield out
