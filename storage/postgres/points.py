"""Service points and the meters assigned to them in PostgreSQL, and meter replacements."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from model import (
    MeterAssignment,
    Quality,
    ServicePoint,
)
from storage.base import (
    QUALITY_CODES,
)
from storage.postgres.connection import PostgresConnection
from storage.versions import (
    check_replacement,
)

FORWARD_ACTIVE = "1-0:1.8.0"
ASSIGNMENTS_LOCK = 0x73707473  # 'spts': one replacement at a time
ASSIGN = ("INSERT INTO meter_assignments (service_point_id, meter_id, start_ts, end_ts, "
          "multiplier, start_read, final_read) SELECT %s, %s, %s, %s, %s, %s, %s")


class PostgresPoints(PostgresConnection):
    async def upsert_service_points(self, points: Sequence[ServicePoint],
                                    assignments: Sequence[MeterAssignment] = ()) -> None:
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (ASSIGNMENTS_LOCK,))
            await cur.executemany(
                "INSERT INTO service_points (id, account, tariff, segment, area) "
                "VALUES (%s,%s,%s,%s,%s) ON CONFLICT (id) DO UPDATE SET "
                "account = EXCLUDED.account, tariff = EXCLUDED.tariff, "
                "segment = EXCLUDED.segment, area = EXCLUDED.area",
                [(p.id, p.account, p.tariff, p.segment, p.area) for p in points])
            for a in assignments:
                await cur.execute(f"{ASSIGN} WHERE NOT EXISTS (SELECT 1 FROM meter_assignments "
                                  "WHERE meter_id = %s)", (*_assignment_row(a), a.meter_id))

    async def service_points(self) -> list[ServicePoint]:
        async with self._read() as conn:
            cur = await conn.execute("SELECT id, account, tariff, segment, area "
                                     "FROM service_points ORDER BY id")
            return [ServicePoint(*row) for row in await cur.fetchall()]

    async def assignments(self, service_point_id: str | None = None,
                          meter_id: str | None = None) -> list[MeterAssignment]:
        async with self._read() as conn, conn.cursor() as cur:
            return await _assignments(cur, service_point_id, meter_id)

    async def record_replacement(
        self, old: str, new: str, at: datetime, old_final: float, new_start: float,
        multiplier: float | None = None,
    ) -> MeterAssignment:
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (ASSIGNMENTS_LOCK,))
            await cur.execute("SELECT id FROM meters UNION SELECT meter_id FROM series")
            known = {r[0] for r in await cur.fetchall()}
            if old in known and not await _assignments(cur, None, old):
                await cur.execute("INSERT INTO service_points (id) VALUES (%s) "
                                  "ON CONFLICT DO NOTHING", (old,))
                await cur.execute(ASSIGN, (old, old, None, None, 1.0, None, None))
            current = [a for a in await _assignments(cur, None, old) if a.covers(at)]
            await cur.execute(
                "SELECT r.value FROM readings r JOIN series s ON s.id = r.series_id "
                "WHERE s.meter_id = %s AND s.quantity = %s AND r.ts <= %s AND r.quality = %s "
                "ORDER BY r.ts DESC LIMIT 1",
                (old, FORWARD_ACTIVE, at, QUALITY_CODES[Quality.ACTUAL]))
            last = await cur.fetchone()
            check_replacement(known, old, new, at, old_final, new_start,
                              multiplier,
                              current[0] if current else None,
                              await _assignments(cur, None, new), last[0] if last else None)
            was = current[0]
            await cur.execute("UPDATE meter_assignments SET end_ts = %s, final_read = %s "
                              "WHERE meter_id = %s AND end_ts IS NULL", (at, old_final, old))
            made = MeterAssignment(was.service_point_id, new, at, None,
                                   multiplier if multiplier is not None else was.multiplier,
                                   new_start, None)
            await cur.execute(ASSIGN, _assignment_row(made))
            return made


def _assignment_row(a: MeterAssignment) -> tuple[Any, ...]:
    return (a.service_point_id, a.meter_id, a.start, a.end, a.multiplier, a.start_read,
            a.final_read)


async def _assignments(cur: psycopg.AsyncCursor[TupleRow], service_point_id: str | None,
                       meter_id: str | None) -> list[MeterAssignment]:
    await cur.execute(
        "SELECT service_point_id, meter_id, start_ts, end_ts, multiplier, start_read, "
        "final_read FROM meter_assignments WHERE (%s::text IS NULL OR service_point_id = %s) "
        "AND (%s::text IS NULL OR meter_id = %s) "
        "ORDER BY service_point_id, start_ts NULLS FIRST",
        (service_point_id, service_point_id, meter_id, meter_id))
    return [MeterAssignment(sp, m, s and s.astimezone(UTC), e and e.astimezone(UTC), mult,
                            sr, fr)
            for sp, m, s, e, mult, sr, fr in await cur.fetchall()]
