"""A billing cycle for 100,000 service points: how many bills go out, how right they are,
and how fast, against one SQL aggregate over the same rows.

Service points with a known true consumption per TOU period (simulator/billing_population)
are stored as the collector would store them: frozen daily registers (total and four
tariff registers) at each cycle boundary, and 15-minute intervals for the commercial
ones. `collector bill run` then computes the cycle. Prints the share of bills released
vs held by reason, the error of billed vs true energy (total and per TOU period) on
bills built from actual reads, and service points billed per second against a baseline:
one GROUP BY that takes max − min of each meter's frozen total register.

    python -m bench.billing_eval [--points 100000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from collector.billing.cycles import Cycle
from collector.billing.run import Biller
from collector.config.billing import BillingSettings
from collector.config.vee import VeeSettings
from simulator.billing_population import BillingSpec, Truth, chunks
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

BASELINE_SQLITE = ("SELECT meter_id, max(value) - min(value) FROM reading_values "
                   "WHERE quantity = '1-0:1.8.0' AND kind = 'daily' GROUP BY meter_id")
BASELINE_PG = ("SELECT s.meter_id, max(r.value) - min(r.value) FROM readings r JOIN series s "
               "ON s.id = r.series_id WHERE s.quantity = '1-0:1.8.0' AND s.kind = 'daily' "
               "GROUP BY s.meter_id")


async def main(points: int, postgres: str | None) -> None:
    spec = BillingSpec(points=points)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "billing.db"
        store: Any = PostgresStore(postgres) if postgres else SqliteStore(str(db))
        await store.migrate()
        truth: dict[str, Truth] = {}
        rows = 0
        t0 = time.perf_counter()
        for chunk in chunks(spec):
            await store.upsert_meters(chunk.meters)
            await store.upsert_service_points(chunk.points, chunk.assignments)
            for c in chunk.changes:
                await store.record_tariff_change(c)
            for i in range(0, len(chunk.readings), 50_000):
                await store.write_readings(chunk.readings[i:i + 50_000])
            rows += len(chunk.readings)
            truth.update(chunk.truth)
        print(f"stored {points:,} service points, {rows:,} reads in "
              f"{time.perf_counter() - t0:.1f} s ({'PostgreSQL' if postgres else 'SQLite'})")

        t0 = time.perf_counter()
        if postgres:
            async with store._conn() as conn:
                got = await (await conn.execute(BASELINE_PG)).fetchall()
        else:
            with sqlite3.connect(db) as conn:
                got = conn.execute(BASELINE_SQLITE).fetchall()
        base_s = time.perf_counter() - t0
        assert len(got) == points

        settings = BillingSettings(segments=spec.segments)
        biller = Biller(store, settings, VeeSettings(), spec.tz)
        cycle = Cycle.parse(f"{spec.cycle_month[0]}-{spec.cycle_month[1]:02d}")
        t0 = time.perf_counter()
        run = await biller.run(cycle)
        bill_s = time.perf_counter() - t0
        await store.close()

    print(run.summary())
    held_by = Counter(h.code for b in run.bills for h in {x.code: x for x in b.holds}.values())
    print(f"released {run.released / run.points:.1%}, held {run.held / run.points:.1%}: "
          + ", ".join(f"{k} {n} ({n / run.points:.2%})" for k, n in held_by.most_common()))
    errors: list[float] = []
    period_err: dict[str, list[float]] = {}
    for b in run.bills:
        t = truth[b.service_point_id]
        if not t.actual or b.kwh is None or b.quality != "A":
            continue
        errors.append(b.kwh - t.kwh)
        tou: Counter[str] = Counter()
        for part in b.determinants["parts"]:
            tou.update(part.get("tou") or {})
        if len(b.determinants["parts"]) == 1 and tou:
            for p, e in tou.items():
                period_err.setdefault(p, []).append(e - t.by_period[p])
    worst = max(abs(e) for e in errors)
    print(f"billed vs true energy on {len(errors):,} bills from actual reads: max |error| "
          f"{worst:.3f} kWh (register resolution 0.01 kWh per read), mean "
          f"{sum(errors) / len(errors):+.4f} kWh")
    for p, es in sorted(period_err.items()):
        print(f"  {p:<6} {len(es):>7,} bills, max |error| {max(abs(e) for e in es):.3f} kWh")
    rate, base_rate = points / bill_s, points / base_s
    print(f"cycle: {points:,} service points in {bill_s:.1f} s = {rate:,.0f} SP/s; one SQL "
          f"aggregate over the same registers {base_s:.2f} s = {base_rate:,.0f} SP/s; "
          f"ratio {rate / base_rate:.3f} (goal: 100,000 in ≤ 60 s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--postgres", default=None, help="A PostgreSQL URL (default: SQLite)")
    args = parser.parse_args()
    asyncio.run(main(args.points, args.postgres))
