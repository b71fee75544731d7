"""Keep writing while the database is down: queue in bounded memory, spill to SQLite, replay.

The collector must never stop reading meters because the head-end database restarted.
Writes that fail transiently are kept in order, first in memory and beyond a bound in a
local SQLite file, and a background task replays them with backoff once the database
answers. Every write is idempotent, so a batch that was committed just before the
connection dropped and is replayed afterwards changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from model import (
    CollectionAttempt,
    Event,
    Flag,
    IngestResult,
    Meter,
    Reading,
    ReadKind,
    codec_json,
)
from storage.base import CollectionRow, DailyConsumption, FlagRow, StorageError, Store
from storage.meter_commands import MeterCommand

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Batch:
    kind: str  # readings | attempts | events | dead_letter
    items: list[dict[str, Any]]

    @property
    def rows(self) -> int:
        return len(self.items)


class _Spill:
    """FIFO of batches in a SQLite file; survives a restart of the process."""

    def __init__(self, path: str) -> None:
        from storage.sqlite import create_private

        try:
            create_private(path)
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open the spill file {path}: {exc}") from exc
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS spill (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, "
            "rows INTEGER NOT NULL, payload TEXT NOT NULL)"
        )
        # Known without a query, so a healthy write path never touches the spill file.
        self.batches = int(self.db.execute("SELECT count(*) FROM spill").fetchone()[0])

    def push(self, batch: _Batch) -> None:
        self.db.execute("INSERT INTO spill (kind, rows, payload) VALUES (?, ?, ?)",
                        (batch.kind, batch.rows, json.dumps(batch.items)))
        self.batches += 1

    def head(self) -> tuple[int, _Batch] | None:
        row = self.db.execute("SELECT id, kind, payload FROM spill ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return int(row[0]), _Batch(row[1], json.loads(row[2]))

    def pop(self, batch_id: int) -> None:
        self.batches -= self.db.execute("DELETE FROM spill WHERE id = ?", (batch_id,)).rowcount

    def rows(self) -> int:
        return int(self.db.execute("SELECT coalesce(sum(rows), 0) FROM spill").fetchone()[0])

    def close(self) -> None:
        self.db.close()


class BufferedStore:
    def __init__(
        self,
        inner: Store,
        spill_path: str,
        *,
        max_memory_rows: int = 100_000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        self.inner = inner
        self.spill = _Spill(spill_path)
        self.max_memory_rows = max_memory_rows
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._memory: deque[_Batch] = deque()
        self._memory_rows = 0
        self._flusher: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self.replayed_rows = 0

    # --- the queue ---------------------------------------------------------------------

    @property
    def pending_rows(self) -> int:
        return self._memory_rows + self.spill.rows()

    def _has_pending(self) -> bool:
        return bool(self._memory) or self.spill.batches > 0

    def _enqueue(self, batch: _Batch) -> None:
        self._memory.append(batch)
        self._memory_rows += batch.rows
        while self._memory_rows > self.max_memory_rows and self._memory:
            oldest = self._memory.popleft()
            self._memory_rows -= oldest.rows
            self.spill.push(oldest)
        self._idle.clear()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="storage replay")

    async def _deliver(self, batch: _Batch) -> None:
        if batch.kind == "readings":
            await self.inner.write_readings([codec_json.reading_from_json(d) for d in batch.items])
        elif batch.kind == "attempts":
            await self.inner.write_attempts([codec_json.attempt_from_json(d) for d in batch.items])
        elif batch.kind == "events":
            await self.inner.write_events([codec_json.event_from_json(d) for d in batch.items])
        else:
            for d in batch.items:
                await self.inner.write_dead_letter(d["source"], bytes.fromhex(d["payload"]),
                                                   d["reason"])

    async def _flush_loop(self) -> None:
        delay = self.retry_initial_s
        while True:
            spilled = self.spill.head()
            batch = spilled[1] if spilled else (self._memory[0] if self._memory else None)
            if batch is None:
                self._idle.set()
                return
            try:
                await self._deliver(batch)
            except StorageError as exc:
                if not exc.transient and await self._dead_letter(batch, exc):
                    self._pop(spilled, batch)
                    continue
                log.warning("database still unavailable (%s); %d rows waiting", exc,
                            self.pending_rows)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            delay = self.retry_initial_s
            self.replayed_rows += batch.rows
            self._pop(spilled, batch)

    def _pop(self, spilled: tuple[int, _Batch] | None, batch: _Batch) -> None:
        if spilled:
            self.spill.pop(spilled[0])
        else:
            self._memory.popleft()
            self._memory_rows -= batch.rows

    async def _dead_letter(self, batch: _Batch, exc: StorageError) -> bool:
        """A batch the database refuses for good is kept as a dead letter, not retried forever."""
        payload = json.dumps({"kind": batch.kind, "items": batch.items}).encode()
        try:
            await self.inner.write_dead_letter(f"replay:{batch.kind}", payload, str(exc))
        except StorageError:
            return False
        log.error("replayed %s batch refused (%s); kept in dead_letters", batch.kind, exc)
        return True

    async def drain(self, within_s: float | None = None) -> bool:
        """Wait until everything queued has reached the database; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), within_s)
        except TimeoutError:
            return False
        return True

    async def _write(self, kind: str, items: list[dict[str, Any]], write: Any) -> bool:
        """True when written now; False when queued for replay."""
        if not self._has_pending():
            try:
                await write()
                return True
            except StorageError as exc:
                if not exc.transient:
                    raise
                log.warning("database unavailable, buffering: %s", exc)
        self._enqueue(_Batch(kind, items))
        return False

    # --- Store: writes -----------------------------------------------------------------

    async def write_readings(self, readings: Sequence[Reading]) -> IngestResult:
        result: list[IngestResult] = []

        async def write() -> None:
            result.append(await self.inner.write_readings(readings))

        items = [codec_json.reading_to_json(r) for r in readings]
        if await self._write("readings", items, write):
            return result[0]
        return IngestResult(buffered=len(readings))

    async def write_attempts(self, attempts: Sequence[CollectionAttempt]) -> None:
        await self._write("attempts", [codec_json.attempt_to_json(a) for a in attempts],
                          lambda: self.inner.write_attempts(attempts))

    async def write_events(self, events: Sequence[Event]) -> int:
        written: list[int] = []

        async def write() -> None:
            written.append(await self.inner.write_events(events))

        items = [codec_json.event_to_json(e) for e in events]
        return written[0] if await self._write("events", items, write) else 0

    async def write_dead_letter(self, source: str, payload: bytes, reason: str) -> None:
        item = {"source": source, "payload": payload.hex(), "reason": reason}
        await self._write("dead_letter", [item],
                          lambda: self.inner.write_dead_letter(source, payload, reason))

    # --- Store: everything else goes straight through -----------------------------------

    async def migrate(self) -> list[str]:
        applied = await self.inner.migrate()
        if self.spill.batches:
            self._idle.clear()
            self._flusher = asyncio.create_task(self._flush_loop(), name="storage replay")
        return applied

    async def ping(self) -> None:
        await self.inner.ping()

    async def upsert_meters(self, meters: Sequence[Meter]) -> None:
        await self.inner.upsert_meters(meters)

    async def meters(self) -> list[Meter]:
        return await self.inner.meters()

    async def last_attempts(self, meter_ids: Sequence[str]) -> dict[str, datetime]:
        return await self.inner.last_attempts(meter_ids)

    async def dead_letters(self) -> list[tuple[str, bytes, str]]:
        return await self.inner.dead_letters()

    async def count_readings(self) -> int:
        return await self.inner.count_readings()

    async def readings_in(
        self, start: datetime, end: datetime, quantities: Sequence[str]
    ) -> list[Reading]:
        return await self.inner.readings_in(start, end, quantities)

    async def values_in(
        self, start: datetime, end: datetime, quantities: Sequence[str],
        meter_ids: Sequence[str],
    ) -> list[tuple[str, str, str, float, float]]:
        return await self.inner.values_in(start, end, quantities, meter_ids)

    async def heard_from(self, start: datetime, end: datetime) -> list[str]:
        return await self.inner.heard_from(start, end)

    async def events_in(self, start: datetime, end: datetime) -> list[Event]:
        return await self.inner.events_in(start, end)

    async def raise_flags(self, flags: Sequence[Flag]) -> int:
        return await self.inner.raise_flags(flags)

    async def list_flags(
        self, kind: str | None = None, area: str | None = None, open_only: bool = False
    ) -> list[FlagRow]:
        return await self.inner.list_flags(kind, area, open_only)

    async def clear_flag(self, flag_id: int) -> bool:
        return await self.inner.clear_flag(flag_id)

    async def meter_commands(self, meter_ids: Sequence[str] | None = None,
                             queued_only: bool = False, limit: int = 50) -> list[MeterCommand]:
        """Operators' queued commands: straight to the database, never spilled (a command
        that waits for an outage to end would run when nobody expects it)."""
        found: list[MeterCommand] = await self._commands().meter_commands(meter_ids,
                                                                          queued_only, limit)
        return found

    async def finish_command(self, command_id: int, ok: bool, result: str) -> None:
        await self._commands().finish_command(command_id, ok, result)

    def _commands(self) -> Any:
        """The inner store's command queue (both stores keep one; Store does not name it)."""
        return self.inner

    async def latest_readings(self, meter_ids: Sequence[str] | None = None) -> list[Reading]:
        return await self.inner.latest_readings(meter_ids)

    async def series(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[Reading]:
        return await self.inner.series(meter_id, quantity, start, end, kind)

    async def collection_summary(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC"
    ) -> list[CollectionRow]:
        return await self.inner.collection_summary(start, end, by, tz)

    async def daily_consumption(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC",
        quantity: str = "1-0:1.8.0", meter_ids: Sequence[str] | None = None,
    ) -> list[DailyConsumption]:
        return await self.inner.daily_consumption(start, end, by, tz, quantity, meter_ids)

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Try to deliver what is queued; whatever is left waits on disk for the next run."""
        if self._has_pending():
            await self.drain(drain_timeout)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        while self._memory:
            self.spill.push(self._memory.popleft())
        self._memory_rows = 0
        self.spill.close()
        await self.inner.close()
