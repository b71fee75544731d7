"""Validated reads: the versions VEE writes beside a raw read, its verdicts, and the
service points billing bills.

A raw read is version 0 and is never changed by VEE; an estimate, a substitute or a
person's edit is a later version of the same key. Collection is by meter, billing by
service point, and a service point's meters come and go (meter replacement), so the
assignment of a meter to a service point carries its own dates, multiplier and the
register reads at the swap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from model.records import Quality, ReadKind, require_utc

AUTOMATIC = "vee:"
"""Actors whose name starts with this are VEE's own rules, not a person or an import:
only their versions give way to a late actual read."""


@dataclass(frozen=True, slots=True)
class ValueVersion:
    """One version of one value. `value` is None for a null (N) version: no estimate
    was possible, and a billing system must not read that as zero."""

    meter_id: str
    quantity: str
    ts: datetime
    value: float | None
    quality: Quality
    method: str = ""
    reason: str = ""
    actor: str = ""
    note: str = ""
    unit: str = "kWh"
    kind: ReadKind = ReadKind.INTERVAL
    version: int = 0
    """0 is the raw read; a store assigns the next number when it writes a new version."""
    created_at: datetime | None = None

    def __post_init__(self) -> None:
        require_utc(self.ts, "ValueVersion.ts")
        if (self.value is None) != (self.quality is Quality.NULL):
            raise ValueError("a null version has no value and only a null version has none")

    @property
    def automatic(self) -> bool:
        return self.actor.startswith(AUTOMATIC)

    def same_value(self, other: ValueVersion) -> bool:
        """Whether writing `other` over this would change what a reader sees."""
        if (self.value is None) != (other.value is None):
            return False
        close = (self.value is None or other.value is None
                 or abs(self.value - other.value) <= 1e-9 * max(1.0, abs(self.value)))
        return close and self.quality is other.quality and self.method == other.method


@dataclass(frozen=True, slots=True)
class Verdict:
    """One rule's judgement of one meter's local day."""

    meter_id: str
    day: date
    rule: str
    passed: bool
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServicePoint:
    """The customer's connection: what billing bills, whichever meter is on it."""

    id: str
    account: str = ""
    tariff: str = ""
    segment: str = ""
    area: str = ""


@dataclass(frozen=True, slots=True)
class MeterAssignment:
    """A meter on a service point from `start` to `end` (None: open-ended).

    `start_read` and `final_read` are the register reads at installation and removal,
    recorded by the technician who did the swap; `multiplier` is the CT × VT ratio."""

    service_point_id: str
    meter_id: str
    start: datetime | None = None
    end: datetime | None = None
    multiplier: float = 1.0
    start_read: float | None = None
    final_read: float | None = None

    def __post_init__(self) -> None:
        for ts, what in ((self.start, "start"), (self.end, "end")):
            if ts is not None:
                require_utc(ts, f"MeterAssignment.{what}")

    def covers(self, ts: datetime) -> bool:
        return (self.start is None or ts >= self.start) and (self.end is None or ts <= self.end)
