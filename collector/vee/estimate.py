"""Estimates for missing register reads that neither invent nor lose energy.

Reads are registers, so a gap between two actual reads (or a frozen midnight value, or a
swap read) already knows its total energy: the difference of the two. Short gaps get a
straight line between them (California: up to 2 h); longer ones get the shape of the
meter's own like days, scaled so that the intervals sum exactly to that difference.
Only a gap no later read bounds yet (the meter is still silent) is a forward estimate
from like days alone, and with no history at all the value is null, never zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.config.vee import VeeSettings
from collector.vee import codes
from collector.vee.grid import F64, Grid
from model import Quality


@dataclass(frozen=True, slots=True)
class Estimate:
    slot: int
    value: float | None
    quality: Quality
    method: str
    note: str


class LikeDays:
    """Each meter's actual interval energy by local day and time of day, and which days
    are alike (weekdays with weekdays; weekends with weekends and holidays)."""

    def __init__(self, grid: Grid, tz: ZoneInfo, holidays: tuple[date, ...]) -> None:
        self.grid = grid
        per_day = round(timedelta(days=1) / grid.step)
        self.per_day = per_day
        self.position = np.full(grid.slots, -1, dtype=np.int64)
        for d in range(len(grid.days)):
            for k in range(int(grid.edges[d]) + 1, int(grid.edges[d + 1]) + 1):
                local = grid.ts(k).astimezone(tz)
                minute = local.hour * 60 + local.minute or 24 * 60
                self.position[k] = min(per_day, round(minute / (grid.step / timedelta(minutes=1))
                                                      )) - 1
        holiday = set(holidays)
        self.weekend = np.array([d.weekday() >= 5 or d in holiday for d in grid.days])
        self.day_of = np.searchsorted(grid.edges, np.arange(grid.slots), side="left") - 1

    def table(self, i: int) -> F64:
        """Days × time-of-day actual energy of meter i (NaN where not both ends actual)."""
        g = self.grid
        out = np.full((len(g.days), self.per_day), np.nan)
        e = np.full(g.slots, np.nan)
        e[1:] = np.diff(g.value[i])
        ok = np.zeros(g.slots, dtype=bool)
        ok[1:] = g.fixed[i, 1:] & g.fixed[i, :-1]
        ks = np.flatnonzero(ok & (self.day_of >= 0))
        out[self.day_of[ks], self.position[ks]] = e[ks]
        return out

    def profile(self, table: F64, day: int, count: int) -> F64:
        """Mean of the `count` most recent like days before `day`, per time of day."""
        like = [d for d in range(day - 1, -1, -1) if self.weekend[d] == self.weekend[day]]
        rows = table[like] if like else np.empty((0, self.per_day))
        out = np.full(self.per_day, np.nan)
        for p in range(self.per_day):
            seen = rows[:, p][~np.isnan(rows[:, p])][:count]
            if len(seen):
                out[p] = float(seen.mean())
        return out

    def shape_of(self, i: int, count: int) -> Callable[[range], F64]:
        """Meter i's like-day energy for given slots, each day's profile computed once."""
        table = self.table(i)
        profiles: dict[int, F64] = {}

        def shape(ks: range) -> F64:
            out = np.empty(len(ks))
            for n, k in enumerate(ks):
                d = int(self.day_of[k])
                if d not in profiles:
                    profiles[d] = self.profile(table, d, count)
                out[n] = profiles[d][self.position[k]]
            return out

        return shape


def scaled_to(w: F64, delta: float) -> F64 | None:
    """The like-day shape `w` scaled to sum exactly to `delta`; None without history."""
    if np.isnan(w).all() or np.nansum(w) <= 0:
        return None
    w = np.where(np.isnan(w), np.nanmean(w), w)
    return np.asarray(w * (delta / float(w.sum())), dtype=np.float64)


def estimate_meter(grid: Grid, i: int, like: LikeDays, s: VeeSettings,
                   complete_until: int) -> list[Estimate]:
    """Estimates for meter i's due slots in the judged days that hold no fixed value.

    `complete_until` is the last slot of the last complete day: a gap after it may still
    be filled by reads in flight, so it gets no forward estimate yet."""
    fixed, value = grid.fixed[i], grid.value[i]
    first = int(grid.edges[grid.judged_from]) + 1
    targets = grid.expected[i] & ~fixed
    targets[:first] = False
    if not targets.any():
        return []
    shape = like.shape_of(i, s.like_days)
    step_min = grid.step / timedelta(minutes=1)
    out: list[Estimate] = []
    for a, b in _runs(~fixed):
        wanted = [k for k in range(a, b + 1) if targets[k]]
        if not wanted:
            continue
        left = a - 1 if a > 0 else None
        right = b + 1 if b + 1 < grid.slots else None
        if left is not None and right is not None:
            out += _bracketed(value, left, right, wanted, shape, (b - a + 1) * step_min, s)
        elif left is not None:
            w = shape(range(a, b + 1))
            for k in wanted:
                if k > complete_until:
                    continue
                part = w[: k - a + 1]
                if np.isnan(part).any():
                    out.append(Estimate(k, None, Quality.NULL, "",
                                        "no later read and no like-day history"))
                else:
                    out.append(Estimate(k, float(value[left] + part.sum()), Quality.ESTIMATED,
                                        codes.LIKE_DAY, "forward estimate: no later read yet"))
        else:
            out += [Estimate(k, None, Quality.NULL, "", "no read to estimate from")
                    for k in wanted if k <= complete_until]
    return out


def _bracketed(value: F64, left: int, right: int, wanted: list[int],
               shape: Callable[[range], F64], minutes: float,
               s: VeeSettings) -> list[Estimate]:
    delta = float(value[right] - value[left])
    wrap = s.register_max + s.register_resolution
    if delta < 0 and value[left] > wrap / 2 and value[right] < wrap / 2:
        delta += wrap  # the register rolled over inside the gap
    if delta < 0:
        return [Estimate(k, None, Quality.NULL, "", "register went backward across the gap")
                for k in wanted]
    n = right - left
    method, note = codes.LINEAR, f"linear between reads {n} intervals apart"
    energy = np.full(n, delta / n)
    if minutes > s.linear_max_minutes:
        scaled = scaled_to(shape(range(left + 1, right + 1)), delta)
        if scaled is None:
            note = "no like-day history: linear between the bracketing reads"
        else:
            energy = scaled
            method, note = codes.SCALED, "like-day shape scaled to the register delta"
    regs = value[left] + np.cumsum(energy)
    return [Estimate(k, float(regs[k - left - 1] % wrap), Quality.SUBSTITUTED, method, note)
            for k in wanted]


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(first, last) index of each run of True."""
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    change = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(change[::2], change[1::2], strict=True)]
