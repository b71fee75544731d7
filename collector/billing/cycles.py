"""Billing cycles: from one reading day (抄表例日) to the next, and where a cycle splits.

A cycle is named by the month its reading day falls in ('2026-11': a segment read on
the 25th bills 25 October → 25 November), or by one local day ('2026-11-23': an
interim day bill, as the demo and daily settlement use). It runs from local midnight
to local midnight, so a DST day simply has its 23 or 25 hours. A tariff change, a tier
year or a season starting inside a cycle splits it there, so each part is priced by
the rules in force.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from collector.billing.tariff import Tariff
from model import TariffChange

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class CycleError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Cycle:
    name: str
    monthly: bool

    @classmethod
    def parse(cls, text: str) -> Cycle:
        if _MONTH.match(text):
            return cls(text, True)
        if _DAY.match(text):
            try:
                date.fromisoformat(text)
            except ValueError:
                raise CycleError(f"{text!r} is not a date") from None
            return cls(text, False)
        raise CycleError(f"{text!r} is not a cycle: give the month of the reading day "
                         "(2026-11) or one local day (2026-11-23)")

    def span(self, reading_day: int) -> tuple[date, date]:
        """[first local day, end) of the cycle for a segment read on `reading_day`."""
        if not self.monthly:
            day = date.fromisoformat(self.name)
            return day, day + timedelta(days=1)
        year, month = int(self.name[:4]), int(self.name[5:])
        end = date(year, month, reading_day)
        prev = date(year - (month == 1), 12 if month == 1 else month - 1, reading_day)
        return prev, end

    def shifted(self, n: int) -> Cycle:
        """The cycle n cycles earlier (n > 0) or later."""
        if not self.monthly:
            return Cycle((date.fromisoformat(self.name) - timedelta(days=n)).isoformat(), False)
        index = int(self.name[:4]) * 12 + int(self.name[5:]) - 1 - n
        return Cycle(f"{index // 12:04d}-{index % 12 + 1:02d}", True)

    def last_year(self) -> Cycle:
        if self.monthly:
            return self.shifted(12)
        day = date.fromisoformat(self.name)
        try:
            return Cycle(day.replace(year=day.year - 1).isoformat(), False)
        except ValueError:  # 29 February
            return Cycle(day.replace(year=day.year - 1, day=28).isoformat(), False)


@dataclass(frozen=True, slots=True)
class Part:
    """A stretch of a cycle billed under one tariff, one tier year and one season."""

    first: date
    end: date
    tariff: str
    why: str
    """Why the part starts where it does: 'cycle start', 'tariff change', 'tier year', …"""


def tariff_on(day: date, initial: str, changes: Sequence[TariffChange]) -> str:
    current = initial
    for c in sorted(changes, key=lambda c: c.effective):
        if c.effective <= day:
            current = c.tariff
    return current


def split(first: date, end: date, initial: str, changes: Sequence[TariffChange],
          tariff_of: dict[str, Tariff]) -> list[Part]:
    """Cut [first, end) wherever the tariff, its tier year or its season changes."""
    cuts: dict[date, str] = {first: "cycle start"}
    for c in changes:
        if first < c.effective < end:
            cuts[c.effective] = f"tariff change to {c.tariff}"
    day = first + timedelta(days=1)
    while day < end:
        name = tariff_on(day, initial, changes)
        before = tariff_on(day - timedelta(days=1), initial, changes)
        t = tariff_of.get(name)
        if t is not None and name == before and day not in cuts:
            if t.tier_basis == "annual" and t.tier_year_of(day) == day:
                cuts[day] = "tier year starts"
            elif t.season_of(day) is not t.season_of(day - timedelta(days=1)):
                cuts[day] = f"season {t.season_of(day).name} starts"
        day += timedelta(days=1)
    starts = sorted(cuts)
    return [Part(s, e, tariff_on(s, initial, changes), cuts[s])
            for s, e in zip(starts, [*starts[1:], end], strict=True)]
