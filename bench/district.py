"""One district, one box: a day's whole chain for N meters on the production stack.

simulator/district.py builds the district: gateways of 100 household meters and one
area meter each, a month of daily frozen registers already stored (as a running
head-end would hold them), and one day to collect. Then, on a throwaway PostgreSQL and
mosquitto:

1. ingest: every gateway publishes its day from publisher processes of its own (one
   MQTT connection per gateway, QoS 1): 15-minute register reads, the closing frozen
   registers with their TOU registers, hourly voltage and events. 1 or 2 head-end
   worker processes (a shared subscription) store them;
2. after the day closes: the day's VEE pass, the full flag pass (line loss included)
   and the billing cycle of the segment whose reading day it is;
3. all along, 4 API clients (a process of their own) ask for meter-months.

Baselines in the same run: `psql \\copy` of the day's rows into an empty database; a
plain SELECT + sum of the series VEE reads; one SQL aggregate of the billed registers.

    python -m bench.district [--meters 100000] [--workers 1] [--curves]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from psycopg import sql

from bench.api import peak_rss_mb
from bench.ingest import bytes_on_disk, psql_copy
from bench.mqtt_ingest import peak_mb, worker
from collector.acquisition import mqtt_link
from collector.billing.cycles import Cycle
from collector.billing.run import Biller
from collector.config.billing import BillingSettings
from collector.config.mqtt import MqttSettings
from collector.config.vee import VeeSettings
from collector.flags.engine import FlagEngine
from collector.vee.engine import VeeEngine
from model import Meter, Reading
from protocols.mqtt import schema, topics
from simulator.broker import Mosquitto
from simulator.district import BILLED, DAY, SEGMENTS, TZ, District, midnight
from simulator.ports import free_port
from storage.postgres import PostgresStore
from tests.support.services import PgCluster, started_api

BATCH = 500
"""Readings per MQTT message, as a gateway's uplink batches them."""
CLIENTS = 4
PUBLISHERS = 2
CLOSE = midnight(DAY + timedelta(days=1))
NOW = CLOSE + timedelta(minutes=5)
"""When the day's passes run: just after its closing midnight, before the next day's
first interval is due (a pass any later would rightly call that one missed)."""


def reset_peak() -> None:
    """Start the high-water mark afresh: the chain's peak, not the seeding's."""
    Path("/proc/self/clear_refs").write_text("5")


# --- the processes the driver starts --------------------------------------------------


async def publisher(port: int, meters: int, seed: int, gateways: list[int]) -> None:
    """Gateways publishing their day, 25 at a time, each on its own connection."""
    district = District(meters, seed)
    settings = MqttSettings(port=port, username="bench", password_env="BENCH_MQTT_PW")
    todo = list(gateways)

    async def one_by_one() -> None:
        while todo:
            g = todo.pop()
            readings, events = district.day(g)
            async with mqtt_link.client(settings, f"gw{g:04d}") as client:
                topic = topics.topic(f"gw{g:04d}", "readings")
                payloads = [schema.encode_batch(f"gw{g:04d}", seq, readings=readings[i:i + BATCH])
                            for seq, i in enumerate(range(0, len(readings), BATCH))]
                if events:
                    payloads.append(schema.encode_batch(f"gw{g:04d}", len(payloads),
                                                        events=events))
                for payload in payloads:
                    await client.publish(topic, payload, qos=1)

    await asyncio.gather(*(one_by_one() for _ in range(25)))
    print(f"peak {peak_mb():.0f}", flush=True)


async def api_clients(base: str, token: str, meters: int, seed: int) -> None:
    """Meter-month queries from 4 clients until stdin closes; then their latencies."""
    district = District(meters, seed)
    rng = random.Random(1)
    lo, hi = midnight(DAY - timedelta(days=29)), CLOSE
    latencies: list[float] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), stop.set)
    async with httpx.AsyncClient(base_url=base, timeout=60, headers={
            "Authorization": f"Bearer {token}"}) as client:
        async def one() -> None:
            while not stop.is_set():
                g = rng.randrange(district.gateways)
                meter = district.meter_id(g, rng.randrange(district.size(g)))
                t = time.perf_counter()
                got = await client.get(f"/v1/meters/{meter}/readings", params={
                    "from": lo.isoformat(), "to": hi.isoformat(), "limit": 3000})
                got.raise_for_status()
                latencies.append(time.perf_counter() - t)

        await asyncio.gather(*(one() for _ in range(CLIENTS)))
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [0.0] * 99
    print(json.dumps({"requests": len(latencies), "p50": q[49], "p99": q[98]}), flush=True)


# --- the driver ------------------------------------------------------------------------


async def seed(store: PostgresStore, district: District) -> tuple[list[Meter], int]:
    meters: list[Meter] = []
    rows = 0
    for g in range(district.gateways):
        ms, points, assignments = district.records(g)
        meters += ms
        await store.upsert_meters(ms)
        await store.upsert_service_points(points, assignments)
    batch: list[Reading] = []
    for g in range(district.gateways):
        batch += district.history(g)
        if len(batch) >= 200_000 or g == district.gateways - 1:
            await store.write_readings(batch)
            rows += len(batch)
            batch = []
    async with store._conn() as conn:
        await conn.execute("ANALYZE")
    return meters, rows


async def spawn(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.district", *args, stdout=asyncio.subprocess.PIPE)


async def ingest(district: District, port: int, url: str, workers: int,
                 expected: int) -> dict[str, Any]:
    procs = []
    for i in range(workers):
        proc = await spawn("--worker", str(port), url, f"district-w{i}", "district")
        assert proc.stdout is not None
        assert await proc.stdout.readline() == b"subscribed\n"
        procs.append(proc)
    stored = [0] * workers
    first: list[float] = []

    async def follow(i: int, proc: asyncio.subprocess.Process) -> float:
        assert proc.stdout is not None
        peak = 0.0
        async for line in proc.stdout:
            word, *rest = line.decode().split()
            if word == "stored":
                stored[i] = int(rest[0])
                if stored[i] and not first:
                    first.append(time.perf_counter())
            elif word == "peak":
                peak = float(rest[0])
        return peak

    followers = [asyncio.create_task(follow(i, p)) for i, p in enumerate(procs)]
    shares = [list(range(district.gateways))[k::PUBLISHERS] for k in range(PUBLISHERS)]
    t0 = time.perf_counter()
    pubs = [await spawn("--publish", str(port), str(district.meters), str(district.seed),
                        ",".join(map(str, share))) for share in shares if share]
    while sum(stored) < expected:
        if time.perf_counter() - t0 > 1800:
            raise SystemExit(f"stored {sum(stored):,} of {expected:,} in 30 minutes")
        await asyncio.sleep(0.05)
    done = time.perf_counter()
    pub_peaks = []
    for p in pubs:
        out, _ = await p.communicate()
        pub_peaks.append(float(out.split()[-1]))
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    worker_peaks = [await f for f in followers]
    for proc in procs:
        await proc.wait()
    return {"seconds": done - (first[0] if first else t0), "from_publish": done - t0,
            "worker_peaks": worker_peaks, "publisher_peaks": pub_peaks}


async def copy_baseline(cluster: PgCluster, source_url: str, tmp: Path) -> float:
    """The same day's rows by `psql \\copy` into the same table of an empty database.

    The CSV is the day as stored (all of it, once: the run checks that first), taken
    out with one COPY TO. Rebuilding it from the simulator, as before, generated the
    whole district's day again in Python: six of the bench's minutes at 100,000 meters.
    """
    url = cluster.create_database("district_copy")
    store = PostgresStore(url, timezone=str(TZ))
    await store.migrate()
    await store.close()
    path = tmp / "day.csv"
    query = sql.SQL("COPY (SELECT series_id, ts, value, quality, method_id, source_id "
                    "FROM readings WHERE ts > {} AND ts <= {}) TO STDOUT WITH (FORMAT csv)"
                    ).format(sql.Literal(midnight(DAY)), sql.Literal(CLOSE))
    with psycopg.connect(source_url) as conn, path.open("wb") as f, \
            conn.cursor().copy(query) as copy:
        for chunk in copy:
            f.write(chunk)
    seconds = psql_copy(cluster, url, "series_id, ts, value, quality, method_id, source_id",
                        path)
    path.unlink()
    return seconds


async def vee_baseline(store: PostgresStore, settings: VeeSettings) -> float:
    """A plain SELECT of the series VEE reads (the district's interval energy over its
    lookback and the day) and a numpy sum of their differences."""
    lo = midnight(DAY - timedelta(days=settings.lookback_days))
    t0 = time.perf_counter()
    async with store._conn() as conn:
        cur = await conn.execute(
            "SELECT value FROM readings WHERE series_id IN (SELECT id FROM series WHERE "
            "quantity = '1-0:1.8.0' AND kind = 'interval') AND ts >= %s AND ts <= %s "
            "ORDER BY series_id, ts", (lo, CLOSE))
        float(np.diff(np.array([r[0] for r in await cur.fetchall()])).sum())
    return time.perf_counter() - t0


BILLED_AGGREGATE = (
    "SELECT s.meter_id, max(r.value) - min(r.value) FROM readings r "
    "JOIN series s ON s.id = r.series_id JOIN meter_assignments a ON a.meter_id = s.meter_id "
    "JOIN service_points p ON p.id = a.service_point_id WHERE p.segment = %s "
    "AND s.quantity = '1-0:1.8.0' AND s.kind = 'daily' AND r.ts >= %s AND r.ts <= %s "
    "GROUP BY s.meter_id")


async def billing_baseline(store: PostgresStore, lo: Any, hi: Any) -> tuple[float, int]:
    t0 = time.perf_counter()
    async with store._conn() as conn:
        got = await (await conn.execute(BILLED_AGGREGATE, (BILLED, lo, hi))).fetchall()
    return time.perf_counter() - t0, len(got)


def postgres_peak_mb(cluster: PgCluster) -> float:
    """The largest high-water resident memory among the cluster's processes."""
    pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
    return peak_rss_mb(pid)


def mosquitto_peak_mb(broker: Mosquitto) -> float:
    assert broker.proc is not None
    return peak_rss_mb(broker.proc.pid)


def tally(district: District, flags: list[Any]) -> list[str]:
    """Which injected cases the flags found, and what they raised on clean meters."""
    inj = district.injected
    by_subject: dict[str, set[str]] = {}
    for f in flags:
        by_subject.setdefault(f.subject, set()).add(f.kind)
    wanted = {"backward": "backward", "runaway": "runaway", "theft": "theft",
              "tamper": "tamper", "gap": "missed_reads", "hot_area": "high_line_loss"}
    lines = []
    for case, kind in wanted.items():
        found = sum(kind in by_subject.get(s, set()) for s in inj[case])
        lines.append(f"  {case:<9} {found:>6} of {len(inj[case]):>6} flagged {kind}")
    injected = set().union(*inj.values())
    clean = Counter(k for s, kinds in by_subject.items() if s not in injected for k in kinds)
    lines.append("  on meters and areas with nothing injected: "
                 + (", ".join(f"{k} {n}" for k, n in clean.most_common()) or "none"))
    return lines


async def main(args: argparse.Namespace) -> None:
    district = District(args.meters, args.seed, curves=args.curves)
    os.environ["BENCH_MQTT_PW"] = "bench"
    broker = Mosquitto({"bench": "bench"})
    broker.start()
    cluster = PgCluster()
    cluster.start()
    server: subprocess.Popen[str] | None = None
    clients: asyncio.subprocess.Process | None = None
    out: list[str] = []
    try:
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            os.chmod(tmp, 0o755)  # psql may run as another user
            url = cluster.create_database("district")
            store = PostgresStore(url, timezone=str(TZ), pool_size=4)
            await store.migrate()
            t0 = time.perf_counter()
            meters, history = await seed(store, district)
            seeded = time.perf_counter() - t0
            expected = district.day_rows()
            before = await store.count_readings()

            config = tmp / "collector.toml"
            config.write_text(f'[collector]\ntimezone = "{TZ}"\n[storage]\nurl = "{url}"\n'
                              '[api]\naccess_log = false\n')
            cli = [sys.executable, "-m", "collector.cli"]
            made = await asyncio.create_subprocess_exec(
                *cli, "token", "-c", str(config), "create", "--name", "bench", "--scope",
                "read", stdout=asyncio.subprocess.PIPE)
            token = (await made.communicate())[0].decode().strip().splitlines()[-1]
            port = free_port()
            server = started_api([*cli, "api", "-c", str(config), "--port", str(port)])
            clients = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.district", "--clients",
                f"http://127.0.0.1:{port}", token, str(args.meters), str(args.seed),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)

            reset_peak()
            chain0 = time.perf_counter()
            got = await ingest(district, broker.port, url, args.workers, expected)
            ingested = time.perf_counter()
            settings = VeeSettings()
            vee = VeeEngine(store, settings, TZ, meters)
            v0 = time.perf_counter()
            vrun = await vee.run(DAY, DAY, NOW)
            v_s = time.perf_counter() - v0
            engine = FlagEngine(store, meters, every=timedelta(minutes=15), tz=TZ,
                                interval_of={m.id: timedelta(days=1) for m in meters
                                             if m.is_area_meter})
            f0 = time.perf_counter()
            frun = await engine.run(NOW, full=True)
            f_s = time.perf_counter() - f0
            biller = Biller(store, BillingSettings(segments=SEGMENTS), settings, TZ)
            cycle = Cycle.parse(f"{DAY.year}-{DAY.month:02d}")
            b0 = time.perf_counter()
            bills = await biller.run(cycle, segment=BILLED)
            b_s = time.perf_counter() - b0
            chain = time.perf_counter() - chain0
            chain_peak = peak_mb()  # before the baselines, which are not the product
            assert clients.stdin is not None and clients.stdout is not None
            clients.stdin.close()
            lat = json.loads((await clients.stdout.readline()).decode())
            await clients.wait()

            stored_day = await day_rows(store)
            total = await store.count_readings()
            vee_base = await vee_baseline(store, settings)
            lo, hi = (midnight(d) for d in cycle.span(SEGMENTS[BILLED]))
            bill_base, billed_meters = await billing_baseline(store, lo, hi)
            api_peak = peak_rss_mb(server.pid)
            pg_peak, mq_peak = postgres_peak_mb(cluster), mosquitto_peak_mb(broker)
            await store.close()
            size = bytes_on_disk(url, ["readings", "series", "sources"])
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                db_bytes = int(row[0]) if row else 0
            copy_s = await copy_baseline(cluster, url, tmp)
    finally:
        if clients is not None and clients.returncode is None:
            clients.kill()
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        broker.destroy()
        cluster.destroy()

    gw = district.gateways
    kept = "daily frozen registers" + (" and 15-minute curves" if args.curves else "")
    ingest_rate, copy_rate = expected / got["seconds"], expected / copy_s
    vee_md = vrun.meter_days
    out.append(f"district: {args.meters:,} meters behind {gw:,} gateways ({gw:,} areas), "
               f"{args.workers} head-end worker(s), {os.cpu_count()} cores; history "
               f"{history:,} rows stored in {seeded:.0f} s ({kept})")
    out.append(f"ingest   {got['seconds']:7.1f} s  {ingest_rate:>10,.0f} rows/s  "
               f"({expected:,} rows: intervals, frozen + TOU registers, hourly voltage; "
               f"{got['from_publish']:.1f} s from the first publisher's start)")
    out.append(f"  baseline psql \\copy of the same rows {copy_s:.1f} s {copy_rate:,.0f} rows/s; "
               f"ratio {ingest_rate / copy_rate:.2f} (goal ≥ 0.8)")
    out.append(f"  stored exactly once: {stored_day:,} of {expected:,} "
               f"({stored_day / expected:.4%}); every key is unique, so none doubled")
    out.append(f"VEE      {v_s:7.1f} s  {vee_md / v_s:>10,.0f} meter-days/s  ({vee_md:,} "
               f"meter-days, {vrun.validated:,} validated, {vrun.held:,} held, "
               f"{vrun.estimated:,} estimated; goal 100,000 in ≤ 60 s)")
    out.append(f"  baseline SELECT + sum of the same series {vee_base:.1f} s; ratio "
               f"{vee_base / v_s:.2f}")
    out.append(f"flags    {f_s:7.1f} s  {len(meters) / f_s:>10,.0f} meters/s  "
               f"({len(frun.findings):,} findings, {frun.raised:,} raised; goal ≤ 60 s)")
    out += tally(district, frun.findings)
    out.append(f"billing  {b_s:7.1f} s  {bills.points / b_s:>10,.0f} SP/s  ({bills.points:,} "
               f"service points of segment {BILLED}, {bills.released:,} released, "
               f"{bills.held:,} held; goal ≤ 60 s)")
    held_by = Counter(h.code for b in bills.bills for h in {x.code: x for x in b.holds}.values())
    if held_by:
        out.append("  held: " + ", ".join(f"{k} {n}" for k, n in held_by.most_common())
                   + f"; e.g. {next(b.holds[0].detail for b in bills.bills if b.holds)}")
    out.append(f"  baseline one SQL aggregate of the same registers ({billed_meters:,} meters) "
               f"{bill_base:.2f} s; ratio {bill_base / b_s:.3f}")
    out.append(f"API      {lat['requests']:,} meter-month requests from {CLIENTS} clients "
               f"during the chain: p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms")
    out.append(f"chain    {chain:7.1f} s  (ingest {ingested - chain0:.0f} s from the publishers' "
               f"start, VEE {v_s:.0f}, flags {f_s:.0f}, billing {b_s:.0f}; goal ≤ 600 s)")
    out.append(f"peak RSS MB: driver (VEE, flags, billing) {chain_peak:.0f}; head-end "
               f"worker(s) {', '.join(f'{p:.0f}' for p in got['worker_peaks'])}; publishers "
               f"{', '.join(f'{p:.0f}' for p in got['publisher_peaks'])}; API {api_peak:.0f}; "
               f"mosquitto {mq_peak:.0f}; largest PostgreSQL process {pg_peak:.0f}")
    out.append(f"database: {db_bytes / total:.0f} bytes per reading all told "
               f"({db_bytes / 1e9:.2f} GB for {total:,} readings); readings + series "
               f"{size / total:.1f} bytes per reading")
    assert before + stored_day <= total
    print("\n".join(out))


async def day_rows(store: PostgresStore) -> int:
    async with store._conn() as conn:
        row = await (await conn.execute(
            "SELECT count(*) FROM readings WHERE ts > %s AND ts <= %s",
            (midnight(DAY), CLOSE))).fetchone()
    return int(row[0]) if row else 0


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--curves", action="store_true",
                        help="seed 15-minute curves for the history too (small districts)")
    parser.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--publish", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument("--clients", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(int(args.worker[0]), args.worker[1], args.worker[2],
                           args.worker[3], timezone=str(TZ), progress=True))
    elif args.publish:
        port, meters, seed_, share = args.publish
        asyncio.run(publisher(int(port), int(meters), int(seed_),
                              [int(g) for g in share.split(",")]))
    elif args.clients:
        base, token, meters, seed_ = args.clients
        asyncio.run(api_clients(base, token, int(meters), int(seed_)))
    else:
        asyncio.run(main(args))


if __name__ == "__main__":
    cli()
