"""How well VEE finds what was injected and how close its estimates come to the truth.

Simulates meters with a known true 15-minute consumption (a daily shape per meter,
weekday/weekend difference, noise), turns it into register reads, then removes and
corrupts them: gaps from 15 min to 3 days (bracketed, across midnight, and trailing),
spikes, zero runs with voltage, low reads, rollovers, clock offsets and unrecorded
replacements. VEE estimates and judges in memory, chunk by chunk, exactly as a pass
does after loading from the store. Prints, per rule, the detection rate (injected
meter-days the rule failed) and the false-positive rate (clean meter-days it failed);
for estimation, the MAPE of each touched day's energy and the bias, by gap length; the
register-scaled check; and throughput against a plain numpy pass over the same arrays.
A second, small run goes through the store to relate a full pass to a SELECT + sum.

    python -m bench.vee_eval [--meters 10000] [--days 100] [--chunk 1000] [--seed 7]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from collector.acquisition.clock import local_midnight
from collector.config.vee import VeeSettings
from collector.vee import codes
from collector.vee.engine import ENERGY, VeeEngine
from collector.vee.estimate import LikeDays, estimate_meter
from collector.vee.grid import Grid
from collector.vee.rules import judge
from model import Meter, Reading
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore

TZ = ZoneInfo("Asia/Shanghai")
STEP = timedelta(minutes=15)
PER_DAY = 96
HISTORY = 14
GAP_CLASSES = {"15 min": 1, "1 h": 4, "2 h": 8, "6 h": 24, "1 day": 96, "3 days": 288}
INJECTED = (codes.SPIKE, codes.ZERO, codes.NEGATIVE, codes.TIME, codes.REPLACEMENT)


def true_load(rng: np.random.Generator, meters: int, days: int, first: date) -> np.ndarray:
    """kWh per 15 min: base, a morning and an evening peak, weekends higher, noise."""
    hour = (np.arange(PER_DAY) + 1) / 4
    base = rng.uniform(0.03, 0.15, (meters, 1))
    evening = rng.uniform(0.1, 0.6, (meters, 1))
    morning = rng.uniform(0.0, 0.3, (meters, 1))
    shape = (base + evening * np.exp(-0.5 * ((hour - 20) / 1.5) ** 2)
             + morning * np.exp(-0.5 * ((hour - 7.5) / 1.0) ** 2))
    weekend = np.array([(first + timedelta(days=d)).weekday() >= 5 for d in range(days)])
    factor = np.where(weekend, 1.25, 1.0)
    load = shape[:, None, :] * factor[None, :, None]
    load = load * rng.lognormal(0, 0.25, (meters, days, PER_DAY))
    return np.asarray(load.reshape(meters, days * PER_DAY), dtype=np.float64)


def run_chunk(rng: np.random.Generator, meters: int, days: int, s: VeeSettings,
              first: date, tallies: dict[str, list[float]],
              rule_hits: dict[str, list[int]], timing: dict[str, float]) -> int:
    total_days = days + HISTORY
    start_day = first - timedelta(days=HISTORY)
    load = true_load(rng, meters, total_days, start_day)
    t = load.shape[1] + 1
    truth = np.zeros((meters, t))
    truth[:, 1:] = np.cumsum(load, axis=1)
    truth += rng.uniform(100, 50000, (meters, 1))
    value = truth.copy()
    present = np.ones((meters, t), dtype=bool)
    labels: dict[str, np.ndarray] = {r: np.zeros((meters, days), dtype=bool)
                                     for r in (*INJECTED, codes.GAP)}
    clock = np.full((meters, total_days), np.nan)
    volts = np.full((meters, total_days), 230.0)
    judged0 = HISTORY * PER_DAY
    gaps: list[tuple[int, int, int, str]] = []
    order = rng.permutation(meters)
    cut = np.array_split(order, 10)
    # Gaps of every class, bracketed (some across midnight) or trailing.
    for i in cut[0]:
        name = rng.choice(list(GAP_CLASSES))
        n = GAP_CLASSES[str(name)]
        trailing = rng.random() < 0.15
        a = t - n if trailing else int(rng.integers(judged0 + 1, t - n - 2))
        present[i, a:a + n] = False
        gaps.append((int(i), a, a + n - 1, str(name)))
    for i in cut[1]:  # a spike: the register jumps by far more than the meter can do
        k = int(rng.integers(judged0 + 1, t - 1))
        value[i, k:] += rng.uniform(20, 80)
        labels[codes.SPIKE][i, (k - judged0 - 1) // PER_DAY] = True
    for i in cut[2]:  # a stuck register for 6 h with voltage present: the energy is lost
        k = int(rng.integers(judged0 + 1, t - 30))
        lost = value[i, k + 24] - value[i, k]
        value[i, k:k + 25] = value[i, k]
        value[i, k + 25:] -= lost
        # Label the days that hold a whole rule's worth of the run (it may straddle two).
        stuck = np.bincount([(j - judged0 - 1) // PER_DAY for j in range(k + 1, k + 25)])
        for day in np.flatnonzero(stuck >= s.zero_run_intervals):
            labels[codes.ZERO][i, day] = True
    for i in cut[3]:  # one low read
        k = int(rng.integers(judged0 + 1, t - 1))
        value[i, k] -= rng.uniform(1, 10)
        labels[codes.NEGATIVE][i, (k - judged0 - 1) // PER_DAY] = True
    wrap = s.register_max + s.register_resolution
    for i in cut[4]:  # a register that rolls over somewhere in the judged days: not a fault
        k = int(rng.integers(judged0 + 1, t - 1))
        value[i] = (value[i] - value[i, k] + wrap - 0.005) % wrap
        truth[i] = value[i]
    for i in cut[5]:  # a meter clock 2–10 min off on one day
        d = int(rng.integers(0, days))
        clock[i, HISTORY + d] = rng.uniform(120, 600)
        labels[codes.TIME][i, d] = True
    for i in cut[6]:  # swapped for a new meter nobody recorded
        k = int(rng.integers(judged0 + 1, t - 1))
        value[i, k:] = value[i, k:] - value[i, k] + rng.uniform(0, 0.5)
        labels[codes.REPLACEMENT][i, (k - judged0 - 1) // PER_DAY] = True
    # The register value the meter reports is rounded to its resolution.
    value = np.round(value, 2)
    for i, a, b, _ in gaps:
        for k in range(a, b + 1):
            if k > judged0:
                labels[codes.GAP][i, (k - judged0 - 1) // PER_DAY] = True
    obs = np.where(present, value, np.nan)
    start = local_midnight(start_day, TZ)
    edges = np.arange(total_days + 1, dtype=np.int64) * PER_DAY
    grid = Grid([f"m{i}" for i in range(meters)], start, STEP,
                [start_day + timedelta(days=d) for d in range(total_days)], edges, obs.copy(),
                present.copy(), np.zeros_like(present), np.ones_like(present), np.full(
                    (meters, total_days + 1), np.nan), clock, volts, HISTORY)
    plain0 = time.perf_counter()
    np.nansum(np.diff(obs[:, judged0:], axis=1).reshape(meters, days, PER_DAY), axis=2)
    timing["plain"] += time.perf_counter() - plain0
    t0 = time.perf_counter()
    like = LikeDays(grid, TZ, ())
    complete = t - 1
    filled = 0
    for i in range(meters):
        for est in estimate_meter(grid, i, like, s, complete):
            grid.value[i, est.slot] = np.nan if est.value is None else est.value
            grid.auto[i, est.slot] = True
            filled += 1
    t1 = time.perf_counter()
    result = judge(grid, s, np.ones(meters, dtype=np.int64), np.zeros(meters, dtype=bool))
    t2 = time.perf_counter()
    timing["estimate"] += t1 - t0
    timing["judge"] += t2 - t1
    clean = ~np.any([labels[r] for r in labels], axis=0)
    for rule in (*INJECTED, codes.GAP):
        failed = ~result.passed[rule]
        rule_hits[rule][0] += int((failed & labels[rule]).sum())
        rule_hits[rule][1] += int(labels[rule].sum())
        rule_hits[rule][2] += int((failed & clean).sum())
        rule_hits[rule][3] += int(clean.sum())
    # Estimation error by gap class: each day the gap touches, estimated vs true energy.
    for i, a, b, name in gaps:
        d0 = max((a - 1) // PER_DAY, HISTORY)
        d1 = min(b // PER_DAY, total_days - 1)
        for d in range(d0, d1 + 1):
            lo, hi = d * PER_DAY, (d + 1) * PER_DAY
            est = grid.value[i, hi] - grid.value[i, lo]
            true = truth[i, hi] - truth[i, lo]
            if np.isnan(est) or true <= 0:
                tallies[f"{name} null"].append(1.0)
                continue
            tallies[name].append(abs(est - true) / true)
            tallies[f"{name} bias"].append(est - true)
            tallies[f"{name} true"].append(true)
            tallies["all bias"].append(est - true)
            tallies["all true"].append(true)
    # Register-scaled: days whose two midnights hold actual reads sum exactly to the delta.
    mids = edges[HISTORY:]
    both = present[:, mids[:-1]] & present[:, mids[1:]]
    sums = np.nansum(np.diff(grid.value[:, mids[0]:mids[-1] + 1], axis=1).reshape(
        meters, days, PER_DAY), axis=2)
    delta = value[:, mids[1:]] - value[:, mids[:-1]]
    rolled = delta < 0
    diff = np.abs(np.where(rolled, delta + wrap, delta) - np.where(sums < 0, sums + wrap, sums))
    gap_days = labels[codes.GAP]
    tallies["scaled max diff"].append(float(np.max(np.where(both & gap_days, diff, 0.0))))
    tallies["scaled days"].append(float((both & gap_days).sum()))
    return filled


PLAIN = ("SELECT value FROM readings WHERE series_id IN (SELECT id FROM series WHERE "
         "quantity = {p} AND kind = 'interval') AND ts >= {p} AND ts <= {p} "
         "ORDER BY series_id, ts")


async def plain_pass(store: Any, postgres: str | None, lo: datetime, hi: datetime) -> float:
    """SELECT the same rows and sum their intervals with numpy: no versions, no rules."""
    if postgres:
        async with store._conn() as conn:
            cur = await conn.execute(PLAIN.format(p="%s"), (ENERGY, lo, hi))
            values = [r[0] for r in await cur.fetchall()]
    else:
        with sqlite3.connect(store.path) as conn:
            values = [r[0] for r in conn.execute(PLAIN.format(p="?"),
                                                 (ENERGY, lo.timestamp(), hi.timestamp()))]
    return float(np.diff(np.array(values)).sum())


async def store_pass(meters: int, days: int, s: VeeSettings,
                     postgres: str | None) -> tuple[float, float]:
    """A full pass through the store (load, estimate, judge, write) against a SELECT of
    the same rows and a numpy sum: the ratio the issue asks for."""
    rng = np.random.default_rng(1)
    first = date(2026, 10, 1)
    start_day = first - timedelta(days=HISTORY)
    load = true_load(rng, meters, days + HISTORY, start_day)
    regs = np.round(np.cumsum(load, axis=1) + 1000, 2)
    start = local_midnight(start_day, TZ)
    with tempfile.TemporaryDirectory() as tmp:
        store: Any = (PostgresStore(postgres) if postgres
                      else SqliteStore(str(Path(tmp) / "vee.db")))
        await store.migrate()
        ms = [Meter(f"m{i}", "dlt645", "bus1", f"{i:012d}") for i in range(meters)]
        await store.upsert_meters(ms)
        rows = [Reading(f"m{i}", ENERGY, start + (k + 1) * STEP, float(regs[i, k]), "kWh")
                for i in range(meters) for k in range(regs.shape[1]) if (k + i) % 997]
        for n in range(0, len(rows), 50_000):
            await store.write_readings(rows[n:n + 50_000])
        last = first + timedelta(days=days - 1)
        now = local_midnight(last + timedelta(days=1), TZ) + timedelta(hours=1)
        t0 = time.perf_counter()
        await plain_pass(store, postgres, local_midnight(start_day, TZ), now)
        plain = time.perf_counter() - t0
        engine = VeeEngine(store, VeeSettings(lookback_days=HISTORY), TZ, ms)
        t1 = time.perf_counter()
        await engine.run(first, last, now)
        full = time.perf_counter() - t1
        await store.close()
    return plain, full


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--meters", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--store-meters", type=int, default=200)
    ap.add_argument("--store-days", type=int, default=14)
    ap.add_argument("--postgres", default=None,
                    help="run the store pass on this PostgreSQL URL (default: SQLite)")
    args = ap.parse_args()
    s = VeeSettings(lookback_days=HISTORY)
    rng = np.random.default_rng(args.seed)
    tallies: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    timing: dict[str, float] = defaultdict(float)
    filled = 0
    wall = time.perf_counter()
    for n in range(0, args.meters, args.chunk):
        filled += run_chunk(rng, min(args.chunk, args.meters - n), args.days, s,
                            date(2026, 6, 1), tallies, hits, timing)
    wall = time.perf_counter() - wall
    meter_days = args.meters * args.days
    print(f"VEE evaluation: {args.meters} meters × {args.days} days of 15-minute register "
          f"reads ({meter_days:,} meter-days), seed {args.seed}")
    print(f"\n{'rule':<14}{'detected':>12}{'false pos.':>14}")
    for rule in (codes.GAP, *INJECTED):
        det, pos, fp, neg = hits[rule]
        print(f"{rule:<14}{det / max(pos, 1):>11.1%} {fp / max(neg, 1):>13.3%}"
              f"   ({det}/{pos} injected, {fp}/{neg} clean meter-days)")
    print(f"\n{'gap':<8}{'days':>7}{'MAPE/day':>10}{'bias':>9}{'null':>6}")
    for name in GAP_CLASSES:
        errs = tallies[name]
        bias = sum(tallies[f"{name} bias"]) / max(sum(tallies[f"{name} true"]), 1e-9)
        print(f"{name:<8}{len(errs):>7}{np.mean(errs) if errs else 0:>10.1%}{bias:>9.2%}"
              f"{len(tallies[f'{name} null']):>6}")
    bias_all = sum(tallies["all bias"]) / max(sum(tallies["all true"]), 1e-9)
    print(f"bias over all gaps: {bias_all:+.3%} (goal: within ±1%)")
    print(f"register-scaled: {int(sum(tallies['scaled days']))} gap days with actual reads at "
          f"both midnights; largest |Σ intervals − register delta| = "
          f"{max(tallies['scaled max diff']):.6f} kWh (goal 0.0)")
    work = timing["estimate"] + timing["judge"]
    print(f"\nthroughput: {meter_days / work:,.0f} meter-days/s validated "
          f"(estimation {timing['estimate']:.1f} s for {filled:,} estimates, rules "
          f"{timing['judge']:.1f} s; {wall:.0f} s wall with simulation)")
    print(f"1,000,000 meter-days would take {1e6 / (meter_days / work):.0f} s (goal ≤ 60 s)")
    print(f"plain numpy pass over the same arrays: {meter_days / timing['plain']:,.0f} "
          f"meter-days/s; VEE/plain = {timing['plain'] / work:.3f}")
    plain, full = asyncio.run(store_pass(args.store_meters, args.store_days, s, args.postgres))
    md = args.store_meters * args.store_days
    where = "PostgreSQL" if args.postgres else "SQLite"
    print(f"through {where} ({args.store_meters} meters × {args.store_days} days): full pass "
          f"{md / full:,.0f} meter-days/s vs SELECT + numpy sum {md / plain:,.0f}; "
          f"ratio {plain / full:.2f}")


if __name__ == "__main__":
    main()
