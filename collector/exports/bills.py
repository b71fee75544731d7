"""Bills as one row per service point and cycle, for a billing system's import: the
same columns from `collector bill export` and from the API."""

from __future__ import annotations

from typing import Any

from model import Bill

BILL_COLUMNS = ("service_point", "account", "segment", "cycle", "version", "status",
                "from", "to", "kwh", "amount", "currency", "quality", "sharp_kwh",
                "peak_kwh", "flat_kwh", "valley_kwh", "max_demand_kw", "max_demand_at",
                "holds", "correction", "released_by", "bill_id")


def bill_row(b: Bill) -> list[Any]:
    d = b.determinants
    tou: dict[str, float] = {}
    for part in d["parts"]:
        for p, e in (part.get("tou") or {}).items():
            tou[p] = tou.get(p, 0.0) + e
    demand = d.get("max_demand", {})
    return [b.service_point_id, d.get("account", ""), b.segment, b.cycle, b.version, b.status,
            d["from"], d["to"], b.kwh, b.amount, b.currency, b.quality,
            *(round(tou[p], 4) if p in tou else "" for p in ("sharp", "peak", "flat", "valley")),
            demand.get("kw", ""), demand.get("at", ""),
            "; ".join(f"{h.code}: {h.detail}" for h in b.holds), b.correction, b.released_by,
            b.id]
