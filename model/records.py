"""The one data model that travels from the wire to the database.

This module is a leaf: protocols, storage and the simulator import it, and it imports
nothing from them, so every layer agrees on what a reading is without depending on
each other.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


class Quality(enum.StrEnum):
    """NEM12-style quality flags; billing needs to know how trustworthy each value is."""

    ACTUAL = "A"
    ESTIMATED = "E"
    FINAL_SUBSTITUTED = "F"
    SUBSTITUTED = "S"
    NULL = "N"
    VARIABLE = "V"

    @property
    def rank(self) -> int:
        """Precedence when two values compete for one key: an actual beats any estimate."""
        return _QUALITY_RANK[self]


_QUALITY_RANK = {
    Quality.ACTUAL: 3,
    Quality.FINAL_SUBSTITUTED: 2,
    Quality.SUBSTITUTED: 2,
    Quality.ESTIMATED: 1,
    Quality.VARIABLE: 1,
    Quality.NULL: 0,
}


class ReadKind(enum.StrEnum):
    """What a value is, which decides how VEE and billing may use it.

    The same register read at the same instant means different things: a value taken on
    the collection schedule (or recovered from the meter's load profile) belongs to the
    interval series; a technician's or an on-demand read is a one-off; a frozen value is
    what the meter itself latched at its day or month boundary, the billing reference.
    """

    INTERVAL = "interval"
    INSTANT = "instant"
    FROZEN_DAILY = "daily"
    FROZEN_MONTHLY = "monthly"


class Outcome(enum.StrEnum):
    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"


def require_utc(ts: datetime, what: str) -> None:
    """Naive or local timestamps are the classic source of DST-day double counting."""
    if ts.tzinfo is UTC:  # almost every reading: skip the utcoffset() call
        return
    offset = ts.utcoffset()
    if offset is None or offset != timedelta(0):
        raise ValueError(f"{what} must be timezone-aware UTC, got {ts!r}")


@dataclass(frozen=True, slots=True)
class Meter:
    id: str
    protocol: str
    bus: str
    address: str
    model: str = ""
    multiplier: float = 1.0
    area: str = ""
    exporter: bool = False
    gateway: str = ""
    is_area_meter: bool = False
    phases: int = 1


@dataclass(frozen=True, slots=True)
class Reading:
    """One value of one quantity (an OBIS code) at one instant.

    For interval data `ts` is the end of the interval. `(meter_id, quantity, kind)` names
    a series and `(series, ts)` is the idempotency key every writer uses.
    """

    meter_id: str
    quantity: str
    ts: datetime
    value: float
    unit: str
    quality: Quality = Quality.ACTUAL
    source: str = ""
    method: str = ""
    kind: ReadKind = ReadKind.INTERVAL

    def __post_init__(self) -> None:
        require_utc(self.ts, "Reading.ts")
        if not math.isfinite(self.value):
            raise ValueError(f"Reading.value must be finite, got {self.value!r}")

    @property
    def key(self) -> tuple[str, str, ReadKind, datetime]:
        return (self.meter_id, self.quantity, self.kind, self.ts)


@dataclass(frozen=True, slots=True)
class Event:
    meter_id: str
    ts: datetime
    kind: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require_utc(self.ts, "Event.ts")


@dataclass(frozen=True, slots=True)
class CollectionAttempt:
    meter_id: str
    bus: str
    ts: datetime
    outcome: Outcome
    latency_ms: float
    error: str = ""
    gateway: str = ""

    def __post_init__(self) -> None:
        require_utc(self.ts, "CollectionAttempt.ts")


@dataclass(frozen=True, slots=True)
class Flag:
    """A finding about a meter or an area, kept open until someone clears it."""

    subject: str
    kind: str
    severity: str
    start: datetime
    end: datetime
    evidence: dict[str, Any] = field(default_factory=dict)
    area: str = ""

    def __post_init__(self) -> None:
        require_utc(self.start, "Flag.start")
        require_utc(self.end, "Flag.end")


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What a write did, so replays can be shown to be harmless."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    buffered: int = 0
    """Accepted for later delivery (database unreachable); not yet new/updated/unchanged."""

    def __add__(self, other: IngestResult) -> IngestResult:
        return IngestResult(
            self.new + other.new,
            self.updated + other.updated,
            self.unchanged + other.unchanged,
            self.buffered + other.buffered,
        )

    @property
    def total(self) -> int:
        return self.new + self.updated + self.unchanged + self.buffered
