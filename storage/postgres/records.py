"""Meters, events, collection attempts, dead letters and flags in PostgreSQL, and the
collection summary built from them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from model import (
    CollectionAttempt,
    Event,
    Flag,
    Meter,
)
from storage.base import (
    GROUPINGS,
    CollectionRow,
    FlagRow,
    StorageError,
    dead_letter_digest,
)
from storage.flag_actions import FlagAction, check_action
from storage.meter_commands import MeterCommand, check_command
from storage.postgres.connection import PostgresConnection
from storage.versions import Refused

_GROUP_SQL = {
    "meter": "a.meter_id",
    "bus": "a.bus",
    "gateway": "coalesce(nullif(a.gateway, ''), m.gateway, '')",
    "area": "coalesce(m.area, '')",
}


class PostgresRecords(PostgresConnection):
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

    async def record_flag_action(self, flag_id: int, actor: str, action: str,
                                 assignee: str = "", note: str = "") -> FlagAction:
        """Keep an operator's step on a flag; closing clears it. Refused for a flag that
        is not there or is closed already."""
        check_action(action, assignee, note)
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute("SELECT status FROM flags WHERE id = %s FOR UPDATE",
                                     (flag_id,))
            row = await cur.fetchone()
            if row is None:
                raise Refused(f"no flag {flag_id}")
            if row[0] != "open":
                raise Refused(f"flag {flag_id} is closed already")
            cur = await conn.execute(
                "INSERT INTO flag_actions (flag_id, actor, action, assignee, note) "
                "VALUES (%s, %s, %s, %s, %s) RETURNING at", (flag_id, actor, action, assignee,
                                                            note))
            (at,) = await cur.fetchone() or (datetime.now(UTC),)
            if action == "close":
                await conn.execute("UPDATE flags SET status = 'cleared', cleared_at = now() "
                                   "WHERE id = %s", (flag_id,))
        return FlagAction(flag_id, at.astimezone(UTC), actor, action, assignee, note)

    async def flag_actions(self, flag_id: int) -> list[FlagAction]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT flag_id, at, actor, action, assignee, note FROM flag_actions "
                "WHERE flag_id = %s ORDER BY id", (flag_id,))
            return [FlagAction(int(r[0]), r[1].astimezone(UTC), r[2], r[3], r[4], r[5])
                    for r in await cur.fetchall()]

    async def queue_command(self, meter_id: str, command: str, reason: str,
                            by: str) -> MeterCommand:
        check_command(command, reason)
        async with self._conn() as conn:
            cur = await conn.execute(
                f"INSERT INTO meter_commands (meter_id, command, reason, requested_by) "
                f"VALUES (%s, %s, %s, %s) RETURNING {_COMMAND_COLUMNS}",
                (meter_id, command, reason, by))
            row = await cur.fetchone()
        assert row is not None
        return _command(row)

    async def meter_commands(self, meter_ids: Sequence[str] | None = None,
                             queued_only: bool = False, limit: int = 50) -> list[MeterCommand]:
        """Newest first; queued ones oldest first (the order they are run in)."""
        order = "id" if queued_only else "id DESC"
        async with self._read() as conn:
            cur = await conn.execute(
                f"SELECT {_COMMAND_COLUMNS} FROM meter_commands WHERE "
                "(%s::text[] IS NULL OR meter_id = ANY(%s)) AND (NOT %s OR status = 'queued') "
                f"ORDER BY {order} LIMIT %s",
                (*(2 * [list(meter_ids) if meter_ids is not None else None]), queued_only,
                 limit))
            return [_command(r) for r in await cur.fetchall()]

    async def finish_command(self, command_id: int, ok: bool, result: str) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE meter_commands SET status = %s, done_at = now(), result = %s "
                "WHERE id = %s AND status = 'queued'",
                ("done" if ok else "failed", result[:500], command_id))

    async def clear_flag(self, flag_id: int) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute(
                "UPDATE flags SET status = 'cleared', cleared_at = now() "
                "WHERE id = %s AND status = 'open'", (flag_id,))
            return cur.rowcount > 0

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


_COMMAND_COLUMNS = ("id, meter_id, command, reason, requested_by, requested_at, status, done_at, "
                    "result")


def _command(r: Sequence[Any]) -> MeterCommand:
    return MeterCommand(int(r[0]), r[1], r[2], r[3], r[4], r[5].astimezone(UTC), r[6],
                        r[7] and r[7].astimezone(UTC), r[8])
