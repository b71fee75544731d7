"""PostgreSQL (and TimescaleDB when present): the head-end's system of record.

Readings go in by binary COPY into a per-session staging table, then one
INSERT … ON CONFLICT that applies quality precedence, so a batch of a million rows is
two statements and a replay is harmless.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from model import (
    AUTOMATIC,
    CollectionAttempt,
    Event,
    Flag,
    IngestResult,
    Meter,
    MeterAssignment,
    Quality,
    Reading,
    ReadKind,
    ServicePoint,
    ValueVersion,
    Verdict,
)
from storage import migrate
from storage.arrays import CurrentArrays, from_columns
from storage.arrays import empty as empty_arrays
from storage.base import (
    GROUPINGS,
    QUALITY_CODES,
    QUALITY_OF_CODE,
    CollectionRow,
    DailyConsumption,
    FlagRow,
    StorageError,
    StorageUnavailable,
    UnitMismatch,
    dead_letter_digest,
    quality_code_rank_sql,
)
from storage.daily import daily_from_boundaries
from storage.pg_arrays import float8_array
from storage.postgres_billing import PostgresBilling
from storage.postgres_tokens import PostgresTokens
from storage.versions import (
    LATE_READ_ACTOR,
    LATE_READ_NOTE,
    LATE_READ_REASON,
    VERSIONS_LOCK,
    check_replacement,
    key_of,
    plan_versions,
    version_row,
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
ASSIGNMENTS_LOCK = 0x73707473  # 'spts': one replacement at a time
ASSIGN = ("INSERT INTO meter_assignments (service_point_id, meter_id, start_ts, end_ts, "
          "multiplier, start_read, final_read) SELECT %s, %s, %s, %s, %s, %s, %s")
VALUES_SELECT = ("SELECT meter_id, quantity, ts, value, unit, quality, source, method, kind "
                 "FROM reading_values")

_GROUP_SQL = {
    "meter": "a.meter_id",
    "bus": "a.bus",
    "gateway": "coalesce(nullif(a.gateway, ''), m.gateway, '')",
    "area": "coalesce(m.area, '')",
}


class PostgresStore(PostgresBilling, PostgresTokens):
    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        timezone: str = "UTC",
        attempts_retention_days: int = 0,
        pool_size: int = 4,
        timeout_s: float = 5.0,
        parallel_ingest: int = 2,
    ) -> None:
        self.url = url
        self.parallel_ingest = max(1, min(parallel_ingest, pool_size))
        self.timezone = timezone
        self.attempts_retention_days = attempts_retention_days
        self.timescale = False
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout_s))}
        if password is not None:
            kwargs["password"] = password
        self._pool = AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout_s,
            reconnect_timeout=0,  # keep trying: the database coming back is normal
            check=AsyncConnectionPool.check_connection,
        )
        self._opened = False
        self._ids = SeriesIds()
        self.direct_batches = 0
        self.upsert_batches = 0

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StorageUnavailable(f"postgres unreachable: {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"postgres connection lost: {exc}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"postgres: {exc}") from exc
        except (ValueError, OverflowError, TypeError) as exc:
            # Rows the driver cannot send (a NUL in text, a lone surrogate): retrying the
            # same rows cannot help, so this is a refusal, not an outage.
            raise StorageError(f"postgres refused the rows: {exc}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A connection in a read-only REPEATABLE READ transaction: every statement of one
        read sees the same snapshot, so a series or a version committed between two of
        them cannot be in one result and missing from the next. Every read goes through
        here, so a read that grows a second statement is safe without a second thought."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    async def migrate(self) -> list[str]:
        async with self._conn() as conn:
            applied, self.timescale = await migrate.apply(
                conn, timezone=self.timezone, retention_days=self.attempts_retention_days
            )
        return applied

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute("SELECT 1")

    async def upsert_meters(self, meters: Sequence[Meter]) -> None:
        rows = [
            (m.id, m.protocol, m.bus, m.address, m.model, m.multiplier, m.area, m.exporter,
             m.gateway, m.is_area_meter, m.phases)
            for m in meters
        ]
        async with self._conn() as conn, conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO meters (id, protocol, bus, address, model, multiplier, area, "
                "exporter, gateway, area_meter, phases) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                "ON CONFLICT (id) DO UPDATE SET protocol = EXCLUDED.protocol, "
                "bus = EXCLUDED.bus, address = EXCLUDED.address, model = EXCLUDED.model, "
                "multiplier = EXCLUDED.multiplier, area = EXCLUDED.area, "
                "exporter = EXCLUDED.exporter, gateway = EXCLUDED.gateway, "
                "area_meter = EXCLUDED.area_meter, phases = EXCLUDED.phases, updated_at = now()",
                rows,
            )

    async def meters(self) -> list[Meter]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT id, protocol, bus, address, model, multiplier, area, exporter, gateway, "
                "area_meter, phases FROM meters ORDER BY id"
            )
            return [Meter(*row) for row in await cur.fetchall()]

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

    async def write_events(self, events: Sequence[Event]) -> int:
        if not events:
            return 0
        rows = [(e.meter_id, e.ts, e.kind, json.dumps(e.details, sort_keys=True)) for e in events]
        async with self._conn() as conn, conn.cursor() as cur:
            written = 0
            for row in rows:
                await cur.execute(
                    "INSERT INTO events (meter_id, ts, kind, details) VALUES (%s,%s,%s,%s) "
                    "ON CONFLICT DO NOTHING",
                    row,
                )
                written += cur.rowcount
            return written

    async def write_attempts(self, attempts: Sequence[CollectionAttempt]) -> None:
        if not attempts:
            return
        async with self._conn() as conn, conn.cursor() as cur, cur.copy(
            "COPY collection_attempts (meter_id, bus, gateway, ts, outcome, latency_ms, "
            "error) FROM STDIN"
        ) as copy:
            for a in attempts:
                await copy.write_row(
                    (a.meter_id, a.bus, a.gateway, a.ts, a.outcome.value, a.latency_ms,
                     a.error)
                )

    async def write_dead_letter(self, source: str, payload: bytes, reason: str) -> None:
        """Once per (source, payload): a redelivered bad message bumps `seen` instead."""
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO dead_letters (source, payload, reason, digest) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (digest) DO UPDATE "
                "SET seen = dead_letters.seen + 1",
                (source, payload, reason, dead_letter_digest(source, payload)),
            )

    async def last_attempts(self, meter_ids: Sequence[str]) -> dict[str, datetime]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT m, (SELECT max(ts) FROM collection_attempts WHERE meter_id = m) "
                "FROM unnest(%s::text[]) AS m", (list(meter_ids),))
            return {m: ts for m, ts in await cur.fetchall() if ts is not None}

    async def dead_letters(self) -> list[tuple[str, bytes, str]]:
        async with self._read() as conn:
            cur = await conn.execute("SELECT source, payload, reason FROM dead_letters ORDER BY id")
            return [(r[0], bytes(r[1]), r[2]) for r in await cur.fetchall()]

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

    async def events_in(self, start: datetime, end: datetime) -> list[Event]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT meter_id, ts, kind, details FROM events WHERE ts >= %s AND ts <= %s "
                "ORDER BY ts", (start, end))
            return [Event(r[0], r[1].astimezone(UTC), r[2], dict(r[3]))
                    for r in await cur.fetchall()]

    async def raise_flags(self, flags: Sequence[Flag]) -> int:
        raised = 0
        async with self._conn() as conn, conn.cursor() as cur:
            for f in flags:
                # The partial unique index flags_one_open keeps one open flag per kind.
                await cur.execute(
                    "INSERT INTO flags (subject, area, kind, severity, start_ts, end_ts, evidence)"
                    " VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT (subject, kind) "
                    "WHERE status = 'open' DO NOTHING",
                    (f.subject, f.area, f.kind, f.severity, f.start, f.end,
                     json.dumps(f.evidence, sort_keys=True)))
                raised += cur.rowcount
        return raised

    async def list_flags(
        self, kind: str | None = None, area: str | None = None, open_only: bool = False
    ) -> list[FlagRow]:
        where, args = ["true"], []
        if kind:
            where.append("kind = %s")
            args.append(kind)
        if area:
            where.append("area = %s")
            args.append(area)
        if open_only:
            where.append("status = 'open'")
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT id, subject, area, kind, severity, start_ts, end_ts, evidence, status, "
                f"raised_at FROM flags WHERE {' AND '.join(where)} ORDER BY id", args)
            return [FlagRow(r[0], Flag(r[1], r[3], r[4], r[5].astimezone(UTC),
                                       r[6].astimezone(UTC), dict(r[7]), r[2]), r[8],
                            r[9].astimezone(UTC))
                    for r in await cur.fetchall()]

    async def clear_flag(self, flag_id: int) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(
                "UPDATE flags SET status = 'cleared', cleared_at = now() "
                "WHERE id = %s AND status = 'open'", (flag_id,))
            return cur.rowcount > 0

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

    async def collection_summary(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC"
    ) -> list[CollectionRow]:
        if by not in GROUPINGS:
            raise StorageError(f"cannot group collection by {by!r}; use one of {GROUPINGS}")
        group = _GROUP_SQL[by]
        async with self._read() as conn:
            cur = await conn.execute(
                f"SELECT {group} AS grp, (a.ts AT TIME ZONE %(tz)s)::date AS day, count(*), "
                "count(*) FILTER (WHERE a.outcome = 'ok'), "
                "count(*) FILTER (WHERE a.outcome = 'timeout'), "
                "count(*) FILTER (WHERE a.outcome = 'error'), avg(a.latency_ms), "
                "coalesce((array_agg(a.error ORDER BY a.ts DESC) "
                "FILTER (WHERE a.error <> ''))[1], '') "
                "FROM collection_attempts a LEFT JOIN meters m ON m.id = a.meter_id "
                "WHERE a.ts >= %(start)s AND a.ts < %(end)s GROUP BY 1, 2 ORDER BY 1, 2",
                {"tz": tz, "start": start, "end": end},
            )
            return [
                CollectionRow(r[0], r[1].isoformat(), r[2], r[3], r[4], r[5], float(r[6]), r[7])
                for r in await cur.fetchall()
            ]

    async def daily_consumption(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC"
    ) -> list[DailyConsumption]:
        """From the daily views (a continuous aggregate under TimescaleDB) in the store's
        own time zone; for any other zone, from the raw boundary reads."""
        if by not in ("meter", "area"):
            raise StorageError("daily consumption groups by meter or area")
        if tz != self.timezone:
            return await self._daily_from_raw(start, end, by, ZoneInfo(tz))
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

    async def _daily_from_raw(
        self, start: datetime, end: datetime, by: str, zone: ZoneInfo
    ) -> list[DailyConsumption]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT r.meter_id, coalesce(m.area, ''), coalesce(m.area_meter, false), r.ts, "
                "r.value FROM reading_values r LEFT JOIN meters m ON m.id = r.meter_id "
                "WHERE r.quantity = %s AND r.kind IN ('interval', 'daily') "
                "AND r.ts >= %s AND r.ts <= %s ORDER BY r.kind = 'interval'",
                (FORWARD_ACTIVE, start, end + timedelta(days=1)),
            )
            rows = await cur.fetchall()
        per_meter: dict[str, dict[float, float]] = defaultdict(dict)
        info: dict[str, tuple[str, bool]] = {}
        for meter_id, area, area_meter, ts, value in rows:
            per_meter[meter_id][ts.timestamp()] = value
            info[meter_id] = (area, bool(area_meter))
        return daily_from_boundaries(per_meter, info, start, end, zone, by)

    # --- validated reads (storage.versions.ValidatedStore) ----------------------------

    async def current_values(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        async with self._read() as conn:
            return await _versions(conn, quantity, kind, start, end, meter_ids, current=True)

    async def current_arrays(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> CurrentArrays:
        async with self._read() as conn:
            return await _current_arrays(conn, quantity, kind, start, end, meter_ids)

    async def value_history(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        async with self._read() as conn:
            return await _versions(conn, quantity, kind, start, end, [meter_id],
                                   current=False)

    async def write_versions(self, versions: Sequence[ValueVersion]) -> int:
        if not versions:
            return 0
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (VERSIONS_LOCK,))
            ids = await _series_ids(cur, versions)
            keys = [(ids[(v.meter_id, v.quantity, str(v.kind))], v.ts) for v in versions]
            await cur.execute(
                "SELECT DISTINCT ON (v.series_id, v.ts) v.series_id, v.ts, v.version, v.value, "
                "v.quality, m.name, v.reason, v.actor, v.note FROM ("
                "SELECT series_id, ts, 0 AS version, value, quality, method_id, '' AS reason, "
                "'' AS actor, '' AS note FROM readings UNION ALL SELECT series_id, ts, version, "
                "value, quality, method_id, reason, actor, note FROM reading_versions) v "
                "JOIN methods m ON m.id = v.method_id "
                "JOIN unnest(%s::int4[], %s::timestamptz[]) AS k(sid, ts) "
                "ON v.series_id = k.sid AND v.ts = k.ts "
                "ORDER BY v.series_id, v.ts, v.version DESC",
                [list(c) for c in zip(*keys, strict=True)])
            found = {(sid, ts): row for sid, ts, *row in await cur.fetchall()}
            tops = {}
            for v, k in zip(versions, keys, strict=True):
                row = found.get(k)
                if row is not None:
                    tops[key_of(v)] = version_row(
                        v.meter_id, v.quantity, str(v.kind), v.unit, v.ts, row[0], row[1],
                        QUALITY_OF_CODE[row[2]], row[3], row[4], row[5], row[6], None)
            planned = plan_versions(tops, versions)
            if not planned:
                return 0
            names = sorted({v.method for v in planned})
            await cur.execute("INSERT INTO methods (name) SELECT unnest(%s::text[]) "
                              "ON CONFLICT DO NOTHING", (names,))
            await cur.execute("SELECT name, id FROM methods WHERE name = ANY(%s)", (names,))
            method_ids = dict(await cur.fetchall())
            await cur.executemany(
                "INSERT INTO reading_versions (series_id, ts, version, value, quality, "
                "method_id, reason, actor, note) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                [(ids[(v.meter_id, v.quantity, str(v.kind))], v.ts, v.version, v.value,
                  QUALITY_CODES[v.quality], method_ids[v.method], v.reason, v.actor, v.note)
                 for v in planned])
            return len(planned)

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        if not verdicts:
            return
        cols = [list(c) for c in zip(*[
            (v.meter_id, v.day, v.rule, v.passed, json.dumps(v.evidence, sort_keys=True))
            for v in verdicts], strict=True)]
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO vee_verdicts AS t (meter_id, day, rule, passed, evidence) "
                "SELECT DISTINCT ON (m, d, r) m, d, r, p, e::jsonb FROM unnest(%s::text[], "
                "%s::date[], %s::text[], %s::bool[], %s::text[]) AS u(m, d, r, p, e) "
                "ON CONFLICT (meter_id, day, rule) DO UPDATE SET passed = EXCLUDED.passed, "
                "evidence = EXCLUDED.evidence, judged_at = now() "
                "WHERE (t.passed, t.evidence) IS DISTINCT FROM (EXCLUDED.passed, "
                "EXCLUDED.evidence)", cols)

    async def verdicts(self, first: date, last: date,
                       meter_ids: Sequence[str] | None = None) -> list[Verdict]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT meter_id, day, rule, passed, evidence FROM vee_verdicts "
                "WHERE day BETWEEN %s AND %s AND (%s::text[] IS NULL OR meter_id = ANY(%s)) "
                "ORDER BY meter_id, day, rule",
                (first, last, meter_ids and list(meter_ids), meter_ids and list(meter_ids)))
            return [Verdict(*row) for row in await cur.fetchall()]

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


def _reading(r: Sequence[Any]) -> Reading:
    ts: datetime = r[2]
    return Reading(
        meter_id=r[0], quantity=r[1], ts=ts.astimezone(UTC), value=r[3], unit=r[4],
        quality=Quality(r[5]), source=r[6], method=r[7], kind=ReadKind(r[8]),
    )


class SeriesIds:
    """Series, source and method ids by name, cached for the life of the store.

    A reading row holds only these integers; the names are resolved once, in their own
    short transaction, so two head-ends creating the same series at once both succeed.
    """

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], tuple[int, str]] = {}
        self.sources: dict[str, int] = {"": 0}
        self.methods: dict[str, int] = {"": 0}

    async def rows(
        self,
        connect: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[TupleRow]]],
        readings: Sequence[Reading],
    ) -> list[tuple[Any, ...]]:
        """The readings as table rows; names not seen before are resolved first.

        This runs once per reading on the ingest's hot path, so it is a plain loop over
        dict lookups (a ReadKind or Quality is a str and hashes like one), and it takes a
        connection from the pool only when a name is new.
        """
        try:
            return self._rows(readings)
        except KeyError:
            async with connect() as conn:
                await self._resolve(conn, readings)
            return self._rows(readings)

    def _rows(self, readings: Sequence[Reading]) -> list[tuple[Any, ...]]:
        series, sources, methods, codes = self.series, self.sources, self.methods, QUALITY_CODES
        rows: list[tuple[Any, ...]] = []
        wrong = []
        for r in readings:
            series_id, unit = series[(r.meter_id, r.quantity, r.kind)]
            if unit != r.unit:
                wrong.append(f"{r.meter_id} {r.quantity} ({r.kind}) is in {unit}, "
                             f"got {r.unit}")
            rows.append((series_id, r.ts, r.value, codes[r.quality], methods[r.method],
                         sources[r.source]))
        if wrong:
            raise UnitMismatch("readings refused, a series keeps one unit: "
                               + "; ".join(sorted(set(wrong))[:5]))
        return rows

    async def _resolve(self, conn: psycopg.AsyncConnection[TupleRow],
                       readings: Sequence[Reading]) -> None:
        series = {(r.meter_id, r.quantity, str(r.kind)): r.unit for r in readings}
        missing = [(*k, unit) for k, unit in series.items() if k not in self.series]
        sources = sorted({r.source for r in readings} - self.sources.keys())
        methods = sorted({r.method for r in readings} - self.methods.keys())
        if not (missing or sources or methods):
            return
        async with conn.transaction():
            if missing:
                cols = [list(c) for c in zip(*missing, strict=True)]
                await conn.execute(
                    "INSERT INTO series (meter_id, quantity, kind, unit) SELECT * FROM "
                    "unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                    "ON CONFLICT DO NOTHING", cols)
                cur = await conn.execute(
                    "SELECT s.id, s.meter_id, s.quantity, s.kind, s.unit FROM series s "
                    "JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(m, q, kd) "
                    "ON s.meter_id = k.m AND s.quantity = k.q AND s.kind = k.kd", cols[:3])
                for sid, meter, quantity, kind, unit in await cur.fetchall():
                    self.series[(meter, quantity, kind)] = (sid, unit)
            for table, names, cache in (("sources", sources, self.sources),
                                        ("methods", methods, self.methods)):
                if not names:
                    continue
                await conn.execute(f"INSERT INTO {table} (name) SELECT unnest(%s::text[]) "
                                   "ON CONFLICT DO NOTHING", (names,))
                cur = await conn.execute(f"SELECT id, name FROM {table} WHERE name = ANY(%s)",
                                         (names,))
                cache.update({name: int(i) for i, name in await cur.fetchall()})


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


async def _series_ids(cur: psycopg.AsyncCursor[TupleRow],
                      versions: Sequence[ValueVersion]) -> dict[tuple[str, str, str], int]:
    """Each version's series id, creating series never read before (a null estimate for
    a meter that has not answered yet still needs somewhere to live)."""
    wanted = {(v.meter_id, v.quantity, str(v.kind)): v.unit for v in versions}
    cols = [list(c) for c in zip(*[(*k, u) for k, u in wanted.items()], strict=True)]
    await cur.execute("INSERT INTO series (meter_id, quantity, kind, unit) SELECT * FROM "
                      "unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                      "ON CONFLICT DO NOTHING", cols)
    await cur.execute("SELECT s.id, s.meter_id, s.quantity, s.kind, s.unit FROM series s "
                      "JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(m, q, kd) "
                      "ON s.meter_id = k.m AND s.quantity = k.q AND s.kind = k.kd", cols[:3])
    ids = {}
    for sid, meter, quantity, kind, unit in await cur.fetchall():
        if unit != wanted[(meter, quantity, kind)]:
            raise UnitMismatch(f"a version of {meter} {quantity} ({kind}) is in "
                               f"{wanted[(meter, quantity, kind)]}, the series is in {unit}")
        ids[(meter, quantity, kind)] = int(sid)
    return ids


def _versions_sql(columns: str, *, current: bool) -> str:
    """Raw reads (version 0) and later versions of one quantity's series; with
    `current`, only each key's top one."""
    pick = "DISTINCT ON (v.series_id, v.ts)" if current else ""
    order = "v.version DESC" if current else "v.version"
    return (
        "WITH s AS (SELECT id, meter_id, unit FROM series WHERE quantity = %(q)s "
        "AND kind = %(k)s AND (%(m)s::text[] IS NULL OR meter_id = ANY(%(m)s))) "
        f"SELECT {pick} {columns} FROM ("
        "SELECT series_id, ts, 0 AS version, value, quality, method_id, '' AS reason, "
        "'' AS actor, '' AS note, NULL::timestamptz AS created_at FROM readings "
        "WHERE series_id IN (SELECT id FROM s) AND ts BETWEEN %(a)s AND %(b)s UNION ALL "
        "SELECT series_id, ts, version, value, quality, method_id, reason, actor, note, "
        "created_at FROM reading_versions "
        "WHERE series_id IN (SELECT id FROM s) AND ts BETWEEN %(a)s AND %(b)s) v "
        "JOIN s ON s.id = v.series_id JOIN methods m ON m.id = v.method_id "
        f"ORDER BY v.series_id, v.ts, {order}")


def _versions_args(quantity: str, kind: ReadKind, start: datetime, end: datetime,
                   meter_ids: Sequence[str] | None) -> dict[str, Any]:
    return {"q": quantity, "k": kind.value,
            "m": list(meter_ids) if meter_ids is not None else None, "a": start, "b": end}


async def _versions(conn: psycopg.AsyncConnection[TupleRow], quantity: str, kind: ReadKind,
                    start: datetime, end: datetime, meter_ids: Sequence[str] | None, *,
                    current: bool) -> list[ValueVersion]:
    cur = await conn.execute(
        _versions_sql("s.meter_id, s.unit, v.ts, v.version, v.value, v.quality, m.name, "
                      "v.reason, v.actor, v.note, v.created_at", current=current),
        _versions_args(quantity, kind, start, end, meter_ids))
    rows = [version_row(r[0], quantity, kind.value, r[1], r[2].astimezone(UTC), r[3], r[4],
                        QUALITY_OF_CODE[r[5]], r[6], r[7], r[8], r[9],
                        r[10] and r[10].astimezone(UTC)) for r in await cur.fetchall()]
    rows.sort(key=lambda v: (v.meter_id, v.ts, v.version))
    return rows


async def _current_arrays(conn: psycopg.AsyncConnection[TupleRow], quantity: str,
                          kind: ReadKind, start: datetime, end: datetime,
                          meter_ids: Sequence[str] | None) -> CurrentArrays:
    """Raw reads by COPY straight into a numpy matrix, the few later versions laid over
    them: the DISTINCT ON over the union of both tables sorts every row, and a tuple per
    row costs more than the read (a billing cycle or an export reads millions)."""
    cur = await conn.execute(
        "SELECT id, meter_id, unit FROM series WHERE quantity = %s AND kind = %s "
        "AND (%s::text[] IS NULL OR meter_id = ANY(%s))",
        (quantity, kind.value, *(2 * [list(meter_ids) if meter_ids is not None else None])))
    found = await cur.fetchall()
    if not found:
        return empty_arrays()
    ids = [int(r[0]) for r in found]
    span = (start, end)
    # One row per series with its columns as binary arrays that numpy reads in place
    # (storage.pg_arrays): a row per reading costs a round of Python each, and a binary
    # COPY is no better (psycopg yields a message per row). The aggregates take no
    # ORDER BY: on PostgreSQL 15 each would sort its group again; numpy orders the few
    # series the scan did not already give in time order.
    async with conn.cursor(binary=True) as c:
        await c.execute(
            "SELECT series_id, array_send(array_agg(extract(epoch FROM ts)::float8)), "
            "array_send(array_agg(value)), array_send(array_agg(quality::float8)), "
            "array_send(array_agg(method_id::float8)) FROM readings "
            "WHERE series_id = ANY(%s) AND ts BETWEEN %s AND %s GROUP BY series_id",
            (ids, *span))
        got = sorted(((int(r[0]), [float8_array(b) for b in r[1:]])
                      for r in await c.fetchall()), key=lambda r: r[0])
    raw = np.zeros((sum(len(cols[0]) for _, cols in got), 7))
    at = 0
    for sid, (ts, value, quality, method) in got:
        block = raw[at:at + len(ts)]
        block[:, 0] = sid
        block[:, 1], block[:, 2], block[:, 3], block[:, 4] = ts, value, quality, method
        if len(ts) > 1 and (np.diff(block[:, 1]) < 0).any():
            block[:] = block[np.argsort(block[:, 1], kind="stable")]
        at += len(ts)
    cur = await conn.execute(
        "SELECT series_id, extract(epoch FROM ts)::float8, coalesce(value, 0), quality, "
        f"method_id, version, actor LIKE '{AUTOMATIC}%%' FROM reading_versions "
        "WHERE series_id = ANY(%s) AND ts BETWEEN %s AND %s", (ids, *span))
    later = [tuple(float(x) for x in r) for r in await cur.fetchall()]
    cur = await conn.execute("SELECT id, name FROM methods")
    names = {int(i): n for i, n in await cur.fetchall()}
    methods = [""] * (max(names) + 1)
    for i, n in names.items():
        methods[i] = n
    columns = (np.vstack([raw, np.array(later, dtype=np.float64).reshape(-1, 7)]) if later
               else raw)
    return from_columns({int(r[0]): r[1] for r in found}, columns, methods,
                        {int(r[0]): r[2] for r in found})
