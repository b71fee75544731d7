"""Money from determinants: each TOU period at its season's price, the tier adders on
consumption beyond each step, the demand charge and the standing charge.

Every charge line names its quantity, price and amount, so a clerk can redo the sum by
hand; amounts are rounded per line to the cent, as printed on a bill.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from collector.billing.tariff import Tariff


def price_part(tariff: Tariff, first: date, kwh: float, tou: dict[str, float],
               tier_before: float, demand_kw: float | None, share_of_cycle: float,
               demand_share: float | None = None) -> tuple[list[dict[str, Any]], float]:
    """(charge lines, amount) for one part of a cycle priced by `tariff`; the demand
    charge is `demand_kw` × `demand_share` (the part's share of the cycle by default)."""
    season = tariff.season_of(first)
    prices = {p.name: p.price for p in season.periods}
    lines: list[dict[str, Any]] = []
    for period, e in tou.items():
        lines.append(_line(f"energy {period}", e, "kWh", prices[period]))
    for n, e, add in tariff.tier_charges(tier_before, kwh):
        if add:
            lines.append(_line(f"tier {n} adder", e, "kWh", add))
    if tariff.demand_price and demand_kw is not None:
        share = share_of_cycle if demand_share is None else demand_share
        lines.append(_line("demand", demand_kw * share, "kW", tariff.demand_price))
    if tariff.fixed_per_cycle:
        lines.append(_line("standing charge", share_of_cycle, "cycle", tariff.fixed_per_cycle))
    return lines, round(sum(line["amount"] for line in lines), 2)


def _line(item: str, quantity: float, unit: str, price: float) -> dict[str, Any]:
    return {"item": item, "quantity": round(quantity, 4), "unit": unit, "price": price,
            "amount": round(quantity * price, 2)}
