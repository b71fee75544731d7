"""One meter, one slot: protocol client → Readings, Events and a CollectionAttempt.

Everything protocol-specific ends here; what comes out is the shared data model, with
the CT×PT multiplier applied once and recorded in the reading's source.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from collector.acquisition.clock import Clock
from collector.config.settings import Schedule
from model import CollectionAttempt, Event, Meter, Outcome, Reading, ReadKind
from protocols.dlt645 import data_ids
from protocols.dlt645.client import Dlt645Client
from protocols.dlt645.codec import MeterErrorReply
from protocols.errors import ProtocolError, ResponseTimeout
from protocols.modbus.client import RegisterReader
from protocols.modbus.frames import ModbusExceptionReply, ReadRequest
from protocols.modbus.plan import plan_blocks
from protocols.modbus.profile import Profile

log = logging.getLogger(__name__)

SCALED_UNITS = frozenset({"kWh", "kvarh", "kW", "kvar"})
COVER_COUNT_OBIS = "0-0:96.20.0"


@dataclass
class CollectionResult:
    meter: Meter
    slot: datetime
    readings: list[Reading] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    attempt: CollectionAttempt | None = None


class MeterReader(Protocol):
    """What the scheduler needs from any protocol: read this meter for this slot."""

    async def collect(self, meter: Meter, schedule: Schedule, slot: datetime) -> CollectionResult:
        ...


def source_tag(protocol: str, bus: str, multiplier: float, extra: str = "") -> str:
    tag = f"{protocol}:{bus}"
    if extra:
        tag += f":{extra}"
    if multiplier != 1.0:
        tag += f"*{multiplier:g}"
    return tag


def scaled(meter: Meter, unit: str, value: float) -> float:
    return value * meter.multiplier if unit in SCALED_UNITS else value


async def run_collection(
    meter: Meter,
    slot: datetime,
    gateway: str,
    body: Callable[[CollectionResult], Awaitable[None]],
) -> CollectionResult:
    """Time one meter's reads and turn whatever happened into a CollectionAttempt.

    A timeout ends the meter's turn (a silent meter will not answer the next item
    either, so the bus is given back); a partial answer still counts as collected, with
    the error text saying what was missing.
    """
    result = CollectionResult(meter, slot)
    started = time.monotonic()
    outcome = Outcome.OK
    try:
        await body(result)
    except ResponseTimeout as exc:
        outcome = Outcome.TIMEOUT
        result.errors.append(str(exc.with_context(meter=meter.id, bus=meter.bus)))
    except ProtocolError as exc:
        outcome = Outcome.ERROR
        result.errors.append(str(exc.with_context(meter=meter.id, bus=meter.bus)))
    except Exception as exc:
        # Whatever one meter's answer makes our code raise costs that meter's read,
        # recorded with its reason, and never the bus worker that reads the next meter.
        outcome = Outcome.ERROR
        log.exception("meter %s on bus %s: reading it failed", meter.id, meter.bus,
                      extra={"meter": meter.id, "bus": meter.bus})
        result.errors.append(f"internal error: {type(exc).__name__}: {exc}")
    if outcome is Outcome.OK and result.errors and not result.readings:
        outcome = Outcome.ERROR
    for error in result.errors:
        log.warning("meter %s on bus %s: %s", meter.id, meter.bus, error,
                    extra={"meter": meter.id, "bus": meter.bus, "gateway": gateway})
    result.attempt = CollectionAttempt(
        meter_id=meter.id,
        bus=meter.bus,
        ts=slot,
        outcome=outcome,
        latency_ms=(time.monotonic() - started) * 1000,
        error="; ".join(result.errors)[:500],
        gateway=gateway,
    )
    return result


class ProtocolRouter:
    """One bus can carry several protocols; each meter goes to its protocol's reader."""

    def __init__(self, readers: Mapping[str, MeterReader]) -> None:
        self.readers = dict(readers)

    async def collect(self, meter: Meter, schedule: Schedule, slot: datetime) -> CollectionResult:
        reader = self.readers.get(meter.protocol)
        if reader is None:
            raise KeyError(f"no reader for protocol {meter.protocol!r} on bus {meter.bus}")
        return await reader.collect(meter, schedule, slot)


class ModbusReader:
    """Reads a Modbus meter's scheduled quantities through its profile's block plan."""

    def __init__(
        self,
        transport_for: Callable[[Meter], RegisterReader],
        profile_for: Callable[[str], Profile],
        gateway: str = "",
    ) -> None:
        self.transport_for = transport_for
        self.profile_for = profile_for
        self.gateway = gateway

    async def collect(self, meter: Meter, schedule: Schedule, slot: datetime) -> CollectionResult:
        async def body(result: CollectionResult) -> None:
            profile = self.profile_for(meter.model)
            specs = []
            for quantity in schedule.quantities:
                spec = profile.spec(quantity)
                if spec is not None:
                    specs.append(spec)
            if not specs:
                return
            transport = self.transport_for(meter)
            unit = int(meter.address)
            source = source_tag(meter.protocol, meter.bus, meter.multiplier)
            for block in plan_blocks(specs, profile.max_block, profile.max_gap):
                request = ReadRequest(unit, block.function, block.start, block.count)
                try:
                    registers = await transport.read_registers(request)
                except ModbusExceptionReply as exc:
                    result.errors.append(f"registers {block.start}+{block.count}: {exc.message}")
                    continue
                for spec, value in block.values(registers):
                    if not math.isfinite(value):
                        result.errors.append(f"{spec.obis} at register {spec.address} decodes "
                                             f"to {value}: not stored")
                        continue
                    result.readings.append(Reading(
                        meter.id, spec.obis, slot, scaled(meter, spec.unit, value), spec.unit,
                        source=source))

        return await run_collection(meter, slot, self.gateway, body)


def record_readings(meter: Meter, slot: datetime, record: data_ids.ProfileRecord,
                    wanted: set[str], tag: str) -> list[Reading]:
    """A load-profile record's energy registers as the slot's readings, multiplier applied
    and the source tagged with where they came from (`profile`, `memory`)."""
    source = source_tag("dlt645", meter.bus, meter.multiplier, tag)
    return [Reading(meter.id, obis, slot, scaled(meter, "kWh", value), "kWh", source=source)
            for obis, value in zip(data_ids.LOAD_PROFILE_OBIS,
                                   (record.forward_kwh, record.reverse_kwh), strict=True)
            if obis in wanted]


MAX_MEMORY_INTERVAL = timedelta(hours=1)
"""The longest interval a DL/T 645 meter's load profile keeps records at."""

MAX_CLOCK_ROUND_TRIP = timedelta(seconds=20)
"""A time read slower than this (a stalled gateway; on a fast simulated clock, a busy
machine) tells the offset only to ±10 s, a sixth of the drift threshold: not recorded."""


class Dlt645Reader:
    def __init__(
        self, client: Dlt645Client, clock: Clock, meter_tz: tzinfo, gateway: str = ""
    ) -> None:
        self.client = client
        self.clock = clock
        self.meter_tz = meter_tz
        self.gateway = gateway

    async def collect(self, meter: Meter, schedule: Schedule, slot: datetime) -> CollectionResult:
        async def body(result: CollectionResult) -> None:
            await self._read_quantities(meter, schedule, slot, result)
            if schedule.clock:
                await self._read_clock(meter, slot, result)
            if schedule.events:
                await self._read_events(meter, slot, result)
            for n in range(1, schedule.frozen_days + 1):
                await self._read_frozen(meter, n, result)

        return await run_collection(meter, slot, self.gateway, body)

    async def _read_item(self, meter: Meter, di: int, result: CollectionResult) -> bytes | None:
        """One DI; an error reply costs this item only, not the rest of the plan."""
        try:
            return await self.client.read(meter.address, di)
        except MeterErrorReply as exc:
            result.errors.append(f"DI {di:08X}: {exc.message}")
            return None

    async def _read_quantities(
        self, meter: Meter, schedule: Schedule, slot: datetime, result: CollectionResult
    ) -> None:
        if not schedule.quantities:
            return
        wanted = set(schedule.quantities)
        wanted -= await self._read_slot_record(meter, schedule, slot, wanted, result)
        if not wanted:
            return
        source = source_tag("dlt645", meter.bus, meter.multiplier)
        for di in data_ids.plan_reads([q for q in schedule.quantities if q in wanted]):
            payload = await self._read_item(meter, di, result)
            if payload is None:
                continue
            for value in data_ids.decode_values(data_ids.lookup(di), payload):
                if value.obis in wanted:
                    result.readings.append(
                        Reading(meter.id, value.obis, slot, scaled(meter, value.unit, value.value),
                                value.unit, source=source)
                    )

    async def _read_slot_record(self, meter: Meter, schedule: Schedule, slot: datetime,
                                wanted: set[str], result: CollectionResult) -> set[str]:
        """The energy registers as the meter froze them at the slot's end, from its load
        profile; returns the quantities read so. A live register is the value when the
        bus reached the meter, seconds or minutes after the slot it is stamped with: a
        late read made one interval 0.64 kWh and the next 0.09, the day's intervals
        missed the frozen register by up to 0.10 kWh, and demand followed the polling
        jitter. A meter that keeps no such record is read live, as before."""
        quantities = wanted & set(data_ids.LOAD_PROFILE_OBIS)
        if not quantities or schedule.at is not None or schedule.every > MAX_MEMORY_INTERVAL:
            return set()
        try:
            records = await self.client.read_load_profile(meter.address, slot, slot,
                                                          schedule.every, self.meter_tz)
        except MeterErrorReply:
            return set()
        record = next((r for r in records if r.ts.astimezone(UTC) == slot), None)
        if record is None:
            return set()
        result.readings += record_readings(meter, slot, record, quantities, "profile")
        return quantities

    async def _read_clock(self, meter: Meter, slot: datetime, result: CollectionResult) -> None:
        date_raw = await self._read_item(meter, data_ids.DI_DATE, result)
        before = self.clock.now()
        time_raw = await self._read_item(meter, data_ids.DI_TIME, result)
        after = self.clock.now()
        if date_raw is None or time_raw is None:
            return
        if after - before > MAX_CLOCK_ROUND_TRIP:
            # The meter stamped its time somewhere inside the round trip: the offset is
            # only known to half of it, and one stalled read must not look like a drift.
            result.errors.append(f"clock read took {(after - before).total_seconds():.0f} s: "
                                 "too slow to tell the meter's offset")
            return
        # Whole seconds, truncated, against the middle of the time read (see fieldtools).
        meter_time = data_ids.meter_clock(date_raw, time_raw, self.meter_tz)
        server = before + (after - before) / 2
        offset = round((meter_time - server).total_seconds() + 0.5, 1)
        result.readings.append(
            Reading(meter.id, data_ids.CLOCK_OFFSET_OBIS, slot, offset, "s",
                    source=source_tag("dlt645", meter.bus, 1.0, "clock"))
        )

    async def _read_events(self, meter: Meter, slot: datetime, result: CollectionResult) -> None:
        raw = await self._read_item(meter, 0x03300D00, result)
        if raw is None:
            return
        count = data_ids.COUNT.decode(raw)
        result.readings.append(
            Reading(meter.id, COVER_COUNT_OBIS, slot, count, "count",
                    source=source_tag("dlt645", meter.bus, 1.0))
        )
        if count <= 0:
            return
        record_raw = await self._read_item(meter, data_ids.DI_COVER_RECORD, result)
        if record_raw is None:
            return
        rec = data_ids.decode_cover_record(record_raw, self.meter_tz)
        details: dict[str, object] = {"count": int(count)}
        if rec.end is not None:
            details["end"] = rec.end.astimezone(UTC).isoformat()
        if rec.forward_before_kwh is not None:
            details["forward_before_kwh"] = rec.forward_before_kwh
        result.events.append(Event(meter.id, rec.start.astimezone(UTC), "cover_open", details))

    async def _read_frozen(self, meter: Meter, n: int, result: CollectionResult) -> None:
        raw_time = await self._read_item(meter, data_ids.di_frozen_time(n), result)
        if raw_time is None:
            return
        frozen_at = data_ids.decode_frozen_time(raw_time, self.meter_tz).astimezone(UTC)
        source = source_tag("dlt645", meter.bus, meter.multiplier, f"frozen{n}")
        for di in (data_ids.di_frozen_forward(n), data_ids.di_frozen_reverse(n)):
            payload = await self._read_item(meter, di, result)
            if payload is None:
                continue
            for value in data_ids.decode_values(data_ids.lookup(di), payload):
                result.readings.append(
                    Reading(meter.id, value.obis, frozen_at,
                            scaled(meter, value.unit, value.value), value.unit, source=source,
                            kind=ReadKind.FROZEN_DAILY)
                )

