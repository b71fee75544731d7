"""The technician's one-meter tools: read, scan and clock, each a single short session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo

from protocols.dlt645 import codec, data_ids
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.dlt645.codec import FrameError, MeterErrorReply
from protocols.serial import LineSettings, SerialBus

DEFAULT_READ = (
    "1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:1.8.3", "1-0:1.8.4", "1-0:2.8.0",
    "1-0:32.7.0", "1-0:31.7.0", "1-0:16.7.0", "1-0:13.7.0", "1-0:14.7.0",
)


@asynccontextmanager
async def dlt645_session(
    port: str, line: LineSettings, settings: ClientSettings
) -> AsyncIterator[Dlt645Client]:
    bus = await SerialBus.open(port, port, line)
    try:
        yield Dlt645Client(bus, settings)
    finally:
        await bus.close()


@dataclass
class ReadOutcome:
    values: list[data_ids.DecodedValue] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def read_meter(client: Dlt645Client, address: str, quantities: Sequence[str]) -> ReadOutcome:
    out = ReadOutcome()
    wanted = set(quantities)
    for di in data_ids.plan_reads(quantities):
        try:
            values = await client.read_values(address, di)
        except MeterErrorReply as exc:
            out.problems.append(f"DI {di:08X}: {exc.message}")
            continue
        out.values.extend(v for v in values if v.obis in wanted)
    return out


@dataclass(frozen=True, slots=True)
class ClockCheck:
    meter_time: datetime
    server_time: datetime

    @property
    def offset_s(self) -> float:
        return (self.meter_time - self.server_time).total_seconds()


async def check_clock(client: Dlt645Client, address: str, tz: tzinfo) -> ClockCheck:
    meter_time = await client.read_clock(address, tz)
    return ClockCheck(meter_time, datetime.now(UTC))


async def scan_bus(
    client: Dlt645Client, on_probe: Callable[[str, int, int], None] | None = None
) -> list[str]:
    """Find every address on the bus by wildcard probes, splitting a byte at a time on clashes.

    One meter alone answers the all-wildcard probe at once; several clash, and we fix the
    lowest address byte to each of 00..99, recursing into the next byte wherever two or more
    meters still share the fixed suffix.
    """
    found: list[str] = []

    async def probe(suffix: str) -> None:
        pattern = "AA" * (6 - len(suffix) // 2) + suffix
        try:
            address = await client.probe_address(pattern)
        except FrameError:
            if len(suffix) == 12:
                return
            for n in range(100):
                if on_probe is not None:
                    on_probe(pattern, n, 100)
                await probe(f"{n:02d}{suffix}")
            return
        if address is not None and codec.address_matches(pattern, address):
            found.append(address)

    await probe("")
    return sorted(set(found))
