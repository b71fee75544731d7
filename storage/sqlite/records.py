"""Meters, events, collection attempts, dead letters and flags in SQLite: what the
collector records beside the reads, and the collection summary built from it."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from model import (
    CollectionAttempt,
    Event,
    Flag,
    Meter,
    codec_json,
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
from storage.sqlite.outbox import SqliteOutbox
from storage.versions import Refused


class SqliteRecords(SqliteOutbox):
    async def upsert_meters(self, meters: Sequence[Meter]) -> None:
        rows = [
            (m.id, m.protocol, m.bus, m.address, m.model, m.multiplier, m.area,
             int(m.exporter), m.gateway, int(m.is_area_meter), m.phases)
            for m in meters
        ]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO meters VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (id) DO UPDATE SET "
                "protocol=excluded.protocol, bus=excluded.bus, address=excluded.address, "
                "model=excluded.model, multiplier=excluded.multiplier, area=excluded.area, "
                "exporter=excluded.exporter, gateway=excluded.gateway, "
                "area_meter=excluded.area_meter, phases=excluded.phases",
                rows,
            )

        await self._run(self._tx(write))

    async def meters(self) -> list[Meter]:
        def read(db: sqlite3.Connection) -> list[Meter]:
            rows = db.execute(
                "SELECT id, protocol, bus, address, model, multiplier, area, exporter, gateway, "
                "area_meter, phases FROM meters ORDER BY id"
            ).fetchall()
            return [
                Meter(r[0], r[1], r[2], r[3], r[4], r[5], r[6], bool(r[7]), r[8], bool(r[9]), r[10])
                for r in rows
            ]

        return await self._query(read)

    async def write_events(self, events: Sequence[Event]) -> int:
        received = datetime.now(UTC).timestamp()
        rows = [
            (e.meter_id, e.ts.timestamp(), e.kind, json.dumps(e.details, sort_keys=True), received)
            for e in events
        ]

        def write(db: sqlite3.Connection) -> int:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO events VALUES (?,?,?,?,?)", rows)
            written = db.total_changes - before
            if written:
                self._queue(db, "event", [codec_json.event_to_json(e) for e in events])
            return written

        return await self._run(self._tx(write))

    async def write_attempts(self, attempts: Sequence[CollectionAttempt]) -> None:
        rows = [
            (a.meter_id, a.bus, a.gateway, a.ts.timestamp(), a.outcome.value, a.latency_ms, a.error)
            for a in attempts
        ]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO collection_attempts (meter_id, bus, gateway, ts, outcome, "
                "latency_ms, error) VALUES (?,?,?,?,?,?,?)",
                rows,
            )
            self._queue(db, "attempt", [codec_json.attempt_to_json(a) for a in attempts])

        await self._run(self._tx(write))

    async def write_dead_letter(self, source: str, payload: bytes, reason: str) -> None:
        """Once per (source, payload): a redelivered bad message bumps `seen` instead."""
        row = (source, payload, reason, datetime.now(UTC).timestamp(),
               dead_letter_digest(source, payload))
        await self._run(
            lambda db: db.execute(
                "INSERT INTO dead_letters (source, payload, reason, received_at, digest) "
                "VALUES (?,?,?,?,?) ON CONFLICT (digest) DO UPDATE SET seen = seen + 1",
                row,
            )
        )

    async def last_attempts(self, meter_ids: Sequence[str]) -> dict[str, datetime]:
        def read(db: sqlite3.Connection) -> dict[str, datetime]:
            out = {}
            for meter_id in meter_ids:
                (ts,) = db.execute("SELECT max(ts) FROM collection_attempts WHERE meter_id = ?",
                                   (meter_id,)).fetchone()
                if ts is not None:
                    out[meter_id] = datetime.fromtimestamp(ts, UTC)
            return out

        return await self._query(read)

    async def dead_letters(self) -> list[tuple[str, bytes, str]]:
        return await self._query(
            lambda db: [
                (r[0], bytes(r[1]), r[2])
                for r in db.execute("SELECT source, payload, reason FROM dead_letters ORDER BY id")
            ]
        )

    async def events_in(self, start: datetime, end: datetime) -> list[Event]:
        def read(db: sqlite3.Connection) -> list[Event]:
            rows = db.execute(
                "SELECT meter_id, ts, kind, details FROM events WHERE ts >= ? AND ts <= ? "
                "ORDER BY ts", (start.timestamp(), end.timestamp())).fetchall()
            return [Event(r[0], datetime.fromtimestamp(r[1], UTC), r[2], json.loads(r[3]))
                    for r in rows]

        return await self._query(read)

    async def raise_flags(self, flags: Sequence[Flag]) -> int:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> int:
            raised = 0
            for f in flags:
                open_row = db.execute(
                    "SELECT id FROM flags WHERE subject = ? AND kind = ? AND status = 'open'",
                    (f.subject, f.kind)).fetchone()
                if open_row is None:
                    db.execute(
                        'INSERT INTO flags (subject, area, kind, severity, start, "end", '
                        "evidence, raised_at) VALUES (?,?,?,?,?,?,?,?)",
                        (f.subject, f.area, f.kind, f.severity, f.start.timestamp(),
                         f.end.timestamp(), json.dumps(f.evidence, sort_keys=True), now))
                    raised += 1
            return raised

        return await self._run(self._tx(write))

    async def list_flags(
        self, kind: str | None = None, area: str | None = None, open_only: bool = False
    ) -> list[FlagRow]:
        def read(db: sqlite3.Connection) -> list[FlagRow]:
            where, args = [], []
            if kind:
                where.append("kind = ?")
                args.append(kind)
            if area:
                where.append("area = ?")
                args.append(area)
            if open_only:
                where.append("status = 'open'")
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            rows = db.execute(
                'SELECT id, subject, area, kind, severity, start, "end", evidence, status, '
                f"raised_at FROM flags {clause} ORDER BY id", args).fetchall()
            return [FlagRow(r[0], Flag(r[1], r[3], r[4], datetime.fromtimestamp(r[5], UTC),
                                       datetime.fromtimestamp(r[6], UTC), json.loads(r[7]),
                                       r[2]), r[8], datetime.fromtimestamp(r[9], UTC))
                    for r in rows]

        return await self._query(read)

    async def record_flag_action(self, flag_id: int, actor: str, action: str,
                                 assignee: str = "", note: str = "") -> FlagAction:
        """Keep an operator's step on a flag; closing clears it. Refused for a flag that
        is not there or is closed already."""
        check_action(action, assignee, note)
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> FlagAction:
            row = db.execute("SELECT status FROM flags WHERE id = ?", (flag_id,)).fetchone()
            if row is None:
                raise Refused(f"no flag {flag_id}")
            if row[0] != "open":
                raise Refused(f"flag {flag_id} is closed already")
            db.execute("INSERT INTO flag_actions (flag_id, at, actor, action, assignee, note) "
                       "VALUES (?,?,?,?,?,?)", (flag_id, now, actor, action, assignee, note))
            if action == "close":
                db.execute("UPDATE flags SET status = 'cleared', cleared_at = ? WHERE id = ?",
                           (now, flag_id))
            return FlagAction(flag_id, datetime.fromtimestamp(now, UTC), actor, action,
                              assignee, note)

        return await self._run(self._tx(write))

    async def flag_actions(self, flag_id: int) -> list[FlagAction]:
        def read(db: sqlite3.Connection) -> list[FlagAction]:
            return [FlagAction(r[0], datetime.fromtimestamp(r[1], UTC), r[2], r[3], r[4], r[5])
                    for r in db.execute(
                        "SELECT flag_id, at, actor, action, assignee, note FROM flag_actions "
                        "WHERE flag_id = ? ORDER BY id", (flag_id,))]

        return await self._query(read)

    async def queue_command(self, meter_id: str, command: str, reason: str,
                            by: str) -> MeterCommand:
        check_command(command, reason)
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> MeterCommand:
            cur = db.execute("INSERT INTO meter_commands (meter_id, command, reason, "
                             "requested_by, requested_at) VALUES (?,?,?,?,?)",
                             (meter_id, command, reason, by, now))
            return MeterCommand(int(cur.lastrowid or 0), meter_id, command, reason, by,
                                datetime.fromtimestamp(now, UTC))

        return await self._run(self._tx(write))

    async def meter_commands(self, meter_ids: Sequence[str] | None = None,
                             queued_only: bool = False, limit: int = 50) -> list[MeterCommand]:
        """Newest first; queued ones oldest first (the order they are run in)."""
        def read(db: sqlite3.Connection) -> list[MeterCommand]:
            where = ["status = 'queued'"] if queued_only else []
            args: list[Any] = []
            if meter_ids is not None:
                where.append(f"meter_id IN ({','.join('?' * len(meter_ids))})")
                args += list(meter_ids)
            clause = f"WHERE {' AND '.join(where)}" if where else ""
            order = "id" if queued_only else "id DESC"
            return [_command(r) for r in db.execute(
                f"SELECT {_COMMAND_COLUMNS} FROM meter_commands {clause} ORDER BY {order} "
                "LIMIT ?", (*args, limit))]

        return await self._query(read)

    async def finish_command(self, command_id: int, ok: bool, result: str) -> None:
        now = datetime.now(UTC).timestamp()
        await self._run(self._tx(lambda db: db.execute(
            "UPDATE meter_commands SET status = ?, done_at = ?, result = ? WHERE id = ? "
            "AND status = 'queued'", ("done" if ok else "failed", now, result[:500],
                                      command_id))))

    async def clear_flag(self, flag_id: int) -> bool:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE flags SET status = 'cleared', cleared_at = ? "
                             "WHERE id = ? AND status = 'open'", (now, flag_id))
            return cur.rowcount > 0

        return await self._run(self._tx(write))

    async def collection_summary(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC"
    ) -> list[CollectionRow]:
        if by not in GROUPINGS:
            raise StorageError(f"cannot group collection by {by!r}; use one of {GROUPINGS}")
        zone = ZoneInfo(tz)

        def read(db: sqlite3.Connection) -> list[CollectionRow]:
            rows = db.execute(
                "SELECT a.meter_id, a.bus, coalesce(nullif(a.gateway, ''), m.gateway, ''), "
                "coalesce(m.area, ''), a.ts, a.outcome, a.latency_ms, a.error "
                "FROM collection_attempts a LEFT JOIN meters m ON m.id = a.meter_id "
                "WHERE a.ts >= ? AND a.ts < ? ORDER BY a.ts",
                (start.timestamp(), end.timestamp()),
            ).fetchall()
            index = GROUPINGS.index(by)
            groups: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0.0, ""])
            for row in rows:
                day = datetime.fromtimestamp(row[4], zone).date().isoformat()
                acc = groups[(row[index], day)]
                acc[0] += 1
                acc[1 + ("ok", "timeout", "error").index(row[5])] += 1
                acc[4] += row[6]
                if row[7]:
                    acc[5] = row[7]
            return [
                CollectionRow(g, d, a[0], a[1], a[2], a[3], a[4] / a[0], a[5])
                for (g, d), a in sorted(groups.items())
            ]

        return await self._query(read)


_COMMAND_COLUMNS = ("id, meter_id, command, reason, requested_by, requested_at, status, done_at, "
                    "result")


def _command(r: Sequence[Any]) -> MeterCommand:
    return MeterCommand(int(r[0]), r[1], r[2], r[3], r[4], datetime.fromtimestamp(r[5], UTC),
                        r[6], None if r[7] is None else datetime.fromtimestamp(r[7], UTC), r[8])
