"""Deterministic residential load and PV shapes, so a seed fixes every register value.

Power is piecewise constant per minute on a grid aligned to the Unix epoch; energy is
the sum over that grid. Whatever order or rate the registers are queried in, a meter
with the same seed reports the same energy at the same instant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MINUTE = 60


def unit_noise(seed: int, n: int) -> float:
    """A cheap, stable pseudo-random number in [-1, 1) from (seed, n) via splitmix64."""
    z = (seed * 0x9E3779B97F4A7C15 + n * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    z ^= z >> 31
    return (z / 2**63) - 1.0


def _bump(hour: float, centre: float, width: float) -> float:
    d = (hour - centre + 12) % 24 - 12
    return math.exp(-0.5 * (d / width) ** 2)


@dataclass(frozen=True, slots=True)
class LoadModel:
    """A household: base load, morning and evening peaks, noise per 15 minutes."""

    seed: int
    base_kw: float = 0.3
    peak_kw: float = 2.0
    noise: float = 0.15
    utc_offset_h: float = 8.0
    pv_peak_kw: float = 0.0

    @classmethod
    def for_meter(cls, seed: int, *, pv: bool = False, utc_offset_h: float = 8.0) -> LoadModel:
        scale = 0.6 + 0.8 * (unit_noise(seed, -1) + 1) / 2
        return cls(
            seed=seed,
            base_kw=0.25 * scale,
            peak_kw=1.8 * scale,
            utc_offset_h=utc_offset_h,
            pv_peak_kw=3.0 * scale if pv else 0.0,
        )

    def local_hour(self, epoch_s: float) -> float:
        return ((epoch_s / 3600.0) + self.utc_offset_h) % 24

    def demand_kw(self, epoch_s: float) -> float:
        hour = self.local_hour(epoch_s)
        shape = 0.45 * _bump(hour, 7.5, 1.2) + 1.0 * _bump(hour, 19.5, 1.8) + 0.15 * _bump(
            hour, 13, 2.5
        )
        slot = int(epoch_s // 900)
        jitter = 1.0 + self.noise * unit_noise(self.seed, slot)
        return max(0.02, (self.base_kw + self.peak_kw * shape) * jitter)

    def pv_kw(self, epoch_s: float) -> float:
        if not self.pv_peak_kw:
            return 0.0
        hour = self.local_hour(epoch_s)
        if not 6.0 < hour < 18.0:
            return 0.0
        clouds = 0.8 + 0.2 * unit_noise(self.seed + 7, int(epoch_s // 900))
        return self.pv_peak_kw * math.sin(math.pi * (hour - 6.0) / 12.0) * clouds

    def net_kw(self, epoch_s: float) -> float:
        """Import positive, export negative."""
        minute_start = (epoch_s // MINUTE) * MINUTE
        return self.demand_kw(minute_start) - self.pv_kw(minute_start)


@dataclass(frozen=True, slots=True)
class FeederLoad(LoadModel):
    """A distribution transformer's own meter: what its customers draw, plus the line's
    loss on the way. Exporters' PV nets off, as it does on the low-voltage side."""

    members: tuple[LoadModel, ...] = ()
    loss: float = 0.04
    """Technical loss as a share of what the customers take."""

    def demand_kw(self, epoch_s: float) -> float:
        return (1 + self.loss) * sum(m.demand_kw(epoch_s) for m in self.members)

    def pv_kw(self, epoch_s: float) -> float:
        return sum(m.pv_kw(epoch_s) for m in self.members)


# Tariff calendars by local hour, DL/T 645 order: 1 sharp, 2 peak, 3 flat, 4 valley.
FOUR_RATE = (4,) * 7 + (3,) + (2,) * 3 + (3,) * 6 + (2,) * 2 + (1,) * 2 + (2,) + (3,) + (4,)
"""A commercial meter's day table (the shipped commercial-tou tariff's calendar)."""
TWO_RATE = (4,) * 8 + (2,) * 14 + (4,) * 2
"""A residential peak/valley meter: peak 08–22 on register 2, valley on register 4 (the
shipped cn-residential tariff's calendar)."""


def tariff_at(local_hour: float, calendar: tuple[int, ...] = FOUR_RATE) -> int:
    return calendar[int(local_hour) % 24]
