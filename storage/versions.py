"""What both stores agree on for versions, service points and replacements.

The precedence rules live here once, as plain Python over the rows a store has just
read inside its write transaction, so SQLite and PostgreSQL cannot drift apart on them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Protocol

from model import (
    MeterAssignment,
    Quality,
    ReadKind,
    ServicePoint,
    ValueVersion,
    Verdict,
)
from storage.arrays import CurrentArrays
from storage.base import StorageError

VERSIONS_LOCK = 0x76656521  # 'vee!': version writers exclusive, ingest shared
LATE_READ_ACTOR = "ingest"
LATE_READ_REASON = "0"
LATE_READ_NOTE = "a late actual read replaces the estimate"

Key = tuple[str, str, str, datetime]


class Refused(StorageError):
    """A write that would break a rule (an overlapping replacement, an edit without a
    reason); nothing was written."""


def evidence_text(v: Verdict) -> str:
    """A verdict's evidence as both stores keep it: sorted-key JSON, and '{}' without
    json.dumps for the empty evidence of nearly every verdict (700,000 a district day)."""
    return json.dumps(v.evidence, sort_keys=True) if v.evidence else "{}"


def key_of(v: ValueVersion) -> Key:
    return (v.meter_id, v.quantity, str(v.kind), v.ts)


def plan_versions(tops: dict[Key, ValueVersion],
                  proposed: Sequence[ValueVersion]) -> list[ValueVersion]:
    """The versions to write, numbered, given each key's current top version.

    - writing what is already current writes nothing (a rerun is harmless);
    - VEE's own estimates never go over an actual read or over a person's edit;
    - anything else becomes the next version.
    """
    tops = dict(tops)
    out: list[ValueVersion] = []
    for p in proposed:
        if not p.reason:
            raise Refused(f"a version of {p.meter_id} {p.quantity} at {p.ts:%Y-%m-%d %H:%M} "
                          "has no reason code; every change must say why")
        if not p.actor:
            raise Refused("a version must say who or what made it (actor)")
        key = key_of(p)
        top = tops.get(key)
        if top is not None:
            if top.same_value(p):
                continue
            if p.automatic and (top.quality is Quality.ACTUAL
                                or (top.version > 0 and not top.automatic)):
                continue
        version = (top.version + 1) if top is not None else 1
        new = ValueVersion(p.meter_id, p.quantity, p.ts, p.value, p.quality, p.method,
                           p.reason, p.actor, p.note, p.unit, p.kind, version, p.created_at)
        tops[key] = new
        out.append(new)
    return out


def check_replacement(
    known: Iterable[str], old: str, new: str, at: datetime, old_final: float,
    new_start: float, multiplier: float | None, old_assignment: MeterAssignment | None,
    new_assignments: Sequence[MeterAssignment], old_last_read: float | None,
) -> None:
    """Refuse a replacement that cannot be true, naming what is wrong."""
    meters = set(known)
    for meter in (old, new):
        if meter not in meters:
            raise Refused(f"meter {meter!r} is unknown; add it to collector.toml "
                          "(or let it report once) before recording a replacement")
    if old == new and (multiplier is None or old_assignment is None
                       or multiplier == old_assignment.multiplier):
        raise Refused("a meter cannot replace itself; to record a CT/VT ratio change on the "
                      "same meter, give its new --multiplier")
    if multiplier is not None and multiplier <= 0:
        raise Refused(f"multiplier must be positive, got {multiplier}")
    if old_assignment is None:
        raise Refused(f"meter {old} is not on any service point at {at.isoformat()}: "
                      "it was already replaced or removed")
    if old_assignment.start is not None and at <= old_assignment.start:
        raise Refused(f"the replacement at {at.isoformat()} is not after meter {old} was "
                      f"installed ({old_assignment.start.isoformat()})")
    if old_assignment.start_read is not None and old_final < old_assignment.start_read:
        raise Refused(f"old final read {old_final} is lower than meter {old}'s start read "
                      f"{old_assignment.start_read}: check the reading")
    if old_last_read is not None and old_final < old_last_read:
        raise Refused(f"old final read {old_final} is lower than meter {old}'s last read "
                      f"before the swap ({old_last_read}): check the reading")
    if new_start < 0:
        raise Refused(f"new start read must not be negative, got {new_start}")
    for a in new_assignments:
        if old != new and (a.end is None or a.end > at):
            raise Refused(f"meter {new} is already on service point {a.service_point_id} "
                          f"from {a.start.isoformat() if a.start else 'the start'}; "
                          "the replacement would overlap it")


class ValidatedStore(Protocol):
    """What VEE, billing and the API need beyond the collector's Store."""

    async def current_values(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        """Each key's current (highest) version, ordered by meter and time."""
        ...

    async def current_arrays(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> CurrentArrays:
        """The same values as columns, for the bulk readers (a cycle, a VEE pass)."""
        ...

    async def value_history(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        """Every version of every key, raw first, ordered by time and version."""
        ...

    async def write_versions(self, versions: Sequence[ValueVersion]) -> int:
        """Write those that change something; returns how many were written."""
        ...

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> None: ...

    async def verdicts(self, first: date, last: date,
                       meter_ids: Sequence[str] | None = None) -> list[Verdict]: ...

    async def upsert_service_points(self, points: Sequence[ServicePoint],
                                    assignments: Sequence[MeterAssignment] = ()) -> None:
        """Create or update service points; an assignment is added only if its meter
        has none yet (the starting layout; later changes go through replacements)."""
        ...

    async def service_points(self) -> list[ServicePoint]: ...

    async def assignments(self, service_point_id: str | None = None,
                          meter_id: str | None = None) -> list[MeterAssignment]: ...

    async def record_replacement(
        self, old: str, new: str, at: datetime, old_final: float, new_start: float,
        multiplier: float | None = None,
    ) -> MeterAssignment:
        """Close the old meter's assignment and open the new one's, or refuse."""
        ...


def version_row(meter_id: str, quantity: str, kind: str, unit: str, ts: datetime,
                version: int, value: float | None, quality: Quality, method: str,
                reason: str, actor: str, note: str,
                created_at: datetime | None) -> ValueVersion:
    """A stored row as a ValueVersion; a null version's value is None whatever was kept."""
    return ValueVersion(meter_id, quantity, ts, None if quality is Quality.NULL else value,
                        quality, method, reason, actor, note, unit, ReadKind(kind), version,
                        created_at)
