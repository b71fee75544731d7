"""Thousands of concentrators against one front end: the login storm, then a day's work.

N simulated concentrators × P points each run in simulator processes of their own and
dial one front-end process (this one) over loopback TCP, all at once. Each, once logged
in, is read for one day: its 96-point forward register curve and daily freeze (plus
the clock, the point table, the present registers and the event page, as every
collection does), into an SQLite store. The baseline, measured in the same run, is the
codec alone decoding the same kind of reply frames from memory (framing, data units and
values, no sockets, no store), so the ratio says what the front end costs on top.

    python -m bench.q1376_frontend [--terminals 2000] [--points 32] [--procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from collector.acquisition.q1376.service import Q1376Service
from collector.config.settings import parse
from protocols.q1376 import frame as fr
from protocols.q1376 import items
from protocols.q1376.values import CurveRequest
from simulator.dlt645_meter import SimulatedDlt645Meter
from simulator.load import LoadModel
from simulator.q1376_terminal import SimulatedTerminal
from storage.sqlite import SqliteStore

TZ = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 21, 16, 30, tzinfo=UTC)  # 00:30 on the 22nd in Shanghai
DAY = datetime(2026, 11, 21).date()


class Registers:
    """Closed-form registers (a steady load): a simulated bank per minute for 64,000
    meters would take gigabytes, and the bench measures the front end, not the meters."""

    def __init__(self, seed: int) -> None:
        self.start_epoch = int((NOW - timedelta(days=3)).timestamp())
        self.base = 1000.0 + seed % 9000
        self.kw = 0.2 + (seed % 17) / 10

    def forward(self, epoch: float) -> list[float]:
        total = self.base + self.kw * (epoch - self.start_epoch) / 3600
        return [total, total * 0.3, total * 0.3, total * 0.2, total * 0.2]

    def reverse(self, epoch: float) -> list[float]:
        return [0.0] * 5


class Meter:
    """What SimulatedTerminal asks of a meter for registers, freezes and curves."""

    def __init__(self, n: int) -> None:
        self.address = f"{n:012d}"
        self.registers = Registers(n)
        self.phases = 1
        self.wiring = None
        self.load = LoadModel.for_meter(n)

    def silent_at(self, now: datetime) -> bool:
        return now.timestamp() < self.registers.start_epoch


def terminal_address(i: int) -> fr.Address:
    return fr.Address("4101", i + 1)


def terminals(first: int, count: int, points: int) -> list[SimulatedTerminal]:
    out = []
    for i in range(first, first + count):
        pts = {pn: cast(SimulatedDlt645Meter, Meter(i * points + pn))
               for pn in range(1, points + 1)}
        out.append(SimulatedTerminal(terminal_address(i), pts, lambda: NOW, TZ,
                                     heartbeat_s=3600.0))
    return out


def simulate(port: int, first: int, count: int, points: int, stay: float) -> None:
    """One simulator process: its share of the terminals, all dialling at once."""
    async def main() -> None:
        group = terminals(first, count, points)
        await asyncio.gather(*(t.run("127.0.0.1", port, stay=stay) for t in group),
                             return_exceptions=True)

    asyncio.run(main())


class FixedClock:
    speed = 1.0

    def now(self) -> datetime:
        return NOW

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.Event().wait()

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


def config(n: int, points: int, db: Path) -> dict[str, Any]:
    return {
        "collector": {"timezone": "Asia/Shanghai", "catch_up": "1d"},
        "storage": {"url": f"sqlite:///{db}"},
        "q1376": {"listen": "127.0.0.1:0", "curves": ["forward"], "timeout": "60s",
                  "max_connections": n + 10, "login_within": "300s",
                  "offline_after": "1h"},
        "concentrator": [{"address": terminal_address(i).text} for i in range(n)],
        "meter": [{"id": f"m{i * points + pn}", "protocol": "q1376",
                   "concentrator": terminal_address(i).text, "pn": pn,
                   "address": f"{i * points + pn:012d}"}
                  for i in range(n) for pn in range(1, points + 1)],
    }


def baseline(n: int, points: int) -> tuple[float, int, int]:
    """Decode, from memory, the replies of a sample of terminals to the day's curve and
    freeze requests; scaled to n terminals. (seconds, frames, readings)."""
    sample = min(n, 50)
    frames: list[bytes] = []
    ask = CurveRequest(datetime(2026, 11, 21, 0, 15), 15, 96).encode()
    for t in terminals(0, sample, points):
        for block in range(0, points, 8):
            pns = range(block + 1, min(points, block + 8) + 1)
            for fn, data in ((items.F_CURVE_FORWARD, ask), (items.F_DAILY_FORWARD,
                                                            bytes([0x21, 0x11, 0x26]))):
                request = items.request(t.address, fr.AFN_CLASS2, 1,
                                        [items.Unit(pn, fn, data) for pn in pns])
                frames += t.answer(fr.decode(request))
    values = 0
    started = time.perf_counter()
    for raw in frames:
        frame = fr.decode(raw)
        for unit in items.split_units(frame):
            value = items.decode_value(frame.afn, unit)
            values += len(getattr(value, "values", ())) or len(value.registers.values)
    elapsed = time.perf_counter() - started
    scale = n / sample
    return elapsed * scale, int(len(frames) * scale), int(values * scale)


async def front_end(n: int, points: int, procs: int, db: Path) -> dict[str, float]:
    settings = parse(config(n, points, db))
    store = SqliteStore(str(db))
    await store.migrate()
    await store.upsert_meters(settings.meters)
    service = Q1376Service(settings, store, FixedClock())
    task = asyncio.create_task(service.run())
    await service.ready.wait()
    ctx = multiprocessing.get_context("spawn")
    share = -(-n // procs)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    children = [ctx.Process(target=simulate, args=(service.port, p * share,
                                                   min(share, n - p * share), points, 900.0))
                for p in range(procs) if p * share < n]
    for child in children:
        child.start()
    front = service.front
    async with front.changed:
        await front.changed.wait_for(lambda: len(front.links) >= n)
    logged_in = time.perf_counter() - started
    async with service.collected:
        await service.collected.wait_for(lambda: len(service.runs) >= n)
    collected = time.perf_counter() - started
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    frames = sum(link.frames_in for link in front.links.values())
    readings = sum(run.readings for run in service.runs)
    errors = sum(len(run.errors) for run in service.runs)
    stored = await store.count_readings()
    service.stop()
    await task
    for child in children:
        child.terminate()
        child.join()
    await store.close()
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"login_s": logged_in, "collect_s": collected, "frames": frames,
            "readings": readings, "stored": stored, "errors": errors, "cpu_s": cpu,
            "rss_mb": cpu1.ru_maxrss / 1024, "refused": front.refused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=2000)
    parser.add_argument("--points", type=int, default=32)
    parser.add_argument("--procs", type=int, default=2, help="simulator processes")
    args = parser.parse_args()
    n, points = args.terminals, args.points
    base_s, base_frames, base_values = baseline(n, points)
    with tempfile.TemporaryDirectory() as tmp:
        got = asyncio.run(front_end(n, points, args.procs, Path(tmp) / "fe.db"))
    print(f"{n:,} concentrators × {points} points = {n * points:,} meters, one front-end "
          f"process, {args.procs} simulator processes, {os.cpu_count()} cores")
    print(f"login storm: all {n:,} logged in after {got['login_s']:.1f} s "
          f"({got['refused']} refused)")
    print(f"one day collected: {got['collect_s']:.1f} s wall from the first dial; "
          f"{got['frames']:,.0f} frames in, {got['frames'] / got['collect_s']:,.0f} frames/s; "
          f"{got['readings']:,.0f} readings, {got['readings'] / got['collect_s']:,.0f} "
          f"readings/s; {got['stored']:,} rows stored; {got['errors']} errors")
    print(f"front end: peak RSS {got['rss_mb']:,.0f} MB; CPU {got['cpu_s']:.1f} s = "
          f"{1000 * got['cpu_s'] / max(1, got['frames']):.2f} s per 1,000 frames")
    rate = got["readings"] / got["collect_s"]
    base_rate = base_values / base_s
    print(f"baseline, the codec alone on the same kind of frames from memory: "
          f"{base_frames:,} frames, {base_values:,} values in {base_s:.1f} s = "
          f"{base_rate:,.0f} values/s; ratio (front end / codec) {rate / base_rate:.2f} "
          "(goal ≥ 0.5)")


if __name__ == "__main__":
    main()
