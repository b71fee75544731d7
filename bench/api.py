"""The HTTP API under load, against the same work done straight in the database.

A throwaway PostgreSQL gets METERS × DAYS of 15-minute register reads (10,000 × 30 =
28.8 M rows by default) through the store. `collector api` then serves it from its own
process, and:
1. 16 concurrent clients ask for "one meter, one month of 15-minute readings" (a random
   meter each time); p50, p99 and requests/s are printed against the same query run
   straight through psycopg by 16 concurrent connections; then the same with one client,
   the time a request takes when it does not queue behind others for the two cores;
2. one month for all meters is exported as NEM12 through /v1/exports/nem12, against a
   `COPY (SELECT …) TO STDOUT` of the same rows.

    python -m bench.api [--meters 10000] [--days 30] [--requests 800] [--workers 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
from psycopg_pool import AsyncConnectionPool

from model import Meter, Reading
from simulator.ports import free_port
from storage.postgres import PostgresStore
from tests.support.services import PgCluster, started_api

TZ = ZoneInfo("Asia/Shanghai")
FIRST = date(2026, 10, 1)
STEP = timedelta(minutes=15)
CLIENTS = 16
ONE_METER_MONTH = (
    "WITH s AS (SELECT id FROM series WHERE meter_id = %s AND quantity = '1-0:1.8.0' "
    "AND kind = 'interval') SELECT DISTINCT ON (v.ts) v.ts, v.version, v.value, v.quality "
    "FROM (SELECT series_id, ts, 0 AS version, value, quality FROM readings WHERE series_id "
    "IN (SELECT id FROM s) AND ts BETWEEN %s AND %s UNION ALL SELECT series_id, ts, version, "
    "value, quality FROM reading_versions WHERE series_id IN (SELECT id FROM s) AND ts "
    "BETWEEN %s AND %s) v ORDER BY v.ts, v.version DESC")
ALL_METERS_COPY = (
    "COPY (SELECT s.meter_id, r.ts, r.value, r.quality FROM readings r JOIN series s ON "
    "s.id = r.series_id WHERE s.quantity = '1-0:1.8.0' AND s.kind = 'interval' AND r.ts "
    "BETWEEN '{a}' AND '{b}' ORDER BY s.meter_id, r.ts) TO STDOUT")


def month_bounds(days: int) -> tuple[datetime, datetime]:
    lo = datetime(FIRST.year, FIRST.month, FIRST.day, tzinfo=TZ).astimezone(UTC)
    return lo, lo + timedelta(days=days)


async def load(url: str, meters: int, days: int) -> int:
    store = PostgresStore(url)
    await store.migrate()
    ids = [f"m{n:05d}" for n in range(meters)]
    await store.upsert_meters([Meter(m, "dlt645", f"bus{n % 100}", f"{n:012d}")
                               for n, m in enumerate(ids)])
    lo, _ = month_bounds(days)
    slots = days * 96 + 1
    rows = 0
    t0 = time.perf_counter()
    for c in range(0, meters, 100):
        batch = [Reading(m, "1-0:1.8.0", lo + k * STEP, round(1000 + n + 0.25 * k, 2), "kWh")
                 for n, m in enumerate(ids[c:c + 100], start=c) for k in range(slots)]
        await store.write_readings(batch)
        rows += len(batch)
    async with store._conn() as conn:
        await conn.execute("ANALYZE")
    await store.close()
    print(f"loaded {rows:,} readings ({meters:,} meters × {days} days) in "
          f"{time.perf_counter() - t0:.0f} s")
    return rows


def summary(latencies: list[float], wall: float) -> str:
    q = statistics.quantiles(latencies, n=100)
    return (f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms, "
            f"{len(latencies) / wall:,.0f} req/s")


async def through_api(base: str, token: str, meters: int, days: int, requests: int,
                      clients: int = CLIENTS) -> tuple[list[float], float]:
    lo, hi = month_bounds(days)
    latencies: list[float] = []
    rng = random.Random(1)
    todo = [f"m{rng.randrange(meters):05d}" for _ in range(requests)]
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        async def worker() -> None:
            while todo:
                meter = todo.pop()
                t = time.perf_counter()
                got = await client.get(f"/v1/meters/{meter}/readings", params={
                    "from": lo.isoformat(), "to": hi.isoformat(), "limit": 3000})
                got.raise_for_status()
                assert len(got.json()["items"]) == days * 96 + 1
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - t0


async def straight(url: str, meters: int, days: int, requests: int, clients: int = CLIENTS
                   ) -> tuple[list[float], float]:
    lo, hi = month_bounds(days)
    latencies: list[float] = []
    rng = random.Random(1)
    todo = [f"m{rng.randrange(meters):05d}" for _ in range(requests)]
    async with AsyncConnectionPool(url, min_size=clients, max_size=clients, open=False) as pool:
        await pool.open()

        async def worker() -> None:
            while todo:
                meter = todo.pop()
                t = time.perf_counter()
                async with pool.connection() as conn:
                    cur = await conn.execute(ONE_METER_MONTH, (meter, lo, hi, lo, hi))
                    assert len(await cur.fetchall()) == days * 96 + 1
                latencies.append(time.perf_counter() - t)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, time.perf_counter() - t0


async def export_api(base: str, token: str, days: int) -> tuple[float, int]:
    last = FIRST + timedelta(days=days - 1)
    size = 0
    t0 = time.perf_counter()
    params = {"from": FIRST.isoformat(), "to": last.isoformat()}
    async with httpx.AsyncClient(base_url=base, timeout=None, headers={
            "Authorization": f"Bearer {token}"}) as client, client.stream(
            "GET", "/v1/exports/nem12", params=params) as got:
        got.raise_for_status()
        async for chunk in got.aiter_bytes():
            size += len(chunk)
    return time.perf_counter() - t0, size


def export_copy(url: str, days: int) -> tuple[float, int]:
    lo, hi = month_bounds(days)
    size = 0
    t0 = time.perf_counter()
    sql = ALL_METERS_COPY.format(a=lo.isoformat(), b=hi.isoformat())
    with psycopg.connect(url) as conn, conn.cursor() as cur, cur.copy(sql) as copy:
        for data in copy:
            size += len(data)
    return time.perf_counter() - t0, size


def peak_rss_mb(pid: int) -> float:
    """The high-water resident memory (VmHWM) of the process, or of the largest of its
    worker processes, in MB."""
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    peaks = []
    for each in pids:
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return max(peaks, default=float("nan"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--workers", type=int, default=1, help="collector api --workers")
    args = parser.parse_args()
    cluster = PgCluster()
    cluster.start()
    server = None
    try:
        url = cluster.create_database("api")
        rows = asyncio.run(load(url, args.meters, args.days))
        with tempfile.TemporaryDirectory() as tmp:
            os.chmod(tmp, 0o755)
            config = Path(tmp) / "collector.toml"
            # As behind a proxy that logs requests: uvicorn's line per request is a
            # good share of a request's time.
            config.write_text(f'[collector]\ntimezone = "{TZ}"\n[storage]\nurl = "{url}"\n'
                              '[api]\naccess_log = false\n')
            cli = [sys.executable, "-m", "collector.cli"]
            token = subprocess.run(
                [*cli, "token", "-c", str(config), "create", "--name", "bench", "--scope",
                 "read", "--scope", "billing"], check=True, capture_output=True,
                text=True).stdout.strip().splitlines()[-1]
            port = free_port()
            server = started_api([*cli, "api", "-c", str(config), "--port", str(port),
                                  "--workers", str(args.workers)])
            base = f"http://127.0.0.1:{port}"
            # Both runs ask for the same meters: warm the database's cache for both
            # first, so that neither pays for the other's first reads.
            asyncio.run(straight(url, args.meters, args.days, args.requests))
            api_lat, api_wall = asyncio.run(through_api(base, token, args.meters, args.days,
                                                        args.requests))
            db_lat, db_wall = asyncio.run(straight(url, args.meters, args.days,
                                                   args.requests))
            print(f"one meter-month ({args.days * 96 + 1} readings), {CLIENTS} clients, "
                  f"{args.requests} requests, {args.workers} API process(es):")
            print(f"  API       {summary(api_lat, api_wall)}")
            print(f"  psycopg   {summary(db_lat, db_wall)}")
            p99 = statistics.quantiles(api_lat, n=100)[98] * 1000
            print(f"  req/s ratio API/psycopg {db_wall / api_wall:.2f}; API p99 {p99:.1f} ms "
                  "(goal ≤ 50 ms)")
            one = max(50, args.requests // 4)
            api_lat, api_wall = asyncio.run(through_api(base, token, args.meters, args.days,
                                                        one, clients=1))
            db_lat, db_wall = asyncio.run(straight(url, args.meters, args.days, one, clients=1))
            print(f"  one client, {one} requests:")
            print(f"  API       {summary(api_lat, api_wall)}")
            print(f"  psycopg   {summary(db_lat, db_wall)}")
            before = peak_rss_mb(server.pid)
            api_s, api_bytes = asyncio.run(export_api(base, token, args.days))
            copy_s, copy_bytes = export_copy(url, args.days)
            print(f"export of {rows:,} readings: NEM12 via the API {api_s:.1f} s "
                  f"({api_bytes / 1e6:.0f} MB, {rows / api_s:,.0f} rows/s); COPY TO "
                  f"{copy_s:.1f} s ({copy_bytes / 1e6:.0f} MB, {rows / copy_s:,.0f} rows/s); "
                  f"ratio {copy_s / api_s:.2f} (goal ≥ 0.5)")
            print(f"  the API process's peak memory: {before:.0f} MB before the export, "
                  f"{peak_rss_mb(server.pid):.0f} MB after (it reads 500 meters at a time, "
                  "so the peak does not grow with the meter count)")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        cluster.stop()


if __name__ == "__main__":
    main()
