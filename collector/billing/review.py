"""Bill review (核): what holds a bill for a person before it goes out.

A bill is compared with the service point's own history (the same cycle last year and
the trailing cycles, per day so that cycles of 28 and 31 days compare), and held for a
zero, a doubling or a halving, a first bill after a replacement or a tariff change, or
a bill built mostly from estimates. Each hold carries its evidence in words.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from collector.config.billing import BillingSettings
from model import Bill, Hold, MeterAssignment, TariffChange


def per_day(bill: Bill) -> float | None:
    days = (bill.end - bill.start).total_seconds() / 86400
    return bill.kwh / days if bill.kwh is not None and days > 0 else None


def review(kwh: float | None, days: float, last_year: Bill | None, trailing: Sequence[Bill],
           settings: BillingSettings) -> list[Hold]:
    if kwh is None:
        return []
    if abs(kwh) < 1e-9:
        return [Hold("zero", "zero consumption over the cycle")]
    mine = kwh / days
    holds = []
    refs: list[tuple[str, float]] = []
    if last_year is not None and (ref := per_day(last_year)):
        refs.append((f"the same cycle last year ({last_year.cycle}: {last_year.kwh:.1f} kWh)",
                     ref))
    usable = [x for b in trailing if (x := per_day(b))]
    if len(usable) >= 3:
        refs.append((f"the trailing {len(usable)} cycles' average", sum(usable) / len(usable)))
    for what, ref in refs:
        if ref <= 0:
            continue
        ratio = mine / ref
        if ratio > settings.review_high or ratio < settings.review_low:
            code = "high" if ratio > 1 else "low"
            holds.append(Hold(code, f"{mine:.2f} kWh/day is {ratio:.2f}× {what}, "
                                    f"{ref:.2f} kWh/day (review holds beyond "
                                    f"{settings.review_low}–{settings.review_high}×)"))
    return holds


def changes(lo: datetime, hi: datetime, first: date, end: date,
            assignments: Sequence[MeterAssignment],
            tariff_changes: Sequence[TariffChange]) -> list[Hold]:
    holds = []
    for a in assignments:
        if a.start is not None and lo < a.start <= hi:
            holds.append(Hold("meter_replaced", f"first bill with meter {a.meter_id}, "
                                                f"installed {a.start.isoformat()}"))
    for c in tariff_changes:
        if first < c.effective < end:
            holds.append(Hold("tariff_changed", f"tariff changed to {c.tariff} on "
                                                f"{c.effective}"))
    return holds


def estimated(slots: int, estimated_slots: int, methods: dict[str, int],
              reads_estimated: int, settings: BillingSettings) -> list[Hold]:
    share = estimated_slots / slots if slots else (1.0 if reads_estimated else 0.0)
    if share > settings.estimated_share_max:
        how = ", ".join(f"method {m}: {n}" for m, n in sorted(methods.items()))
        return [Hold("estimated", f"{share:.0%} of the cycle is estimated"
                                  + (f" ({how})" if how else " (register reads)"))]
    return []
