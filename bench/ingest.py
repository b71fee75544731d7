"""Ingest N readings into PostgreSQL three ways, in one run, on one throwaway cluster.

  (a) the project's path: Reading objects → PostgresStore.write_readings (binary COPY into
      staging + INSERT … ON CONFLICT with quality precedence) → committed rows;
  (b) the ceiling: `psql \\copy` of the same rows from a CSV file into the same table;
  (c) the floor: psycopg executemany INSERT (on a sample, it is slow).

Prints rows/s for each and the ratio a/b (goal ≥ 0.8).

    python -m bench.ingest [--rows 1000000] [--meters 10000] [--batch 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from model import Reading
from storage.postgres import PostgresStore
from tests.support.services import PgCluster


def make_readings(rows: int, meters: int) -> list[Reading]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    per_meter = -(-rows // meters)
    out = []
    for i in range(rows):
        meter, slot = i % meters, i // meters
        out.append(Reading(f"m{meter:05d}", "1-0:1.8.0", t0 + timedelta(minutes=15 * slot),
                           1000.0 + slot * 0.25 + meter * 1e-3, "kWh", source="bench"))
    assert per_meter * meters >= rows
    return out


async def project_path(url: str, readings: list[Reading], batch: int, parallel: int) -> float:
    store = PostgresStore(url, parallel_ingest=parallel)
    await store.migrate()
    started = time.perf_counter()
    for i in range(0, len(readings), batch):
        result = await store.write_readings(readings[i : i + batch])
        assert result.new == len(readings[i : i + batch])
    elapsed = time.perf_counter() - started
    await store.close()
    return elapsed


def psql_copy(cluster: PgCluster, url: str, csv_path: Path) -> float:
    cmd = [cluster.psql(), url, "-q", "-v", "ON_ERROR_STOP=1", "-c",
           f"\\copy readings (meter_id, quantity, ts, value, unit, quality, method, source) "
           f"FROM '{csv_path}' WITH (FORMAT csv, FORCE_NOT_NULL (method, source))"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"psql \\copy failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def executemany(url: str, readings: list[Reading]) -> float:
    rows = [(r.meter_id, r.quantity, r.ts, r.value, r.unit, r.quality.value, r.method, r.source)
            for r in readings]
    started = time.perf_counter()
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO readings (meter_id, quantity, ts, value, unit, quality, method, source) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    return time.perf_counter() - started


async def migrated(url: str) -> None:
    store = PostgresStore(url)
    await store.migrate()
    await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=2,
                        help="connections one large batch is split across")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--floor-rows", type=int, default=100_000,
                        help="rows for the executemany floor (it is slow)")
    args = parser.parse_args()
    readings = make_readings(args.rows, args.meters)
    cluster = PgCluster()
    cluster.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = Path(tmp) / "readings.csv"
            with csv_path.open("w", newline="") as f:
                w = csv.writer(f)
                for r in readings:
                    w.writerow([r.meter_id, r.quantity, r.ts.isoformat(), repr(r.value), r.unit,
                                r.quality.value, r.method, r.source])
            import os
            os.chmod(tmp, 0o755)
            # Alternate (b) and (a) on fresh databases and compare medians: a shared VM's
            # noise moves single runs by ±20 %.
            times_a, times_b = [], []
            for n in range(args.repeat):
                url_b = cluster.create_database(f"b{n}")
                await migrated(url_b)
                times_b.append(psql_copy(cluster, url_b, csv_path))
                url_a = cluster.create_database(f"a{n}")
                times_a.append(await project_path(url_a, readings, args.batch, args.parallel))
            t_a, t_b = statistics.median(times_a), statistics.median(times_b)
            url_c = cluster.create_database("c")
            await migrated(url_c)
            floor_rows = readings[: args.floor_rows]
            t_c = executemany(url_c, floor_rows)
    finally:
        cluster.destroy()
    a, b, c = args.rows / t_a, args.rows / t_b, len(floor_rows) / t_c
    print(f"{args.rows:,} readings across {args.meters:,} meters, batches of {args.batch:,}, "
          f"{args.parallel} parallel connections; median of {args.repeat} runs each")
    print(f"    runs (a): {', '.join(f'{t:.2f}' for t in times_a)} s; "
          f"(b): {', '.join(f'{t:.2f}' for t in times_b)} s")
    print(f"(a) project ingest (COPY → staging → upsert): {t_a:8.2f} s {a:>12,.0f} rows/s")
    print(f"(b) psql \\copy from CSV (ceiling):            {t_b:8.2f} s {b:>12,.0f} rows/s")
    print(f"(c) executemany INSERT (floor, {len(floor_rows):,} rows):  {t_c:8.2f} s "
          f"{c:>12,.0f} rows/s")
    print(f"ratio a/b = {a / b:.2f}   (a/c = {a / c:.1f})")


if __name__ == "__main__":
    asyncio.run(main())
