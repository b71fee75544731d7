"""Aligned schedules → read jobs → one queue per bus; buses in parallel, meters in turn.

Results are persisted before the next job on that bus starts, so a crash loses at most
the read in flight, and a restart re-reads into the same (meter, quantity, slot) keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from collector.acquisition.clock import Clock, align_up
from collector.acquisition.pipeline import CollectionResult, MeterReader
from collector.config.settings import Schedule
from collector.ops.metrics import Metrics
from model import CollectionAttempt, Meter, Outcome
from storage.base import StorageError, Store

log = logging.getLogger(__name__)

Backfill = Callable[[Meter, datetime, datetime], Awaitable[object]]
"""Read back a meter's slots from `since` up to (not including) `until` from its memory."""


@dataclass(frozen=True, slots=True)
class Job:
    meter: Meter
    schedule: Schedule
    slot: datetime


@dataclass
class MeterStats:
    ok: int = 0
    timeouts: int = 0
    errors: int = 0
    last_error: str = ""

    @property
    def attempts(self) -> int:
        return self.ok + self.timeouts + self.errors


@dataclass
class MeterHealth:
    """Consecutive silence, so a dead meter stops eating its bus's time budget.

    On a 2400-baud bus one silent meter costs its full timeout and retries every slot;
    after a few misses we probe it with growing gaps (capped) instead of every slot.
    """

    silent_in_a_row: int = 0
    skip_until: datetime | None = None
    silent_at: datetime | None = None
    """The slot in which the meter last timed out: its other jobs of that slot are skipped."""
    silent_since: datetime | None = None
    """The first slot of the current silence."""

    def note(self, outcome: Outcome, slot: datetime, every: timedelta) -> datetime | None:
        """Count the outcome; when it ends a silence, return the silence's first slot."""
        if outcome is not Outcome.TIMEOUT:
            since = self.silent_since if self.silent_in_a_row else None
            self.silent_in_a_row = 0
            self.skip_until = None
            self.silent_since = None
            return since
        if not self.silent_in_a_row:
            self.silent_since = slot
        self.silent_at = slot
        self.silent_in_a_row += 1
        if self.silent_in_a_row >= SILENT_BEFORE_BACKOFF:
            # Doubled up to the cap, never formed as every × 2**n: after a day or two of
            # silence that product overflows timedelta, and the backoff itself would fail.
            cap = max(every, MAX_PROBE_GAP)
            gap, doublings = every, self.silent_in_a_row - SILENT_BEFORE_BACKOFF
            while doublings and gap < cap:
                gap, doublings = gap * 2, doublings - 1
            self.skip_until = slot + min(gap, cap)
        return None


SILENT_BEFORE_BACKOFF = 3
MAX_PROBE_GAP = timedelta(hours=1)


@dataclass
class RunStats:
    meters: dict[str, MeterStats] = field(default_factory=dict)
    readings: int = 0
    new: int = 0
    overruns: int = 0
    storage_errors: Counter[str] = field(default_factory=Counter)

    def record(self, result: CollectionResult) -> None:
        assert result.attempt is not None
        stats = self.meters.setdefault(result.meter.id, MeterStats())
        if result.attempt.outcome is Outcome.OK:
            stats.ok += 1
        elif result.attempt.outcome is Outcome.TIMEOUT:
            stats.timeouts += 1
        else:
            stats.errors += 1
        if result.attempt.error:
            stats.last_error = result.attempt.error
        self.readings += len(result.readings)


def next_slot(schedule: Schedule, after: datetime, tz: ZoneInfo) -> datetime:
    """The first slot strictly after `after`; daily `at` slots follow local midnight (DST-safe)."""
    if schedule.at is None:
        slot = align_up(after, schedule.every)
        return slot if slot > after else slot + schedule.every
    local = after.astimezone(tz)
    day = local.date()
    while True:
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        candidate = (midnight + schedule.at).astimezone(after.tzinfo)
        if candidate > after:
            return candidate
        day += timedelta(days=1)


class Scheduler:
    def __init__(
        self,
        *,
        meters: Sequence[Meter],
        schedules: Sequence[Schedule],
        readers: Mapping[str, MeterReader],
        store: Store,
        clock: Clock,
        tz: ZoneInfo,
        stats: RunStats | None = None,
        on_result: Callable[[CollectionResult], None] | None = None,
        workers: Mapping[str, int] | None = None,
        metrics: Metrics | None = None,
        backfill: Backfill | None = None,
        gateway: str = "",
    ) -> None:
        """`readers` has one entry per lane: a serial bus (one worker: one request on the
        wire at a time) or a TCP host (`workers[lane]` requests in flight). `backfill`
        reads back from a meter's memory the slots it was silent for, once it answers.
        `gateway` goes on the attempts the scheduler records itself (a read skipped), as
        the readers put it on theirs."""
        self.gateway = gateway
        self.meters = list(meters)
        self.schedules = list(schedules)
        self.readers = readers
        self.store = store
        self.clock = clock
        self.tz = tz
        self.stats = stats or RunStats()
        self.metrics = metrics or Metrics()
        self.on_result = on_result
        self.queues: dict[str, asyncio.Queue[Job | None]] = {
            bus: asyncio.Queue() for bus in readers
        }
        self.workers = {lane: max(1, (workers or {}).get(lane, 1)) for lane in readers}
        self.health: dict[str, MeterHealth] = {}
        self.backfill = backfill
        self._backfills: set[asyncio.Task[None]] = set()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, until: datetime | None = None) -> RunStats:
        """Run until stop() or, on a simulated clock, until `until`; then drain in-flight work."""
        producers = [asyncio.create_task(self._produce(s, until)) for s in self.schedules]
        workers = [
            asyncio.create_task(self._work(lane))
            for lane in self.queues
            for _ in range(self.workers[lane])
        ]
        stop_wait = asyncio.create_task(self._stopping.wait())
        await asyncio.wait([stop_wait, *producers], return_when=asyncio.FIRST_COMPLETED)
        if not self._stopping.is_set():
            # Every producer finished (reached `until`): let the queued jobs complete.
            await asyncio.gather(*producers)
            for queue in self.queues.values():
                await queue.join()
            await asyncio.gather(*self._backfills, return_exceptions=True)
        for task in producers:
            task.cancel()
        self._stopping.set()
        for lane, queue in self.queues.items():
            for _ in range(self.workers[lane]):
                queue.put_nowait(None)
        await asyncio.gather(*workers, return_exceptions=True)
        for task in self._backfills:
            task.cancel()
        await asyncio.gather(*self._backfills, return_exceptions=True)
        stop_wait.cancel()
        await asyncio.gather(*producers, stop_wait, return_exceptions=True)
        return self.stats

    async def _produce(self, schedule: Schedule, until: datetime | None) -> None:
        targets = [m for m in self.meters if schedule.applies_to(m.id) and m.bus in self.queues]
        slot = next_slot(schedule, self.clock.now(), self.tz)
        while not self._stopping.is_set():
            if until is not None and slot > until:
                return
            await self.clock.sleep_until(slot)
            if self._stopping.is_set():
                return
            for meter in targets:
                self.clock.hold()  # released when the job is done: see SteppedClock
                self.queues[meter.bus].put_nowait(Job(meter, schedule, slot))
            slot = next_slot(schedule, slot, self.tz)

    async def _work(self, bus: str) -> None:
        queue = self.queues[bus]
        reader = self.readers[bus]
        while True:
            job = await queue.get()
            try:
                if job is None:
                    return
                if self._stopping.is_set():
                    continue
                await self._run_job(reader, job)
            except Exception:
                # A worker that died would leave every other meter on its lane unread.
                self.metrics.task_failures.labels(f"bus {bus}").inc()
                log.exception("bus %s: the job for meter %s failed; the bus goes on", bus,
                              job.meter.id if job else "?", extra={"bus": bus})
            finally:
                if job is not None:
                    self.clock.release()
                queue.task_done()

    async def _run_job(self, reader: MeterReader, job: Job) -> None:
        late = self.clock.now() - job.slot
        health = self.health.setdefault(job.meter.id, MeterHealth())
        if health.skip_until is not None and job.slot < health.skip_until:
            result = CollectionResult(job.meter, job.slot)
            result.attempt = CollectionAttempt(
                job.meter.id, job.meter.bus, job.slot, Outcome.TIMEOUT, 0.0,
                f"not polled: silent {health.silent_in_a_row} times in a row, "
                f"next probe at {health.skip_until:%Y-%m-%d %H:%M} UTC", self.gateway,
            )
        elif health.silent_at == job.slot:
            result = CollectionResult(job.meter, job.slot)
            result.attempt = CollectionAttempt(
                job.meter.id, job.meter.bus, job.slot, Outcome.TIMEOUT, 0.0,
                "not polled: silent earlier in this cycle", self.gateway)
        elif late > job.schedule.every:
            # The bus cannot keep up; a value stamped at a slot it was not read near
            # would be a lie, so record the miss instead.
            self.stats.overruns += 1
            self.metrics.overruns.labels(job.meter.bus).inc()
            result = CollectionResult(job.meter, job.slot, errors=["bus overrun: read skipped"])
            result.attempt = CollectionAttempt(
                job.meter.id, job.meter.bus, job.slot, Outcome.ERROR, 0.0,
                f"bus overrun: {late.total_seconds():.0f} s late", self.gateway,
            )
        else:
            result = await reader.collect(job.meter, job.schedule, job.slot)
            assert result.attempt is not None
            since = health.note(result.attempt.outcome, job.slot, job.schedule.every)
            if since is not None and self.backfill is not None:
                self._start_backfill(job.meter, since, job.slot)
            self.metrics.read_latency.labels(job.meter.bus).observe(
                result.attempt.latency_ms / 1000)
        await self.persist(result)
        self.stats.record(result)
        assert result.attempt is not None
        self.metrics.reads.labels(job.meter.bus, result.attempt.outcome.value).inc()
        if result.readings:
            self.metrics.last_cycle.set(time.time())
        if self.on_result is not None:
            self.on_result(result)

    def _start_backfill(self, meter: Meter, since: datetime, until: datetime) -> None:
        """Beside the schedule, not in it: the bus lock interleaves the memory reads with
        the current slot's, so a long silence never holds up the bus."""
        assert self.backfill is not None
        self.clock.hold()  # simulated time waits for the memory read, as for a slot
        work = self.backfill(meter, since, until)

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("meter %s: reading back its silent slots failed", meter.id,
                              extra={"meter": meter.id, "bus": meter.bus})
            finally:
                self.clock.release()

        task = asyncio.create_task(run())
        self._backfills.add(task)
        task.add_done_callback(self._backfills.discard)

    async def persist(self, result: CollectionResult) -> None:
        """Store a result whole even when its caller is cancelled mid-write: a stop cancels
        catch-up and backfills, and a result whose readings landed without its attempt
        would say a slot was read that its audit trail never saw."""
        write = asyncio.ensure_future(self._persist(result))
        try:
            await asyncio.shield(write)
        except asyncio.CancelledError:
            await write
            raise

    async def _persist(self, result: CollectionResult) -> None:
        assert result.attempt is not None
        while True:
            try:
                await self._write(result)
                return
            except StorageError as exc:
                if not exc.transient:
                    await self._write_isolating(result, exc)
                    return
                # Keep the reads in memory and retry: the bus waits rather than lose them.
                self.stats.storage_errors[type(exc).__name__] += 1
                log.error("storage failed for meter %s: %s; retrying", result.meter.id, exc,
                          extra={"meter": result.meter.id, "bus": result.meter.bus})
                if self._stopping.is_set():
                    raise
                await asyncio.sleep(1.0)

    async def _write(self, result: CollectionResult) -> None:
        assert result.attempt is not None
        if result.readings:
            ingest = await self.store.write_readings(result.readings)
            self.stats.new += ingest.new
            self.metrics.ingest_rows.labels("collection").inc(len(result.readings))
        if result.events:
            await self.store.write_events(result.events)
        await self.store.write_attempts([result.attempt])

    async def _write_isolating(self, result: CollectionResult, first: StorageError) -> None:
        """Storage refused part of this result for what it holds: store it row by row so
        one bad value costs that value, and say which in the attempt."""
        assert result.attempt is not None
        self.stats.storage_errors[type(first).__name__] += 1
        refused: list[str] = []
        for reading in result.readings:
            try:
                self.stats.new += (await self.store.write_readings([reading])).new
            except StorageError as exc:
                if exc.transient:
                    raise
                refused.append(f"{reading.quantity}: {exc}")
        for event in result.events:
            try:
                await self.store.write_events([event])
            except StorageError as exc:
                if exc.transient:
                    raise
                refused.append(f"event {event.kind}: {exc}")
        attempt = result.attempt
        if refused:
            note = f"storage refused {len(refused)} row(s): {'; '.join(refused)}"
            log.error("meter %s: %s", result.meter.id, note,
                      extra={"meter": result.meter.id, "bus": result.meter.bus})
            attempt = replace(attempt, error="; ".join(filter(None, [attempt.error, note]))[:500])
            result.attempt = attempt
        try:
            await self.store.write_attempts([attempt])
        except StorageError as exc:
            if exc.transient:
                raise
            log.error("meter %s: the collection attempt could not be stored: %s",
                      result.meter.id, exc, extra={"meter": result.meter.id})
