"""The technician's one-meter tools: read, scan and clock, each a single short session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from urllib.parse import parse_qs, urlsplit

from protocols.dlt645 import codec, data_ids
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.dlt645.codec import FrameError, MeterErrorReply
from protocols.errors import ProtocolError, ResponseTimeout, TransportError
from protocols.modbus.client import ModbusRtuClient, ModbusTcpHost, RegisterReader
from protocols.modbus.frames import FC_READ_HOLDING, ModbusExceptionReply, ReadRequest
from protocols.modbus.plan import plan_blocks
from protocols.modbus.profile import Profile
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


def _utc_now() -> datetime:
    return datetime.now(UTC)


async def check_clock(client: Dlt645Client, address: str, tz: tzinfo,
                      now: Callable[[], datetime] = _utc_now) -> ClockCheck:
    """The meter's time against ours at the moment its time item was read.

    Meters report whole seconds, truncated; comparing with the middle of the time read,
    plus half a second, removes the bias of both the truncation and the round trip.
    `now` is the caller's clock: a daemon on a simulated clock must not judge its meters
    by the wall clock."""
    date_raw = await client.read(address, data_ids.DI_DATE)
    before = now()
    time_raw = await client.read(address, data_ids.DI_TIME)
    after = now()
    meter_time = data_ids.meter_clock(date_raw, time_raw, tz)
    return ClockCheck(meter_time + timedelta(milliseconds=500), before + (after - before) / 2)


async def sync_clock(client: Dlt645Client, tz: tzinfo, now: datetime | None = None) -> None:
    """Broadcast the time at which the frame will have arrived, to the nearest second.

    `now` comes from the daemon's clock (simulated in the demo); the CLI uses real time."""
    target = sync_target(client, now or datetime.now(UTC))
    await client.broadcast_time_sync(target.astimezone(tz))


def sync_target(client: Dlt645Client, now: datetime) -> datetime:
    frame = codec.encode(codec.time_sync_request(now), preamble=client.settings.preamble)
    arrival = now + timedelta(seconds=client.bus.settings.wire_seconds(len(frame)))
    return (arrival + timedelta(milliseconds=500)).replace(microsecond=0)


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


# --- Modbus ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModbusTarget:
    """Where a Modbus device is: tcp://host:port or rtu:///dev/ttyUSB0?baud=9600&parity=N."""

    kind: str
    host: str = ""
    port: int = 502
    path: str = ""
    line: LineSettings = field(default_factory=lambda: LineSettings(9600, "N"))

    @classmethod
    def parse(cls, url: str) -> ModbusTarget:
        parts = urlsplit(url)
        if parts.scheme == "tcp":
            if not parts.hostname:
                raise ValueError(f"{url!r}: tcp:// needs a host, e.g. tcp://192.0.2.10:502")
            return cls("tcp", parts.hostname, parts.port or 502)
        if parts.scheme == "rtu":
            if not parts.path:
                raise ValueError(f"{url!r}: rtu:// needs a port, e.g. rtu:///dev/ttyUSB0")
            query = parse_qs(parts.query)
            baud = int(query.get("baud", ["9600"])[0])
            parity = query.get("parity", ["N"])[0].upper()
            if parity not in ("N", "E", "O"):
                raise ValueError(f"{url!r}: parity must be N, E or O")
            return cls("rtu", path=parts.path, line=LineSettings(baud, parity))
        raise ValueError(f"{url!r}: use tcp://HOST:PORT or rtu:///dev/PORT?baud=9600")


@asynccontextmanager
async def modbus_session(
    target: ModbusTarget, timeout_s: float = 1.0, retries: int = 1
) -> AsyncIterator[RegisterReader]:
    if target.kind == "tcp":
        host = ModbusTcpHost(target.host, target.port, concurrency=1, timeout_s=timeout_s)
        try:
            yield host
        finally:
            await host.close()
        return
    bus = await SerialBus.open(target.path, target.path, target.line)
    try:
        yield ModbusRtuClient(bus, latency_s=timeout_s, retries=retries)
    finally:
        await bus.close()


async def read_modbus(
    reader: RegisterReader, unit: int, profile: Profile, quantities: Sequence[str] = ()
) -> ReadOutcome:
    out = ReadOutcome()
    specs = [s for s in profile.registers if not quantities or s.obis in quantities]
    for block in plan_blocks(specs, profile.max_block, profile.max_gap):
        try:
            registers = await reader.read_registers(
                ReadRequest(unit, block.function, block.start, block.count))
        except ModbusExceptionReply as exc:
            out.problems.append(f"registers {block.start}+{block.count}: {exc.message}")
            continue
        out.values.extend(data_ids.DecodedValue(s.obis, v, s.unit, s.decimals(v))
                          for s, v in block.values(registers))
    return out


GATEWAY_NO_DEVICE = (10, 11)  # a TCP gateway saying nothing is at that unit id


async def scan_modbus(
    reader: RegisterReader, units: Sequence[int] = range(1, 248),
    on_probe: Callable[[int], None] | None = None,
) -> list[int]:
    """Unit ids that answer at all: an exception reply still proves a device is there."""
    found = []
    for unit in units:
        if on_probe is not None:
            on_probe(unit)
        try:
            await reader.read_registers(ReadRequest(unit, FC_READ_HOLDING, 0, 1))
        except ModbusExceptionReply as exc:
            if exc.code not in GATEWAY_NO_DEVICE:
                found.append(unit)
        except (ResponseTimeout, TransportError):
            continue
        except ProtocolError:
            found.append(unit)  # garbled, but something answered at this id
        else:
            found.append(unit)
    return found
