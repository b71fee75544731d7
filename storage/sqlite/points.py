"""Service points and the meters assigned to them in SQLite, and meter replacements."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from model import (
    MeterAssignment,
    Quality,
    ServicePoint,
)
from storage.base import (
    QUALITY_CODES,
)
from storage.sqlite.connection import SqliteConnection
from storage.versions import (
    check_replacement,
)

FORWARD_ACTIVE = "1-0:1.8.0"


class SqlitePoints(SqliteConnection):
    async def upsert_service_points(self, points: Sequence[ServicePoint],
                                    assignments: Sequence[MeterAssignment] = ()) -> None:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO service_points VALUES (?,?,?,?,?) ON CONFLICT (id) DO UPDATE "
                "SET account = excluded.account, tariff = excluded.tariff, "
                "segment = excluded.segment, area = excluded.area",
                [(p.id, p.account, p.tariff, p.segment, p.area) for p in points])
            for a in assignments:
                if db.execute("SELECT 1 FROM meter_assignments WHERE meter_id = ?",
                              (a.meter_id,)).fetchone() is None:
                    db.execute(_ASSIGN, (*_assignment_row(a), now))

        await self._run(self._tx(write))

    async def service_points(self) -> list[ServicePoint]:
        def read(db: sqlite3.Connection) -> list[ServicePoint]:
            return [ServicePoint(*r) for r in db.execute(
                "SELECT id, account, tariff, segment, area FROM service_points ORDER BY id")]

        return await self._query(read)

    async def assignments(self, service_point_id: str | None = None,
                          meter_id: str | None = None) -> list[MeterAssignment]:
        def read(db: sqlite3.Connection) -> list[MeterAssignment]:
            return _assignments(db, service_point_id, meter_id)

        return await self._query(read)

    async def record_replacement(
        self, old: str, new: str, at: datetime, old_final: float, new_start: float,
        multiplier: float | None = None,
    ) -> MeterAssignment:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> MeterAssignment:
            known = {r[0] for r in db.execute("SELECT id FROM meters")}
            known |= {r[0] for r in db.execute("SELECT DISTINCT meter_id FROM series")}
            if old in known and not _assignments(db, None, old):
                db.execute("INSERT OR IGNORE INTO service_points (id) VALUES (?)", (old,))
                db.execute(_ASSIGN, (old, old, None, None, 1.0, None, None, now))
            current = [a for a in _assignments(db, None, old) if a.covers(at)]
            last = db.execute(
                "SELECT r.value FROM readings r JOIN series s ON s.id = r.series_id "
                "WHERE s.meter_id = ? AND s.quantity = ? AND r.ts <= ? AND r.quality = ? "
                "ORDER BY r.ts DESC LIMIT 1",
                (old, FORWARD_ACTIVE, at.timestamp(), QUALITY_CODES[Quality.ACTUAL])).fetchone()
            check_replacement(known, old, new, at, old_final, new_start,
                              multiplier,
                              current[0] if current else None, _assignments(db, None, new),
                              last[0] if last else None)
            was = current[0]
            db.execute("UPDATE meter_assignments SET end_ts = ?, final_read = ? "
                       "WHERE meter_id = ? AND end_ts IS NULL",
                       (at.timestamp(), old_final, old))
            made = MeterAssignment(was.service_point_id, new, at, None,
                                   multiplier if multiplier is not None else was.multiplier,
                                   new_start, None)
            db.execute(_ASSIGN, (*_assignment_row(made), now))
            return made

        return await self._run(self._tx(write))


_ASSIGN = ("INSERT INTO meter_assignments (service_point_id, meter_id, start_ts, end_ts, "
           "multiplier, start_read, final_read, recorded_at) VALUES (?,?,?,?,?,?,?,?)")


def _assignment_row(a: MeterAssignment) -> tuple[Any, ...]:
    return (a.service_point_id, a.meter_id, a.start.timestamp() if a.start else None,
            a.end.timestamp() if a.end else None, a.multiplier, a.start_read, a.final_read)


def _assignments(db: sqlite3.Connection, service_point_id: str | None,
                 meter_id: str | None) -> list[MeterAssignment]:
    rows = db.execute(
        "SELECT service_point_id, meter_id, start_ts, end_ts, multiplier, start_read, "
        "final_read FROM meter_assignments WHERE (? IS NULL OR service_point_id = ?) "
        "AND (? IS NULL OR meter_id = ?) ORDER BY service_point_id, coalesce(start_ts, -1e18)",
        (service_point_id, service_point_id, meter_id, meter_id)).fetchall()

    def at(ts: float | None) -> datetime | None:
        return None if ts is None else datetime.fromtimestamp(ts, UTC)

    return [MeterAssignment(sp, m, at(s), at(e), mult, sr, fr)
            for sp, m, s, e, mult, sr, fr in rows]
