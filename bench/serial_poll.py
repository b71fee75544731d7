"""Poll N DL/T 645 meters over a simulated RS-485 bus and compare with the wire's own limit.

The baseline is physics, computed in the same run: every frame's bits ÷ baud plus the
meter's turnaround latency. A ratio near 1.0 means the collector adds nothing a real
bus would notice; the goal is ≤ 1.15.

    python -m bench.serial_poll [--meters 32] [--rounds 2] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from protocols.dlt645 import codec
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.serial import LineSettings, SerialBus
from simulator.bus import WireTiming
from simulator.fleet import FleetSpec, build_fleet, meter_address

DI = 0x00010000  # forward active energy, total: the read every interval needs


async def poll(meters: int, rounds: int, baud: int, latency_s: float) -> tuple[float, float, int]:
    line = LineSettings(baud, "E")
    timing = WireTiming(baud=baud, bits_per_byte=line.bits_per_byte, latency_s=latency_s)
    spec = FleetSpec(meters=meters, buses=1, tz=ZoneInfo("Asia/Shanghai"), timing=timing)
    fleet = build_fleet(spec, lambda: datetime.now(UTC), datetime.now(UTC) - timedelta(days=1))
    (path,) = await fleet.start()
    bus = await SerialBus.open("bench", path, line)
    client = Dlt645Client(bus, ClientSettings(latency_s=latency_s * 4, retries=0))
    request = len(codec.encode(codec.read_request(meter_address(1), DI)))
    reply = len(codec.encode(codec.read_reply(meter_address(1), DI, bytes(4)), preamble=b""))
    per_read = line.wire_seconds(request + reply) + latency_s
    reads = 0
    try:
        await client.read(meter_address(1), DI)  # warm up the pty and the registers
        started = time.perf_counter()
        for _ in range(rounds):
            for n in range(1, meters + 1):
                await client.read(meter_address(n), DI)
                reads += 1
        measured = time.perf_counter() - started
    finally:
        await bus.close()
        await fleet.stop()
    return measured, per_read * reads, reads


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    print(f"{args.meters} meters × {args.rounds} rounds, meter latency {args.latency_ms:g} ms, "
          "one 4-byte register read each (20-byte request incl. preamble, 20-byte reply)")
    print(f"{'baud':>6} {'reads':>6} {'measured s':>11} {'wire s':>8} {'ratio':>6} {'reads/s':>8}")
    for baud in (2400, 9600):
        measured, theoretical, reads = await poll(args.meters, args.rounds, baud,
                                                  args.latency_ms / 1000)
        print(f"{baud:>6} {reads:>6} {measured:>11.3f} {theoretical:>8.3f} "
              f"{measured / theoretical:>6.3f} {reads / measured:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
