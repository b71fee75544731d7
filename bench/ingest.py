"""Ingest N readings into PostgreSQL, the series-keyed design against its ceiling and
against the wide design it replaced, in one run on one throwaway cluster.

  (a) the project's path: Reading objects → PostgresStore.write_readings → committed rows
      (a batch of new keys goes straight in by COPY);
  (a') the same rows again: every key collides, so staging + upsert (all unchanged);
  (b) the ceiling: `psql \\copy` of the same rows from a CSV file into the same table;
  (w) the wide design as it was (text key meter × quantity × ts, unit/source on every
      row, COPY → staging → upsert), and (wb) `psql \\copy` into that wide table.

Prints rows/s, a/b (goal ≥ 0.9), a/w (goal ≥ 2) and bytes on disk per reading
(table + indexes) for both designs (goal: new ≤ ½ old). With TimescaleDB installed it
also compresses the new table and prints its bytes per reading.

    python -m bench.ingest [--rows 1000000] [--meters 10000] [--batch 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from model import Reading
from storage.postgres import PostgresStore, migrate
from tests.support.services import PgCluster

WIDE_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS readings_staging (
    meter_id text, quantity text, ts timestamptz, value double precision, unit text,
    quality text, method text, source text, seq bigint
) ON COMMIT DELETE ROWS
"""
WIDE_UPSERT = """
WITH batch AS (
    SELECT DISTINCT ON (meter_id, quantity, ts)
           meter_id, quantity, ts, value, unit, quality, method, source
    FROM readings_staging ORDER BY meter_id, quantity, ts, seq DESC
), written AS (
    INSERT INTO readings AS r (meter_id, quantity, ts, value, unit, quality, method, source)
    SELECT * FROM batch
    ON CONFLICT (meter_id, quantity, ts) DO UPDATE
       SET value = EXCLUDED.value, unit = EXCLUDED.unit, quality = EXCLUDED.quality,
           method = EXCLUDED.method, source = EXCLUDED.source, received_at = now()
     WHERE quality_rank(EXCLUDED.quality) >= quality_rank(r.quality)
       AND (r.value, r.quality, r.unit, r.method)
           IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.quality, EXCLUDED.unit, EXCLUDED.method)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) FROM written
"""
WIDE_COLUMNS = "meter_id, quantity, ts, value, unit, quality, method, source"


def make_readings(rows: int, meters: int) -> list[Reading]:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(rows):
        meter, slot = i % meters, i // meters
        out.append(Reading(f"m{meter:05d}", "1-0:1.8.0", t0 + timedelta(minutes=15 * slot),
                           1000.0 + slot * 0.25 + meter * 1e-3, "kWh", source="bench"))
    return out


def batches(readings: list[Reading], size: int) -> list[list[Reading]]:
    return [readings[i:i + size] for i in range(0, len(readings), size)]


async def project_path(store: PostgresStore, readings: list[Reading], batch: int,
                       expect_new: bool) -> float:
    started = time.perf_counter()
    for part in batches(readings, batch):
        result = await store.write_readings(part)
        assert result.new == (len(part) if expect_new else 0), result
    return time.perf_counter() - started


def wide_database(cluster: PgCluster, name: str) -> str:
    """A database with the schema as it was before 0004 (the wide readings table)."""
    url = cluster.create_database(name)
    with psycopg.connect(url, autocommit=True) as conn:
        for m in migrate.plain_migrations():
            if m.version < "0004":
                conn.execute(m.text.encode())
    return url


def wide_path(url: str, readings: list[Reading], batch: int) -> float:
    """The wide design's ingest, as storage/postgres.py did it before the series key."""
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        for part in batches(readings, batch):
            with conn.transaction(), conn.cursor() as cur:
                cur.execute(WIDE_STAGING)
                with cur.copy(f"COPY readings_staging ({WIDE_COLUMNS}, seq) "
                              "FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(["text", "text", "timestamptz", "float8", "text", "text",
                                    "text", "text", "int8"])
                    for seq, r in enumerate(part):
                        copy.write_row((r.meter_id, r.quantity, r.ts, r.value, r.unit,
                                        r.quality.value, r.method, r.source, seq))
                cur.execute("SET LOCAL work_mem = '64MB'")
                cur.execute(WIDE_UPSERT)
                row = cur.fetchone()
                assert row is not None and row[0] == len(part)
    return time.perf_counter() - started


def psql_copy(cluster: PgCluster, url: str, table_columns: str, csv_path: Path,
              options: str = "") -> float:
    cmd = [cluster.psql(), url, "-q", "-v", "ON_ERROR_STOP=1", "-c",
           f"\\copy readings ({table_columns}) FROM '{csv_path}' WITH (FORMAT csv{options})"]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"psql \\copy failed: {done.stderr.strip()}")
    return time.perf_counter() - started


def write_csv(path: Path, rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)


def bytes_on_disk(url: str, tables: Sequence[str]) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        total = 0
        for table in tables:
            row = conn.execute(
                "SELECT coalesce((SELECT sum(total_bytes) FROM "
                "hypertable_detailed_size(%s::regclass)), 0)"
                if _is_hypertable(conn, table) else
                "SELECT pg_total_relation_size(%s::regclass)", (table,)).fetchone()
            total += int(row[0]) if row else 0
        return total


def _is_hypertable(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    if row is None:
        return False
    return conn.execute("SELECT 1 FROM timescaledb_information.hypertables "
                        "WHERE hypertable_name = %s", (table,)).fetchone() is not None


def compressed_bytes(url: str) -> int | None:
    with psycopg.connect(url, autocommit=True) as conn:
        if not _is_hypertable(conn, "readings"):
            return None
        conn.execute("SELECT compress_chunk(c, if_not_compressed => true) "
                     "FROM show_chunks('readings') c")
    return bytes_on_disk(url, ["readings", "series", "sources"])


async def resolved_rows(url: str, readings: list[Reading]) -> list[tuple[Any, ...]]:
    """The rows as the narrow table holds them (series created), for psql's CSV."""
    store = PostgresStore(url)
    await store.migrate()
    rows = await store._ids.rows(store._conn, readings)
    await store.close()
    return [(sid, ts.isoformat(), repr(v), q, m, s) for sid, ts, v, q, m, s in rows]


def median(times: list[float]) -> float:
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--parallel", type=int, default=2,
                        help="connections one large batch is split across")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    readings = make_readings(args.rows, args.meters)
    cluster = PgCluster()
    cluster.start()
    times: dict[str, list[float]] = {k: [] for k in ("a", "a2", "b", "w", "wb")}
    sizes: dict[str, int] = {}
    compressed: int | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)  # psql may run as another user
            wide_csv, narrow_csv = Path(tmp) / "wide.csv", Path(tmp) / "narrow.csv"
            write_csv(wide_csv, [(r.meter_id, r.quantity, r.ts.isoformat(), repr(r.value),
                                  r.unit, r.quality.value, r.method, r.source)
                                 for r in readings])
            # Alternate the runs on fresh databases and compare medians: a shared VM's
            # noise moves single runs by ±20 %.
            for n in range(args.repeat):
                url_b = cluster.create_database(f"b{n}")
                write_csv(narrow_csv, await resolved_rows(url_b, readings))
                times["b"].append(psql_copy(
                    cluster, url_b, "series_id, ts, value, quality, method_id, source_id",
                    narrow_csv))
                url_a = cluster.create_database(f"a{n}")
                store = PostgresStore(url_a, parallel_ingest=args.parallel)
                await store.migrate()
                times["a"].append(await project_path(store, readings, args.batch, True))
                times["a2"].append(await project_path(store, readings, args.batch, False))
                await store.close()
                url_w = wide_database(cluster, f"w{n}")
                times["w"].append(wide_path(url_w, readings, args.batch))
                url_wb = wide_database(cluster, f"wb{n}")
                times["wb"].append(psql_copy(cluster, url_wb, WIDE_COLUMNS, wide_csv,
                                             ", FORCE_NOT_NULL (method, source)"))
            sizes["new"] = bytes_on_disk(url_a, ["readings", "series", "sources"])
            sizes["old"] = bytes_on_disk(url_w, ["readings"])
            compressed = compressed_bytes(url_a)
    finally:
        cluster.destroy()
    rate: Callable[[str], float] = lambda k: args.rows / median(times[k])  # noqa: E731
    a, a2, b, w, wb = (rate(k) for k in ("a", "a2", "b", "w", "wb"))
    print(f"{args.rows:,} readings across {args.meters:,} meters, batches of {args.batch:,}, "
          f"{args.parallel} parallel connections; median of {args.repeat} runs each")
    for key, label in (("a", "(a) project ingest, new keys (COPY)"),
                       ("a2", "(a') the same rows again (staging + upsert)"),
                       ("b", "(b) psql \\copy into the series-keyed table"),
                       ("w", "(w) the wide design's ingest (before 0004)"),
                       ("wb", "(wb) psql \\copy into the wide table")):
        runs = ", ".join(f"{t:.2f}" for t in times[key])
        print(f"{label:<46} {median(times[key]):7.2f} s {rate(key):>11,.0f} rows/s  [{runs}]")
    print(f"ratio a/b = {a / b:.2f} (goal >= 0.9)   a/w = {a / w:.2f} (goal >= 2)   "
          f"a'/w = {a2 / w:.2f}   wide design's own w/wb = {w / wb:.2f}")
    old, new = sizes["old"] / args.rows, sizes["new"] / args.rows
    print(f"bytes per reading (table + indexes): wide {old:.1f}, series-keyed {new:.1f}, "
          f"ratio {new / old:.2f} (goal <= 0.5)")
    if compressed is None:
        print("compressed: n/a (TimescaleDB is not installed on this PostgreSQL)")
    else:
        print(f"compressed (TimescaleDB): {compressed / args.rows:.1f} bytes per reading")


if __name__ == "__main__":
    asyncio.run(main())
