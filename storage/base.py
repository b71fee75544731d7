"""The one small interface every store implements, so collectors never know which is behind it."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from model import (
    CollectionAttempt,
    Event,
    Flag,
    IngestResult,
    Meter,
    Quality,
    Reading,
    ReadKind,
)


class StorageError(Exception):
    """Root of storage failures; a transient one means 'retry later, nothing was written'."""

    transient: bool = False


class StorageUnavailable(StorageError):
    transient = True


@dataclass(frozen=True, slots=True)
class CollectionRow:
    """Collection success for one group (a meter, bus, gateway or area) on one day."""

    group: str
    day: str
    attempts: int
    ok: int
    timeouts: int
    errors: int
    avg_latency_ms: float
    last_error: str

    @property
    def success_rate(self) -> float:
        return self.ok / self.attempts if self.attempts else 0.0


@dataclass(frozen=True, slots=True)
class DailyConsumption:
    subject: str
    day: str
    kwh: float


@dataclass(frozen=True, slots=True)
class FlagRow:
    id: int
    flag: Flag
    status: str
    raised_at: datetime


class Store(Protocol):
    async def migrate(self) -> list[str]: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StorageError unless the store answers a trivial query."""
        ...

    async def upsert_meters(self, meters: Sequence[Meter]) -> None: ...

    async def write_readings(self, readings: Sequence[Reading]) -> IngestResult: ...

    async def write_events(self, events: Sequence[Event]) -> int: ...

    async def write_attempts(self, attempts: Sequence[CollectionAttempt]) -> None: ...

    async def write_dead_letter(self, source: str, payload: bytes, reason: str) -> None: ...

    async def last_attempts(self, meter_ids: Sequence[str]) -> dict[str, datetime]:
        """Each meter's latest collection attempt (meters never attempted are absent)."""
        ...

    async def dead_letters(self) -> list[tuple[str, bytes, str]]: ...

    async def meters(self) -> list[Meter]: ...

    async def latest_readings(self, meter_ids: Sequence[str] | None = None) -> list[Reading]: ...

    async def series(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[Reading]: ...

    async def collection_summary(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC"
    ) -> list[CollectionRow]: ...

    async def daily_consumption(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC",
        quantity: str = "1-0:1.8.0", meter_ids: Sequence[str] | None = None,
    ) -> list[DailyConsumption]:
        """A register's growth per local day: forward active energy unless told (the
        reverse register 1-0:2.8.0 gives an exporter's generation). `meter_ids` reads
        only those meters' boundary reads: a balance over a district goes area by area."""
        ...

    async def count_readings(self) -> int: ...

    async def readings_in(
        self, start: datetime, end: datetime, quantities: Sequence[str]
    ) -> list[Reading]: ...

    async def values_in(
        self, start: datetime, end: datetime, quantities: Sequence[str],
        meter_ids: Sequence[str],
    ) -> list[tuple[str, str, str, float, float]]:
        """(meter, quantity, kind, epoch seconds, value) of these meters' raw reads,
        ordered by meter, quantity, kind and time: what a pass over a fleet's month reads
        block by block, without a Reading object (and its checks) per row."""
        ...

    async def heard_from(self, start: datetime, end: datetime) -> list[str]:
        """Every meter with a reading in [start, end], registered or not: how a pass
        that reads block by block still finds the meters nobody registered."""
        ...

    async def events_in(self, start: datetime, end: datetime) -> list[Event]: ...

    async def raise_flags(self, flags: Sequence[Flag]) -> int:
        """Insert flags that have no open flag of the same subject and kind; returns how many."""
        ...

    async def list_flags(
        self, kind: str | None = None, area: str | None = None, open_only: bool = False
    ) -> list[FlagRow]: ...

    async def clear_flag(self, flag_id: int) -> bool: ...


GROUPINGS = ("meter", "bus", "gateway", "area")


def dead_letter_digest(source: str, payload: bytes) -> str:
    """The key that keeps one dead letter per bad message, however often it is redelivered."""
    h = hashlib.sha256(source.encode("utf-8", "backslashreplace"))
    h.update(b"\0")
    h.update(payload)
    return h.hexdigest()


QUALITY_CODES: dict[Quality, int] = {
    Quality.ACTUAL: 1, Quality.ESTIMATED: 2, Quality.SUBSTITUTED: 3,
    Quality.FINAL_SUBSTITUTED: 4, Quality.NULL: 5, Quality.VARIABLE: 6,
}
"""Quality as stored: a small code per row (the `qualities` table holds the same map)."""
QUALITY_OF_CODE = {code: q for q, code in QUALITY_CODES.items()}


def quality_code_rank_sql(column: str) -> str:
    """SQL for Quality.rank over the stored code."""
    cases = " ".join(f"WHEN {QUALITY_CODES[q]} THEN {q.rank}" for q in Quality)
    return f"(CASE {column} {cases} ELSE 0 END)"


class UnitMismatch(StorageError):
    """A reading whose unit differs from its series': storing it would mix units."""

