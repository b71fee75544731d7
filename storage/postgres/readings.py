"""Raw reads in PostgreSQL: binary COPY into a per-session staging table, then one
INSERT … ON CONFLICT that applies quality precedence, so a batch of a million rows is
two statements and a replay is harmless; and the reads of raw values."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from model import (
    AUTOMATIC,
    IngestResult,
    Quality,
    Reading,
    ReadKind,
)
from storage.base import (
    DailyConsumption,
    StorageError,
    quality_code_rank_sql,
)
from storage.daily import daily_from_rows
from storage.postgres.connection import PostgresConnection
from storage.versions import (
    LATE_READ_ACTOR,
    LATE_READ_NOTE,
    LATE_READ_REASON,
    VERSIONS_LOCK,
)

FORWARD_ACTIVE = "1-0:1.8.0"
PARALLEL_MIN_ROWS = 20_000

COLUMNS = "series_id, ts, value, quality, method_id, source_id"
COPY_TYPES = ["int4", "timestamptz", "float8", "int2", "int2", "int4"]
COPY_DIRECT = f"COPY readings ({COLUMNS}) FROM STDIN (FORMAT BINARY)"
STAGING = """
CREATE TEMP TABLE IF NOT EXISTS series_staging (
    series_id int4, ts timestamptz, value float8, quality int2, method_id int2,
    source_id int4, seq int8
) ON COMMIT DELETE ROWS
"""
COPY_STAGING = f"COPY series_staging ({COLUMNS}, seq) FROM STDIN (FORMAT BINARY)"
# The last row for a key within one batch wins, as if the rows had arrived one by one.
# Sorting by key also makes the index inserts walk the primary key page by page.
UPSERT = f"""
WITH batch AS (
    SELECT DISTINCT ON (series_id, ts) {COLUMNS}
    FROM series_staging
    ORDER BY series_id, ts, seq DESC
), written AS (
    INSERT INTO readings AS r ({COLUMNS})
    SELECT * FROM batch
    ON CONFLICT (series_id, ts) DO UPDATE
       SET value = EXCLUDED.value, quality = EXCLUDED.quality,
           method_id = EXCLUDED.method_id, source_id = EXCLUDED.source_id
     WHERE {quality_code_rank_sql("EXCLUDED.quality")} >= {quality_code_rank_sql("r.quality")}
       AND (r.value, r.quality, r.method_id)
           IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.quality, EXCLUDED.method_id)
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written
"""
# Version writers take this lock exclusively and every ingest shares it, so an estimate
# can never slip in beside a raw read committed at the same moment.
VERSIONS_SHARED = "SELECT pg_advisory_xact_lock_shared(%s)"
# A raw actual read of a key whose current version is VEE's estimate arrived late: it
# replaces the estimate with a new version, and the estimate stays in the history.
LATE_READS = f"""
INSERT INTO reading_versions (series_id, ts, version, value, quality, method_id, reason,
                              actor, note)
SELECT v.series_id, v.ts, v.version + 1, r.value, r.quality, r.method_id,
       '{LATE_READ_REASON}', '{LATE_READ_ACTOR}', '{LATE_READ_NOTE}'
FROM (SELECT DISTINCT ON (series_id, ts) series_id, ts, version, quality, actor
      FROM reading_versions
      WHERE series_id = ANY(%s) AND ts >= %s AND ts <= %s
      ORDER BY series_id, ts, version DESC) v
JOIN readings r ON r.series_id = v.series_id AND r.ts = v.ts
WHERE v.actor LIKE '{AUTOMATIC}%%'
  AND quality_code_rank(r.quality) > quality_code_rank(v.quality)
"""
_EACH_SERIES = ("CROSS JOIN LATERAL (SELECT ts, value FROM readings WHERE series_id = s.id "
                "AND ts >= %s AND ts <= %s OFFSET 0) r")
"""A block's series' reads in a window, one index range per series. Joined plainly, the
planner guessed a handful of rows in the window and scanned the whole readings table
for every block of a district; OFFSET 0 keeps it from flattening the subquery back
into that join."""

VALUES_SELECT = ("SELECT meter_id, quantity, ts, value, unit, quality, source, method, kind "
                 "FROM reading_values")


class PostgresReadings(PostgresConnection):
    async def write_readings(self, readings: Sequence[Reading]) -> IngestResult:
        """Large batches are split by series and written on parallel connections.

        The server's index maintenance, not the COPY, is the bottleneck of an upsert, and
        one backend uses one core. Parts never share a key (a series' rows stay in one
        part), so they cannot conflict; if one part fails the whole batch is retried, and
        the part already committed replays as unchanged.
        """
        if not readings:
            return IngestResult()
        rows = await self._ids.rows(self._conn, readings)
        parts = self.parallel_ingest if len(rows) >= PARALLEL_MIN_ROWS else 1
        if parts == 1:
            return await self._write(rows)
        buckets: list[list[tuple[Any, ...]]] = [[] for _ in range(parts)]
        for row in rows:
            buckets[row[0] % parts].append(row)
        results = await asyncio.gather(*(self._write(b) for b in buckets if b))
        total = IngestResult()
        for result in results:
            total += result
        return total

    async def _write(self, rows: Sequence[tuple[Any, ...]]) -> IngestResult:
        """Optimistically: a batch of only new keys (a gateway's latest slot, the common
        case) goes straight into the table by COPY. The first key that exists makes the
        COPY fail as a whole, and the batch takes the staging + upsert path instead."""
        span = (sorted({row[0] for row in rows}), min(row[1] for row in rows),
                max(row[1] for row in rows))
        async with self._conn() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.execute(VERSIONS_SHARED, (VERSIONS_LOCK,))
                    async with cur.copy(COPY_DIRECT) as copy:
                        copy.set_types(COPY_TYPES)
                        for row in rows:
                            await copy.write_row(row)
                    await cur.execute(LATE_READS, span)
                self.direct_batches += 1
                return IngestResult(new=len(rows))
            except psycopg.errors.UniqueViolation:
                pass
            self.upsert_batches += 1
            async with conn.transaction(), conn.cursor() as cur:
                await cur.execute(VERSIONS_SHARED, (VERSIONS_LOCK,))
                await cur.execute(STAGING)
                async with cur.copy(COPY_STAGING) as copy:
                    copy.set_types([*COPY_TYPES, "int8"])
                    for seq, row in enumerate(rows):
                        await copy.write_row((*row, seq))
                await cur.execute("SET LOCAL work_mem = '64MB'")
                await cur.execute(UPSERT)
                counts = await cur.fetchone()
                await cur.execute(LATE_READS, span)
        assert counts is not None
        new, updated = int(counts[0]), int(counts[1])
        return IngestResult(new=new, updated=updated, unchanged=len(rows) - new - updated)

    async def count_readings(self) -> int:
        async with self._read() as conn:
            cur = await conn.execute("SELECT count(*) FROM readings")
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def readings_in(
        self, start: datetime, end: datetime, quantities: Sequence[str]
    ) -> list[Reading]:
        async with self._read() as conn:
            cur = await conn.execute(
                f"{VALUES_SELECT} WHERE ts >= %s AND ts <= %s AND quantity = ANY(%s) "
                "ORDER BY meter_id, quantity, kind, ts", (start, end, list(quantities)))
            return [_reading(r) for r in await cur.fetchall()]

    async def values_in(
        self, start: datetime, end: datetime, quantities: Sequence[str],
        meter_ids: Sequence[str],
    ) -> list[tuple[str, str, str, float, float]]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT s.meter_id, s.quantity, s.kind, extract(epoch FROM r.ts)::float8, "
                f"r.value FROM series s {_EACH_SERIES} "
                "WHERE s.meter_id = ANY(%s) AND s.quantity = ANY(%s) ORDER BY 1, 2, 3, 4",
                (start, end, list(meter_ids), list(quantities)))
            return await cur.fetchall()

    async def heard_from(self, start: datetime, end: datetime) -> list[str]:
        async with self._read() as conn:
            # One index probe per series, not a scan of the window's reads.
            cur = await conn.execute(
                "SELECT DISTINCT s.meter_id FROM series s WHERE EXISTS (SELECT 1 FROM "
                "readings r WHERE r.series_id = s.id AND r.ts >= %s AND r.ts <= %s) "
                "ORDER BY 1", (start, end))
            return [r[0] for r in await cur.fetchall()]

    async def latest_readings(self, meter_ids: Sequence[str] | None = None) -> list[Reading]:
        where, params = "", []
        if meter_ids is not None:
            where, params = "WHERE s.meter_id = ANY(%s)", [list(meter_ids)]
        async with self._read() as conn:
            # One index probe per series for its newest row, not a scan of every read.
            cur = await conn.execute(
                "SELECT s.meter_id, s.quantity, r.ts, r.value, s.unit, q.letter, src.name, "
                "m.name, s.kind FROM series s CROSS JOIN LATERAL (SELECT * FROM readings "
                "WHERE series_id = s.id ORDER BY ts DESC LIMIT 1) r "
                "JOIN qualities q ON q.code = r.quality JOIN methods m ON m.id = r.method_id "
                f"JOIN sources src ON src.id = r.source_id {where} "
                "ORDER BY s.meter_id, s.quantity, s.kind = 'interval', s.kind",
                params,
            )
            return [_reading(r) for r in await cur.fetchall()]

    async def series(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[Reading]:
        async with self._read() as conn:
            cur = await conn.execute(
                f"{VALUES_SELECT} WHERE meter_id = %s AND quantity = %s AND kind = %s "
                "AND ts >= %s AND ts <= %s ORDER BY ts",
                (meter_id, quantity, kind.value, start, end),
            )
            return [_reading(r) for r in await cur.fetchall()]

    async def daily_consumption(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC",
        quantity: str = FORWARD_ACTIVE, meter_ids: Sequence[str] | None = None,
    ) -> list[DailyConsumption]:
        """From the daily views (a continuous aggregate under TimescaleDB) of forward
        energy in the store's own time zone; for another register or zone, or for some
        meters only, from the raw boundary reads."""
        if by not in ("meter", "area"):
            raise StorageError("daily consumption groups by meter or area")
        if meter_ids is not None:
            return await self._daily_of(start, end, by, ZoneInfo(tz), quantity, meter_ids)
        if tz != self.timezone or quantity != FORWARD_ACTIVE:
            return await self._daily_from_raw(start, end, by, ZoneInfo(tz), quantity)
        zone = ZoneInfo(tz)
        first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
        view, subject = (
            ("consumption_daily", "meter_id") if by == "meter" else
            ("area_consumption_daily", "area")
        )
        async with self._read() as conn:
            cur = await conn.execute(
                f"SELECT {subject}, day, kwh FROM {view} WHERE day >= %s AND day < %s "
                "ORDER BY 1, 2",
                (first, last),
            )
            return [
                DailyConsumption(r[0], r[1].isoformat(), round(float(r[2]), 6))
                for r in await cur.fetchall()
            ]

    async def _daily_of(
        self, start: datetime, end: datetime, by: str, zone: ZoneInfo, quantity: str,
        meter_ids: Sequence[str],
    ) -> list[DailyConsumption]:
        """Only the midnight reads of only these meters: the index on (series, ts) finds
        them, and the views' window over all of history is not computed for a block."""
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT s.meter_id, coalesce(m.area, ''), coalesce(m.area_meter, false), "
                "extract(epoch FROM r.ts)::float8, r.value FROM series s "
                f"{_EACH_SERIES} LEFT JOIN meters m ON m.id = s.meter_id "
                "WHERE s.meter_id = ANY(%s) AND s.quantity = %s "
                "AND s.kind IN ('interval', 'daily') "
                "AND (r.ts AT TIME ZONE %s)::time = '00:00' ORDER BY s.kind = 'interval'",
                (start, end + timedelta(days=1), list(meter_ids), quantity, str(zone)))
            rows = await cur.fetchall()
        return daily_from_rows(rows, start, end, zone, by)

    async def _daily_from_raw(
        self, start: datetime, end: datetime, by: str, zone: ZoneInfo,
        quantity: str = FORWARD_ACTIVE,
    ) -> list[DailyConsumption]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT r.meter_id, coalesce(m.area, ''), coalesce(m.area_meter, false), r.ts, "
                "r.value FROM reading_values r LEFT JOIN meters m ON m.id = r.meter_id "
                "WHERE r.quantity = %s AND r.kind IN ('interval', 'daily') "
                "AND r.ts >= %s AND r.ts <= %s ORDER BY r.kind = 'interval'",
                (quantity, start, end + timedelta(days=1)),
            )
            rows = await cur.fetchall()
        return daily_from_rows(((m, a, am, ts.timestamp(), v) for m, a, am, ts, v in rows),
                               start, end, zone, by)


def _reading(r: Sequence[Any]) -> Reading:
    ts: datetime = r[2]
    return Reading(
        meter_id=r[0], quantity=r[1], ts=ts.astimezone(UTC), value=r[3], unit=r[4],
        quality=Quality(r[5]), source=r[6], method=r[7], kind=ReadKind(r[8]),
    )
