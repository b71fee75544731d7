"""The gateway daemon's footprint with 1,000 meters: resident memory and CPU per read.

Simulated meters (10 pty buses × 100 meters, their own process) are polled by a real
`run_collector` gateway (its own process, SQLite outbox, uplink to a throwaway
mosquitto drained by a head-end) for one simulated hour at --speed, then the daemon's
VmRSS and CPU time are read from /proc. The baseline, measured in the same run, is a
Python process that has only imported the collector: what the code costs before it
holds a single meter.

    python -m bench.gateway_footprint [--meters 1000] [--buses 10] [--speed 120]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simulator.broker import Mosquitto

ROOT = Path(__file__).resolve().parents[1]
DAEMON = """
import asyncio, json, sys
from datetime import datetime, timedelta
from collector.acquisition.clock import SimulatedClock
from collector.config.settings import (BusConfig, CollectorSettings, FlagSettings, MqttSettings,
                              Schedule, Settings, StorageSettings)
from collector.runtime.daemon import run_collector
from model import Meter

a = json.loads(sys.argv[1])
clock = SimulatedClock(datetime.fromisoformat(a["start"]), a["speed"], a["t0"])
buses = tuple(BusConfig(f"bus{i + 1}", p, baud=9600, latency_ms=200, retries=1)
              for i, p in enumerate(a["paths"]))
# The simulator puts meter n on bus (n - 1) mod buses.
meters = tuple(Meter(f"m{n}", "dlt645", f"bus{(n - 1) % len(buses) + 1}", f"{n:012d}")
               for n in range(1, a["meters"] + 1))
settings = Settings(
    source="(bench)", collector=CollectorSettings(timezone="Asia/Shanghai", gateway="gw-bench",
                                                  catch_up=timedelta(0)),
    storage=StorageSettings(url="sqlite:///" + a["db"]), buses=buses, meters=meters,
    schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0", "1-0:32.7.0")),),
    mqtt=MqttSettings(role="gateway", port=a["port"], username="collector",
                      password_env="BENCH_MQTT_PASSWORD"),
    flags=FlagSettings(enabled=False))
asyncio.run(run_collector(settings, clock=clock,
                          until=datetime.fromisoformat(a["until"])))
"""
SIMULATOR = """
import asyncio, json, sys
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo
from collector.acquisition.clock import SimulatedClock
from simulator.fleet import FleetSpec, build_fleet

a = json.loads(sys.argv[1])

async def main():
    clock = SimulatedClock(datetime.fromisoformat(a["start"]), a["speed"], a["t0"])
    fleet = build_fleet(FleetSpec(meters=a["meters"], buses=a["buses"],
                                  tz=ZoneInfo("Asia/Shanghai")), clock.now,
                        clock.now() - timedelta(days=1))
    print(json.dumps({"paths": await fleet.start()}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""
BASELINE = ("import collector.runtime.daemon, sys; print"
            "(open('/proc/self/status').read(), flush=True)")


def rss_mb(status: str) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--buses", type=int, default=10)
    parser.add_argument("--speed", type=float, default=120.0)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_MQTT_PASSWORD": "secret"}
    baseline = subprocess.run([sys.executable, "-c", BASELINE], env=env, capture_output=True,
                              text=True, check=True)
    from datetime import UTC, datetime, timedelta

    from collector.acquisition.clock import align_up

    start = datetime.now(UTC)
    t0 = time.monotonic()
    until = align_up(start, timedelta(minutes=15)) + timedelta(hours=1)
    common = {"start": start.isoformat(), "speed": args.speed, "t0": t0}
    broker = Mosquitto({"collector": "secret"})
    broker.start()
    sim = subprocess.Popen([sys.executable, "-c", SIMULATOR,
                            json.dumps({**common, "meters": args.meters, "buses": args.buses})],
                           env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sim.stdout is not None
        fleet = json.loads(sim.stdout.readline())
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "gw.db"
            order = fleet["paths"]
            daemon = subprocess.Popen([sys.executable, "-c", DAEMON, json.dumps({
                **common, "paths": order, "meters": args.meters, "db": str(db),
                "port": broker.port, "until": until.isoformat()})], env=env)
            peak = 0.0
            cpu = 0.0
            while daemon.poll() is None:
                try:
                    peak = max(peak, rss_mb(Path(f"/proc/{daemon.pid}/status").read_text()))
                    cpu = cpu_s(daemon.pid)
                except (FileNotFoundError, ProcessLookupError):
                    break
                time.sleep(0.5)
            with sqlite3.connect(db) as conn:
                reads, ok = conn.execute("SELECT count(*), sum(outcome = 'ok') FROM "
                                         "collection_attempts").fetchone()
    finally:
        sim.terminate()
        sim.wait()
        broker.destroy()
    floor = rss_mb(baseline.stdout)
    print(f"{args.meters} meters on {args.buses} buses, one simulated hour at {args.speed:g}×: "
          f"{reads} reads ({ok} ok)")
    print(f"gateway daemon peak RSS {peak:.1f} MB (goal ≤ 100 MB); the collector imported "
          f"and idle {floor:.1f} MB; ratio {peak / floor:.2f}")
    print(f"CPU {cpu:.1f} s, {cpu / max(reads, 1) * 1000:.2f} ms per read")


if __name__ == "__main__":
    main()
