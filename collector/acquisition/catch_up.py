"""Re-read missed slots from the meters' own memory: after the collector's downtime,
and after a meter's own silence.

A crash or a power cut interrupts a slot, and every slot while the daemon is down is
missed. DL/T 645 meters keep load-profile records of their energy registers, so on start
each missed interval slot (within the configured horizon) is read back from memory and
stored under the key it would have had; the slot's attempt says it was recovered.
Meters with no memory (Modbus) get an attempt per missed slot that says why it is empty.
A meter that was silent (a cut cable, a noisy bus) and answers again has its silent
slots read back the same way: a late actual read replaces VEE's estimate of the gap.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta

from collector.acquisition.clock import Clock, align_down, align_up
from collector.acquisition.pipeline import (
    MAX_MEMORY_INTERVAL,
    CollectionResult,
    record_readings,
)
from collector.config.settings import Schedule, Settings
from collector.ops.metrics import Metrics
from model import CollectionAttempt, Meter, Outcome
from protocols.dlt645 import data_ids
from protocols.dlt645.client import Dlt645Client
from protocols.errors import ProtocolError, ResponseTimeout
from storage.base import Store

log = logging.getLogger(__name__)


def memory_schedules(settings: Settings) -> list[Schedule]:
    """Interval schedules whose quantities a meter's load profile keeps."""
    return [s for s in settings.schedules
            if s.at is None and s.every <= MAX_MEMORY_INTERVAL
            and set(s.quantities) & set(data_ids.LOAD_PROFILE_OBIS)]


def missed_slots(last: datetime, now: datetime, every: timedelta,
                 horizon: timedelta) -> list[datetime]:
    """Slots after the last attempt, up to now, no further back than the horizon."""
    first = align_up(max(last, now - horizon) + timedelta(microseconds=1), every)
    end = align_down(now, every)
    slots = []
    while first <= end:
        slots.append(first)
        first += every
    return slots


async def catch_up(settings: Settings, meters: Sequence[Meter], store: Store, clock: Clock,
                   client_for: Callable[[Meter], Dlt645Client | None],
                   persist: Callable[[CollectionResult], Awaitable[None]],
                   metrics: Metrics | None = None) -> int:
    """Recover what was missed; returns how many slots were filled from memory."""
    metrics = metrics or Metrics()
    schedules = memory_schedules(settings)
    if not schedules:
        return 0
    now = clock.now()
    last = await store.last_attempts([m.id for m in meters])
    if not last:
        return 0  # a first start: the daemon has missed nothing yet
    by_bus: dict[str, list[tuple[Meter, Schedule, list[datetime]]]] = {}
    for meter in meters:
        for schedule in schedules:
            if schedule.applies_to(meter.id):
                # A meter with no attempt of its own was due with the others and never
                # reached: a kill early in the first slot leaves the meters later on the
                # bus unread. Its slots are missed from the earliest slot the others'
                # last attempts show the daemon was in.
                since = last.get(meter.id) or min(last.values()) - schedule.every
                slots = missed_slots(since, now, schedule.every, settings.collector.catch_up)
                if slots:
                    by_bus.setdefault(meter.bus, []).append((meter, schedule, slots))
    if not by_bus:
        return 0
    total = sum(len(s) for jobs in by_bus.values() for _, _, s in jobs)
    log.info("catching up %d missed slots on %d buses from meter memory", total, len(by_bus))

    async def bus(jobs: list[tuple[Meter, Schedule, list[datetime]]]) -> int:
        recovered = 0
        for meter, schedule, slots in jobs:
            results = await _recover(settings, meter, schedule, slots, client_for(meter))
            for result in results:
                await persist(result)
                if result.readings:
                    recovered += 1
                    metrics.recovered.labels(meter.bus).inc()
        return recovered

    counts = await asyncio.gather(*(bus(jobs) for jobs in by_bus.values()))
    log.info("catch-up done: %d of %d missed slots recovered from meter memory",
             sum(counts), total)
    return sum(counts)


async def backfill(settings: Settings, meter: Meter, since: datetime, until: datetime,
                   client: Dlt645Client | None,
                   persist: Callable[[CollectionResult], Awaitable[None]],
                   metrics: Metrics | None = None) -> int:
    """Read back the slots from `since` up to `until` that a silent meter missed; returns
    how many were recovered. Slots it stays silent for keep their timeout attempts."""
    if meter.protocol != "dlt645" or client is None:
        return 0
    recovered = 0
    for schedule in memory_schedules(settings):
        if not schedule.applies_to(meter.id):
            continue
        slots = missed_slots(since - timedelta(microseconds=1), until - schedule.every,
                             schedule.every, settings.collector.catch_up or until - since)
        if not slots:
            continue
        for result in await _recover(settings, meter, schedule, slots, client, SILENT):
            if result.readings:
                await persist(result)
                recovered += 1
                if metrics is not None:
                    metrics.recovered.labels(meter.bus).inc()
    if recovered:
        log.info("meter %s: %d silent slots read back from its memory", meter.id, recovered,
                 extra={"meter": meter.id, "bus": meter.bus})
    return recovered


DOWN = ("missed while the collector was down", "recovered from meter memory after downtime")
SILENT = ("missed while the meter was silent",
          "recovered from meter memory after the meter's silence")
"""Why a slot was missed, and what its attempt says once it is recovered."""


async def _recover(settings: Settings, meter: Meter, schedule: Schedule,
                   slots: list[datetime], client: Dlt645Client | None,
                   why: tuple[str, str] = DOWN
                   ) -> list[CollectionResult]:
    def empty(slot: datetime, outcome: Outcome, why: str) -> CollectionResult:
        result = CollectionResult(meter, slot, errors=[why])
        result.attempt = CollectionAttempt(meter.id, meter.bus, slot, outcome, 0.0, why[:500],
                                           settings.collector.gateway)
        return result

    def missed(outcome: Outcome, why: str) -> list[CollectionResult]:
        return [empty(slot, outcome, why) for slot in slots]

    if meter.protocol != "dlt645" or client is None:
        return missed(Outcome.ERROR, f"{why[0]}: this meter keeps no load profile to read back")
    tz = settings.collector.tz
    started = time.monotonic()
    try:
        records = await client.read_load_profile(meter.address, slots[0], slots[-1],
                                                 schedule.every, tz)
    except ProtocolError as exc:
        outcome = Outcome.TIMEOUT if isinstance(exc, ResponseTimeout) else Outcome.ERROR
        exc.with_context(meter=meter.id, bus=meter.bus)
        log.warning("meter %s: reading its memory for %d missed slots failed: %s", meter.id,
                    len(slots), exc, extra={"meter": meter.id, "bus": meter.bus})
        return missed(outcome, f"{why[0]}; reading the meter's memory failed: {exc}")
    latency = (time.monotonic() - started) * 1000 / max(1, len(slots))
    wanted = set(schedule.quantities)
    by_slot = {r.ts.astimezone(UTC): r for r in records}
    results = []
    for slot in slots:
        record = by_slot.get(slot)
        if record is None:
            results.append(empty(slot, Outcome.ERROR, f"{why[0]}, and not in the meter's memory"))
            continue
        result = CollectionResult(meter, slot,
                                  readings=record_readings(meter, slot, record, wanted, "memory"))
        result.attempt = CollectionAttempt(
            meter.id, meter.bus, slot, Outcome.OK, latency,
            why[1], settings.collector.gateway)
        results.append(result)
    return results
