"""The embedded store: the demo's database, a gateway's local disk, the Postgres spill file.

SQLite calls block, so they run on one worker thread behind a lock; WAL with
synchronous=FULL means a value we acknowledged survives a power cut.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np

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
    codec_json,
)
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
from storage.sqlite_billing import SCHEMA as BILLING_SCHEMA
from storage.sqlite_billing import SqliteBilling
from storage.sqlite_tokens import SCHEMA as TOKENS_SCHEMA
from storage.sqlite_tokens import SESSIONS_SCHEMA, SqliteTokens
from storage.versions import (
    LATE_READ_ACTOR,
    LATE_READ_NOTE,
    LATE_READ_REASON,
    check_replacement,
    key_of,
    plan_versions,
    version_row,
)

T = TypeVar("T")

FORWARD_ACTIVE = "1-0:1.8.0"

_SCHEMA: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE meters (
            id TEXT PRIMARY KEY, protocol TEXT NOT NULL, bus TEXT NOT NULL,
            address TEXT NOT NULL, model TEXT NOT NULL DEFAULT '',
            multiplier REAL NOT NULL DEFAULT 1, area TEXT NOT NULL DEFAULT '',
            exporter INTEGER NOT NULL DEFAULT 0, gateway TEXT NOT NULL DEFAULT '',
            area_meter INTEGER NOT NULL DEFAULT 0, phases INTEGER NOT NULL DEFAULT 1
        );
        CREATE TABLE readings (
            meter_id TEXT NOT NULL, quantity TEXT NOT NULL, ts REAL NOT NULL,
            value REAL NOT NULL, unit TEXT NOT NULL, quality TEXT NOT NULL,
            method TEXT NOT NULL DEFAULT '', source TEXT NOT NULL DEFAULT '',
            received_at REAL NOT NULL,
            PRIMARY KEY (meter_id, quantity, ts)
        ) WITHOUT ROWID;
        CREATE TABLE events (
            meter_id TEXT NOT NULL, ts REAL NOT NULL, kind TEXT NOT NULL,
            details TEXT NOT NULL DEFAULT '{}', received_at REAL NOT NULL,
            PRIMARY KEY (meter_id, ts, kind)
        ) WITHOUT ROWID;
        CREATE TABLE collection_attempts (
            id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, bus TEXT NOT NULL,
            gateway TEXT NOT NULL DEFAULT '', ts REAL NOT NULL, outcome TEXT NOT NULL,
            latency_ms REAL NOT NULL, error TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX collection_attempts_ts ON collection_attempts (ts);
        CREATE TABLE flags (
            id INTEGER PRIMARY KEY, subject TEXT NOT NULL, area TEXT NOT NULL DEFAULT '',
            kind TEXT NOT NULL, severity TEXT NOT NULL, start REAL NOT NULL, "end" REAL NOT NULL,
            evidence TEXT NOT NULL DEFAULT '{}', status TEXT NOT NULL DEFAULT 'open',
            raised_at REAL NOT NULL, cleared_at REAL
        );
        CREATE TABLE dead_letters (
            id INTEGER PRIMARY KEY, source TEXT NOT NULL, payload BLOB NOT NULL,
            reason TEXT NOT NULL, received_at REAL NOT NULL
        );
        """,
    ),
]

_SCHEMA.append((
    "0002_outbox",
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, item TEXT NOT NULL
    )
    """,
))

_SCHEMA.append((
    "0003_dead_letter_digest",
    """
    ALTER TABLE dead_letters ADD COLUMN digest TEXT;
    ALTER TABLE dead_letters ADD COLUMN seen INTEGER NOT NULL DEFAULT 1;
    CREATE UNIQUE INDEX dead_letters_digest ON dead_letters (digest);
    ALTER TABLE outbox ADD COLUMN queued_at REAL NOT NULL DEFAULT 0;
    CREATE INDEX collection_attempts_meter_ts ON collection_attempts (meter_id, ts)
    """,
))

_QUALITY_ROWS = ", ".join(f"({code}, '{q.value}', {q.rank})" for q, code in QUALITY_CODES.items())
_SCHEMA.append((
    "0004_series_readings",
    # The same logical schema as PostgreSQL's 0004: see its comments. An existing file is
    # converted in the migration's transaction and the counts compared before the drop.
    f"""
    CREATE TABLE series (
        id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL, quantity TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'interval', unit TEXT NOT NULL,
        UNIQUE (meter_id, quantity, kind)
    );
    CREATE TABLE sources (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    INSERT INTO sources VALUES (0, '');
    CREATE TABLE methods (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
    INSERT INTO methods VALUES (0, '');
    CREATE TABLE qualities (code INTEGER PRIMARY KEY, letter TEXT NOT NULL UNIQUE,
                            rank INTEGER NOT NULL);
    INSERT INTO qualities VALUES {_QUALITY_ROWS};
    ALTER TABLE readings RENAME TO readings_wide;
    CREATE TABLE readings (
        series_id INTEGER NOT NULL, ts REAL NOT NULL, value REAL NOT NULL,
        quality INTEGER NOT NULL, method_id INTEGER NOT NULL DEFAULT 0,
        source_id INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (series_id, ts)
    ) WITHOUT ROWID;
    CREATE TABLE reading_versions (
        series_id INTEGER NOT NULL, ts REAL NOT NULL, version INTEGER NOT NULL
        CHECK (version > 0), value REAL, quality INTEGER NOT NULL,
        method_id INTEGER NOT NULL DEFAULT 0, reason TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL, created_at REAL NOT NULL, note TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (series_id, ts, version)
    ) WITHOUT ROWID;
    INSERT INTO series (meter_id, quantity, kind, unit)
        SELECT meter_id, quantity, kind, min(unit) FROM (
            SELECT meter_id, quantity, unit, CASE WHEN source LIKE '%:frozen%'
                   THEN 'daily' ELSE 'interval' END AS kind FROM readings_wide)
        GROUP BY meter_id, quantity, kind;
    INSERT INTO sources (name) SELECT DISTINCT source FROM readings_wide WHERE source <> '';
    INSERT INTO methods (name) SELECT DISTINCT method FROM readings_wide WHERE method <> '';
    INSERT INTO readings
        SELECT s.id, w.ts, w.value, q.code, m.id, src.id FROM readings_wide w
        JOIN series s ON s.meter_id = w.meter_id AND s.quantity = w.quantity
             AND s.kind = CASE WHEN w.source LIKE '%:frozen%' THEN 'daily' ELSE 'interval' END
        JOIN qualities q ON q.letter = w.quality
        JOIN methods m ON m.name = w.method
        JOIN sources src ON src.name = w.source;
    CREATE VIEW reading_values AS
        SELECT s.meter_id, s.quantity, s.kind, r.ts, r.value, s.unit, q.letter AS quality,
               m.name AS method, src.name AS source, r.series_id
        FROM readings r JOIN series s ON s.id = r.series_id
        JOIN qualities q ON q.code = r.quality JOIN methods m ON m.id = r.method_id
        JOIN sources src ON src.id = r.source_id
    """,
))
_CONVERTED_CHECK = "0004_series_readings"
_SCHEMA.append((
    "0005_vee",
    # The same logical schema as PostgreSQL's 0005.
    """
    CREATE TABLE vee_verdicts (
        meter_id TEXT NOT NULL, day TEXT NOT NULL, rule TEXT NOT NULL,
        passed INTEGER NOT NULL, evidence TEXT NOT NULL DEFAULT '{}',
        judged_at REAL NOT NULL, PRIMARY KEY (meter_id, day, rule)
    ) WITHOUT ROWID;
    CREATE INDEX vee_verdicts_day ON vee_verdicts (day) WHERE NOT passed;
    CREATE TABLE service_points (
        id TEXT PRIMARY KEY, account TEXT NOT NULL DEFAULT '', tariff TEXT NOT NULL DEFAULT '',
        segment TEXT NOT NULL DEFAULT '', area TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE meter_assignments (
        id INTEGER PRIMARY KEY, service_point_id TEXT NOT NULL REFERENCES service_points (id),
        meter_id TEXT NOT NULL, start_ts REAL, end_ts REAL,
        multiplier REAL NOT NULL DEFAULT 1 CHECK (multiplier > 0),
        start_read REAL, final_read REAL, recorded_at REAL NOT NULL,
        CHECK (end_ts IS NULL OR start_ts IS NULL OR end_ts > start_ts)
    );
    CREATE INDEX meter_assignments_meter ON meter_assignments (meter_id);
    CREATE INDEX meter_assignments_point ON meter_assignments (service_point_id)
    """,
))

_SCHEMA.append(BILLING_SCHEMA)
_SCHEMA.append(TOKENS_SCHEMA)
_SCHEMA.append(SESSIONS_SCHEMA)

def _finish_conversion(db: sqlite3.Connection) -> None:
    """Drop the wide table only once every row is in the narrow one, in one unit."""
    mixed = db.execute(
        "SELECT meter_id || ' ' || quantity FROM readings_wide GROUP BY meter_id, quantity "
        "HAVING count(DISTINCT unit) > 1 LIMIT 5").fetchall()
    if mixed:
        raise StorageError(
            f"readings of {', '.join(m for (m,) in mixed)} are stored in more than one "
            "unit; a series has one unit. Convert them to one unit, then migrate again.")
    wide = db.execute("SELECT count(*) FROM readings_wide").fetchone()[0]
    narrow = db.execute("SELECT count(*) FROM readings").fetchone()[0]
    if wide != narrow:
        raise StorageError(f"conversion to series-keyed readings would lose {wide - narrow} "
                           "rows; nothing was changed")
    db.execute("DROP TABLE readings_wide")
_RANK_NEW = quality_code_rank_sql("excluded.quality")
_RANK_OLD = quality_code_rank_sql("readings.quality")
_RANK_STAGED = quality_code_rank_sql("s.quality")
_RANK_STORED = quality_code_rank_sql("r.quality")


def _snapshot(fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
    def wrapped(db: sqlite3.Connection) -> T:
        db.execute("BEGIN")
        try:
            return fn(db)
        finally:
            if db.in_transaction:  # a read-only transaction: ending it discards nothing
                db.execute("ROLLBACK")

    return wrapped


def create_private(path: str) -> None:
    """Create the database file readable by its owner only, before SQLite opens it:
    SQLite gives its -wal and -shm files the same mode, and meter data is customer data."""
    if path == ":memory:":
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))


def path_from_url(url: str) -> str:
    if not url.startswith("sqlite://"):
        raise StorageError(f"not a sqlite URL: {url}")
    rest = url[len("sqlite://") :]
    if rest in ("", "/:memory:", ":memory:"):
        return ":memory:"
    return rest[1:] if rest.startswith("/") else rest


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: str
    item: dict[str, Any]


_TRANSIENT = ("locked", "busy", "disk", "i/o", "full", "unable to open", "readonly",
              "interrupted")


def transient(exc: sqlite3.OperationalError) -> bool:
    """Locked, busy, a full disk or an I/O error pass; a missing table or column, or SQL
    SQLite cannot parse, is a fault that retrying the same statement cannot mend, and
    retrying it forever would hold a gateway's outbox behind it."""
    text = str(exc).lower()
    if text.startswith("no such") or "syntax error" in text or "has no column" in text:
        return False  # before the words below: a column may be named "disk_full"
    return any(word in text for word in _TRANSIENT)


class SqliteStore(SqliteBilling, SqliteTokens):
    """With `outbox=True` (a gateway), every new or changed row is also queued in the
    outbox table in the same transaction, so a stored read is never left unsent."""

    def __init__(self, path: str, *, outbox: bool = False, outbox_max_rows: int = 0) -> None:
        self.outbox = outbox
        self.outbox_max_rows = outbox_max_rows
        self.outbox_evicted = 0
        # Rows queued, kept up to date by the writes themselves (under the write lock):
        # counting a million-row outbox on every write would be a scan per meter read.
        # None means "not known": count once, and again after a failed transaction.
        self._outbox_rows: int | None = None
        self.path = path
        try:
            create_private(path)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
        except (OSError, sqlite3.Error) as exc:
            raise StorageError(f"cannot open SQLite database {path}: {exc}") from exc
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._lock = threading.Lock()
        # Queries get their own connection: in WAL mode a reader never blocks the writer,
        # so a flag pass or a report does not hold up the buses' writes.
        if path == ":memory:":
            self._reader, self._read_lock = self._db, self._lock
        else:
            self._reader = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._reader.execute("PRAGMA busy_timeout=5000")
            self._read_lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(path_from_url(url))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._on(self._db, self._lock, fn)

    async def _query(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Every read runs in one read transaction: WAL gives it one snapshot for all its
        statements, so a series or a version committed between two of them cannot be in
        one result and missing from the next."""
        return await self._on(self._reader, self._read_lock, _snapshot(fn))

    async def _on(self, db: sqlite3.Connection, lock: threading.Lock,
                  fn: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with lock:
                try:
                    return fn(db)
                except sqlite3.OperationalError as exc:
                    if transient(exc):  # the same write may succeed later
                        raise StorageUnavailable(f"sqlite {self.path}: {exc}") from exc
                    raise StorageError(f"sqlite {self.path}: {exc}") from exc
                except (sqlite3.Error, ValueError, OverflowError, TypeError) as exc:
                    # Refused for what the rows hold (a constraint, a lone surrogate, a
                    # number SQLite cannot bind): retrying the same rows cannot help.
                    raise StorageError(f"sqlite {self.path}: {exc}") from exc

        return await asyncio.to_thread(locked)

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> Callable[[sqlite3.Connection], T]:
        def wrapped(db: sqlite3.Connection) -> T:
            db.execute("BEGIN IMMEDIATE")
            try:
                result = fn(db)
                db.execute("COMMIT")
            except BaseException:
                self._outbox_rows = None  # what the transaction counted did not land
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result

        return wrapped

    async def migrate(self) -> list[str]:
        def apply(db: sqlite3.Connection) -> list[str]:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
            )
            done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            applied = []
            for version, sql in _SCHEMA:
                if version in done:
                    continue
                db.execute("BEGIN IMMEDIATE")
                try:
                    for statement in sql.split(";"):
                        if statement.strip() and not statement.strip().startswith("--"):
                            db.execute(statement)
                    if version == _CONVERTED_CHECK:
                        _finish_conversion(db)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?)",
                        (version, datetime.now(UTC).timestamp()),
                    )
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                applied.append(version)
            return applied

        return await self._run(apply)

    async def close(self) -> None:
        if self._reader is not self._db:
            await self._on(self._reader, self._read_lock, lambda db: db.close())
        await self._run(lambda db: db.close())

    async def ping(self) -> None:
        await self._query(lambda db: db.execute("SELECT 1").fetchone())

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

    async def write_readings(self, readings: Sequence[Reading]) -> IngestResult:
        if not readings:
            return IngestResult()
        received = datetime.now(UTC).timestamp()
        rows = [
            (r.meter_id, r.quantity, r.kind.value, r.unit, r.ts.timestamp(), r.value,
             QUALITY_CODES[r.quality], r.quality.value, r.method, r.source, received)
            for r in readings
        ]
        def write(db: sqlite3.Connection) -> IngestResult:
            if not self.outbox:
                return _ingest(db, rows)
            queued = self._outbox_count(db)
            result = _ingest(db, rows, outbox=True)
            # _ingest queues exactly the rows it found new or changed.
            self._outbox_rows = queued + result.new + result.updated
            self._bound_outbox(db)
            return result

        return await self._run(self._tx(write))

    def _queue(self, db: sqlite3.Connection, kind: str, items: list[dict[str, Any]]) -> None:
        if self.outbox and items:
            queued = self._outbox_count(db)
            now = datetime.now(UTC).timestamp()
            db.executemany("INSERT INTO outbox (kind, item, queued_at) VALUES (?, ?, ?)",
                           [(kind, json.dumps(i), now) for i in items])
            self._outbox_rows = queued + len(items)
            self._bound_outbox(db)

    def _outbox_count(self, db: sqlite3.Connection) -> int:
        if self._outbox_rows is None:
            self._outbox_rows = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        return self._outbox_rows

    def _bound_outbox(self, db: sqlite3.Connection) -> None:
        """Past the configured bound, the oldest queued rows give way (and are counted):
        a gateway's disk is finite, and the newest register reads matter most."""
        if not self.outbox_max_rows:
            return
        size = self._outbox_count(db)
        excess = size - self.outbox_max_rows
        if excess > 0:
            db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id "
                       "LIMIT ?)", (excess,))
            self.outbox_evicted += excess
            self._outbox_rows = size - excess

    async def outbox_peek(self, limit: int) -> list[OutboxRow]:
        def read(db: sqlite3.Connection) -> list[OutboxRow]:
            rows = db.execute("SELECT id, kind, item FROM outbox ORDER BY id LIMIT ?",
                              (limit,)).fetchall()
            return [OutboxRow(int(r[0]), r[1], json.loads(r[2])) for r in rows]

        return await self._query(read)

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        def delete(db: sqlite3.Connection) -> None:
            queued = self._outbox_count(db)
            cur = db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            self._outbox_rows = queued - cur.rowcount

        await self._run(self._tx(delete))

    async def outbox_size(self) -> int:
        known = self._outbox_rows
        if known is not None:
            return known
        return await self._query(
            lambda db: int(db.execute("SELECT count(*) FROM outbox").fetchone()[0]))

    async def outbox_oldest_age(self, now: datetime | None = None) -> float:
        """Seconds the oldest queued row has waited: how far behind the uplink is."""
        oldest = await self._query(
            lambda db: (db.execute("SELECT queued_at FROM outbox ORDER BY id LIMIT 1").fetchone()
                        or (None,))[0])
        if oldest is None:
            return 0.0
        return max(0.0, (now or datetime.now(UTC)).timestamp() - float(oldest))

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

    async def count_readings(self) -> int:
        return await self._query(
            lambda db: int(db.execute("SELECT count(*) FROM readings").fetchone()[0])
        )

    async def readings_in(
        self, start: datetime, end: datetime, quantities: Sequence[str]
    ) -> list[Reading]:
        marks = ",".join("?" * len(quantities))

        def read(db: sqlite3.Connection) -> list[Reading]:
            rows = db.execute(
                f"{_VALUES_SELECT} WHERE ts >= ? AND ts <= ? AND quantity IN ({marks}) "
                "ORDER BY meter_id, quantity, kind, ts",
                (start.timestamp(), end.timestamp(), *quantities),
            ).fetchall()
            return [_reading(r) for r in rows]

        return await self._query(read)

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

    async def clear_flag(self, flag_id: int) -> bool:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE flags SET status = 'cleared', cleared_at = ? "
                             "WHERE id = ? AND status = 'open'", (now, flag_id))
            return cur.rowcount > 0

        return await self._run(self._tx(write))

    async def latest_readings(self, meter_ids: Sequence[str] | None = None) -> list[Reading]:
        def read(db: sqlite3.Connection) -> list[Reading]:
            rows = db.execute(
                "SELECT r.meter_id, r.quantity, r.ts, r.value, r.unit, r.quality, r.source, "
                "r.method, r.kind FROM reading_values r JOIN (SELECT series_id, max(ts) AS ts "
                "FROM readings GROUP BY series_id) l "
                "ON r.series_id = l.series_id AND r.ts = l.ts "
                "ORDER BY r.meter_id, r.quantity, r.kind = 'interval', r.kind"
            ).fetchall()
            wanted = set(meter_ids) if meter_ids is not None else None
            return [_reading(r) for r in rows if wanted is None or r[0] in wanted]

        return await self._query(read)

    async def series(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[Reading]:
        def read(db: sqlite3.Connection) -> list[Reading]:
            rows = db.execute(
                f"{_VALUES_SELECT} WHERE meter_id = ? AND quantity = ? AND kind = ? "
                "AND ts >= ? AND ts <= ? ORDER BY ts",
                (meter_id, quantity, kind.value, start.timestamp(), end.timestamp()),
            ).fetchall()
            return [_reading(r) for r in rows]

        return await self._query(read)

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

    async def daily_consumption(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC"
    ) -> list[DailyConsumption]:
        """Forward active energy per local day: register at day end minus register at day start.

        Computed from register reads at the day's boundaries (the readings stamped at
        local midnight), so a DST day correctly has 23 or 25 hours of energy in it.
        """
        if by not in ("meter", "area"):
            raise StorageError("daily consumption groups by meter or area")
        zone = ZoneInfo(tz)

        def read(db: sqlite3.Connection) -> list[DailyConsumption]:
            rows = db.execute(
                "SELECT r.meter_id, coalesce(m.area, ''), coalesce(m.area_meter, 0), r.ts, r.value "
                "FROM reading_values r LEFT JOIN meters m ON m.id = r.meter_id "
                "WHERE r.quantity = ? AND r.kind IN ('interval', 'daily') AND r.ts >= ? "
                "AND r.ts <= ? ORDER BY r.meter_id, r.ts, r.kind = 'interval'",
                (FORWARD_ACTIVE, start.timestamp(), (end + timedelta(days=1)).timestamp()),
            ).fetchall()
            per_meter: dict[str, dict[float, float]] = defaultdict(dict)
            info: dict[str, tuple[str, bool]] = {}
            for meter_id, area, area_meter, ts, value in rows:
                per_meter[meter_id][ts] = value
                info[meter_id] = (area, bool(area_meter))
            return daily_from_boundaries(per_meter, info, start, end, zone, by)

        return await self._query(read)

    # --- validated reads (storage.versions.ValidatedStore) ----------------------------

    async def current_values(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        def read(db: sqlite3.Connection) -> list[ValueVersion]:
            return _current_versions(db, quantity, kind, start, end, meter_ids)

        return await self._query(read)

    async def current_arrays(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> CurrentArrays:
        def read(db: sqlite3.Connection) -> CurrentArrays:
            return _current_arrays(db, quantity, kind, start, end, meter_ids)

        return await self._query(read)

    async def value_history(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        def read(db: sqlite3.Connection) -> list[ValueVersion]:
            return _versions(db, quantity, kind, start, end, [meter_id])

        return await self._query(read)

    async def write_versions(self, versions: Sequence[ValueVersion]) -> int:
        if not versions:
            return 0
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> int:
            ids = _series_ids(db, versions)
            tops: dict[tuple[str, str, str, datetime], ValueVersion] = {}
            methods = dict(db.execute("SELECT id, name FROM methods").fetchall())
            for v in versions:
                sid = ids[(v.meter_id, v.quantity, str(v.kind))]
                row = db.execute(
                    "SELECT version, value, quality, method_id, reason, actor, note FROM ("
                    "SELECT 0 AS version, value, quality, method_id, '' AS reason, '' AS actor,"
                    " '' AS note FROM readings WHERE series_id = ? AND ts = ? UNION ALL "
                    "SELECT version, value, quality, method_id, reason, actor, note "
                    "FROM reading_versions WHERE series_id = ? AND ts = ?) "
                    "ORDER BY version DESC LIMIT 1",
                    (sid, v.ts.timestamp(), sid, v.ts.timestamp())).fetchone()
                if row is not None:
                    tops[key_of(v)] = version_row(
                        v.meter_id, v.quantity, str(v.kind), v.unit, v.ts, row[0], row[1],
                        QUALITY_OF_CODE[row[2]], methods[row[3]], row[4], row[5], row[6], None)
            planned = plan_versions(tops, versions)
            db.executemany("INSERT OR IGNORE INTO methods (name) VALUES (?)",
                           [(v.method,) for v in planned])
            method_ids = {n: i for i, n in db.execute("SELECT id, name FROM methods")}
            db.executemany(
                "INSERT INTO reading_versions (series_id, ts, version, value, quality, "
                "method_id, reason, actor, created_at, note) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(ids[(v.meter_id, v.quantity, str(v.kind))], v.ts.timestamp(), v.version,
                  v.value, QUALITY_CODES[v.quality], method_ids[v.method], v.reason, v.actor,
                  now, v.note) for v in planned])
            return len(planned)

        return await self._run(self._tx(write))

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        now = datetime.now(UTC).timestamp()
        rows = [(v.meter_id, v.day.isoformat(), v.rule, int(v.passed),
                 json.dumps(v.evidence, sort_keys=True), now) for v in verdicts]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO vee_verdicts VALUES (?,?,?,?,?,?) ON CONFLICT (meter_id, day, "
                "rule) DO UPDATE SET passed = excluded.passed, evidence = excluded.evidence, "
                "judged_at = excluded.judged_at WHERE passed != excluded.passed "
                "OR evidence != excluded.evidence", rows)

        await self._run(self._tx(write))

    async def verdicts(self, first: date, last: date,
                       meter_ids: Sequence[str] | None = None) -> list[Verdict]:
        def read(db: sqlite3.Connection) -> list[Verdict]:
            rows = db.execute(
                "SELECT meter_id, day, rule, passed, evidence FROM vee_verdicts "
                "WHERE day >= ? AND day <= ? ORDER BY meter_id, day, rule",
                (first.isoformat(), last.isoformat())).fetchall()
            wanted = set(meter_ids) if meter_ids is not None else None
            return [Verdict(m, date.fromisoformat(d), r, bool(p), json.loads(e))
                    for m, d, r, p, e in rows if wanted is None or m in wanted]

        return await self._query(read)

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


_VALUES_SELECT = ("SELECT meter_id, quantity, ts, value, unit, quality, source, method, kind "
                  "FROM reading_values")


def _reading(r: Sequence[Any]) -> Reading:
    return Reading(
        meter_id=r[0],
        quantity=r[1],
        ts=datetime.fromtimestamp(r[2], UTC),
        value=r[3],
        unit=r[4],
        quality=Quality(r[5]),
        source=r[6],
        method=r[7],
        kind=ReadKind(r[8]),
    )


# A raw actual read of a key whose current version is VEE's estimate: the read arrived
# late, and replaces the estimate with a new version; the estimate stays in the history.
_LATE_READS = f"""
INSERT INTO reading_versions (series_id, ts, version, value, quality, method_id, reason, actor,
                              created_at, note)
SELECT v.series_id, v.ts, v.version + 1, r.value, r.quality, r.method_id, ?, ?, ?, ?
FROM (SELECT series_id, ts, max(version) AS version, quality, actor FROM reading_versions
      WHERE series_id IN (SELECT DISTINCT series_id FROM series_staging)
      GROUP BY series_id, ts) v
JOIN series_staging st ON st.series_id = v.series_id AND st.ts = v.ts
JOIN readings r ON r.series_id = v.series_id AND r.ts = v.ts
WHERE v.actor LIKE '{AUTOMATIC}%' AND {_RANK_STORED} > {quality_code_rank_sql("v.quality")}
"""
_CHANGED = (f"{_RANK_STAGED} >= {_RANK_STORED} AND (s.value != r.value OR "
            "s.quality != r.quality OR s.method_id != r.method_id)")


def _ingest(
    db: sqlite3.Connection, rows: list[tuple[Any, ...]], *, outbox: bool = False
) -> IngestResult:
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS series_staging (meter_id TEXT, quantity TEXT, "
        "kind TEXT, unit TEXT, ts REAL, value REAL, quality INTEGER, letter TEXT, method TEXT, "
        "source TEXT, queued_at REAL, series_id INTEGER, method_id INTEGER, "
        "source_id INTEGER, PRIMARY KEY (meter_id, quantity, kind, ts))"
    )
    db.execute("DELETE FROM series_staging")
    # Within one batch the last value for a key wins, as it would arriving one by one.
    db.executemany(
        "INSERT OR REPLACE INTO series_staging (meter_id, quantity, kind, unit, ts, value, "
        "quality, letter, method, source, queued_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT OR IGNORE INTO series (meter_id, quantity, kind, unit) "
               "SELECT DISTINCT meter_id, quantity, kind, unit FROM series_staging")
    db.execute("INSERT OR IGNORE INTO sources (name) SELECT DISTINCT source FROM series_staging")
    db.execute("INSERT OR IGNORE INTO methods (name) SELECT DISTINCT method FROM series_staging")
    db.execute(
        "UPDATE series_staging SET "
        "series_id = (SELECT id FROM series x WHERE x.meter_id = series_staging.meter_id "
        "AND x.quantity = series_staging.quantity AND x.kind = series_staging.kind), "
        "source_id = (SELECT id FROM sources WHERE name = series_staging.source), "
        "method_id = (SELECT id FROM methods WHERE name = series_staging.method)")
    wrong = db.execute(
        "SELECT s.meter_id, s.quantity, s.kind, x.unit, s.unit FROM series_staging s "
        "JOIN series x ON x.id = s.series_id WHERE x.unit != s.unit LIMIT 5").fetchall()
    if wrong:
        raise UnitMismatch("readings refused, a series keeps one unit: " + "; ".join(
            f"{m} {q} ({k}) is in {have}, got {got}" for m, q, k, have, got in wrong))
    new = db.execute(
        "SELECT count(*) FROM series_staging s WHERE NOT EXISTS (SELECT 1 FROM readings r "
        "WHERE r.series_id = s.series_id AND r.ts = s.ts)"
    ).fetchone()[0]
    updated = db.execute(
        "SELECT count(*) FROM series_staging s JOIN readings r ON r.series_id = s.series_id "
        f"AND r.ts = s.ts WHERE {_CHANGED}"
    ).fetchone()[0]
    if outbox and new + updated:
        db.execute(
            "INSERT INTO outbox (kind, item, queued_at) SELECT 'reading', "
            "json_object('meter', s.meter_id, "
            "'quantity', s.quantity, 'ts', strftime('%Y-%m-%dT%H:%M:%fZ', s.ts, 'unixepoch'), "
            "'value', s.value, 'unit', s.unit, 'quality', s.letter, 'method', s.method, "
            "'source', s.source, 'kind', s.kind), s.queued_at FROM series_staging s "
            "LEFT JOIN readings r ON r.series_id = s.series_id AND r.ts = s.ts "
            f"WHERE r.series_id IS NULL OR ({_CHANGED}) "
            "ORDER BY s.ts, s.meter_id, s.quantity"
        )
    db.execute(
        "INSERT INTO readings SELECT series_id, ts, value, quality, method_id, source_id "
        "FROM series_staging WHERE true "
        "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, "
        "quality = excluded.quality, method_id = excluded.method_id, "
        "source_id = excluded.source_id "
        f"WHERE {_RANK_NEW} >= {_RANK_OLD} AND (excluded.value != readings.value OR "
        "excluded.quality != readings.quality OR excluded.method_id != readings.method_id)"
    )
    db.execute(_LATE_READS, (LATE_READ_REASON, LATE_READ_ACTOR,
                             datetime.now(UTC).timestamp(), LATE_READ_NOTE))
    return IngestResult(new=new, updated=updated, unchanged=len(rows) - new - updated)


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


def _series_ids(db: sqlite3.Connection,
                versions: Sequence[ValueVersion]) -> dict[tuple[str, str, str], int]:
    """Each version's series id, creating series never read before (a null estimate for
    a meter that has not answered yet still needs somewhere to live)."""
    wanted = {(v.meter_id, v.quantity, str(v.kind)): v.unit for v in versions}
    ids = {}
    for (meter, quantity, kind), unit in wanted.items():
        db.execute("INSERT OR IGNORE INTO series (meter_id, quantity, kind, unit) "
                   "VALUES (?,?,?,?)", (meter, quantity, kind, unit))
        sid, have = db.execute("SELECT id, unit FROM series WHERE meter_id = ? AND "
                               "quantity = ? AND kind = ?", (meter, quantity, kind)).fetchone()
        if have != unit:
            raise UnitMismatch(f"a version of {meter} {quantity} ({kind}) is in {unit}, "
                               f"the series is in {have}")
        ids[(meter, quantity, kind)] = sid
    return ids


def _series_filter(quantity: str, kind: ReadKind, meter_ids: Sequence[str] | None
                   ) -> tuple[str, list[Any]]:
    where = "quantity = ? AND kind = ?"
    args: list[Any] = [quantity, kind.value]
    if meter_ids is not None:
        where += f" AND meter_id IN ({','.join('?' * len(meter_ids))})"
        args += list(meter_ids)
    return where, args


def _versions(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
              end: datetime, meter_ids: Sequence[str] | None) -> list[ValueVersion]:
    """Raw reads (version 0) and every later version."""
    where, args = _series_filter(quantity, kind, meter_ids)
    span = (start.timestamp(), end.timestamp())
    rows = db.execute(
        "SELECT s.meter_id, s.unit, v.ts, v.version, v.value, v.quality, v.method_id, "
        "v.reason, v.actor, v.note, v.created_at FROM ("
        "SELECT series_id, ts, 0 AS version, value, quality, method_id, '' AS reason, "
        "'' AS actor, '' AS note, NULL AS created_at FROM readings "
        f"WHERE series_id IN (SELECT id FROM series WHERE {where}) AND ts >= ? AND ts <= ? "
        "UNION ALL SELECT series_id, ts, version, value, quality, method_id, reason, actor, "
        "note, created_at FROM reading_versions "
        f"WHERE series_id IN (SELECT id FROM series WHERE {where}) AND ts >= ? AND ts <= ?"
        ") v JOIN series s ON s.id = v.series_id ORDER BY s.meter_id, v.ts, v.version",
        (*args, *span, *args, *span)).fetchall()
    methods = dict(db.execute("SELECT id, name FROM methods").fetchall())
    return [version_row(r[0], quantity, kind.value, r[1], datetime.fromtimestamp(r[2], UTC),
                        r[3], r[4], QUALITY_OF_CODE[r[5]], methods[r[6]], r[7], r[8], r[9],
                        None if r[10] is None else datetime.fromtimestamp(r[10], UTC))
            for r in rows]


def _current_rows(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
                  end: datetime, meter_ids: Sequence[str] | None
                  ) -> Iterator[tuple[str, str, float, tuple[Any, ...]]]:
    """Each key's top version as (meter, unit, ts, (version, value, quality, method_id,
    reason, actor, note, created_at)), by meter and time. Raw reads are read straight
    off their primary key and the few later versions laid over them in Python: a GROUP
    BY over the union of both tables costs ten times as much, and billing and VEE read
    millions of these."""
    where, args = _series_filter(quantity, kind, meter_ids)
    series = {sid: (meter, unit) for sid, meter, unit in db.execute(
        f"SELECT id, meter_id, unit FROM series WHERE {where}", args)}
    if not series:
        return
    span = (start.timestamp(), end.timestamp())
    chosen = f"series_id IN (SELECT id FROM series WHERE {where}) AND ts >= ? AND ts <= ?"
    tops: dict[tuple[int, float], tuple[Any, ...]] = {}
    for r in db.execute(
            "SELECT series_id, ts, max(version), value, quality, method_id, reason, actor, "
            f"note, created_at FROM reading_versions WHERE {chosen} GROUP BY series_id, ts",
            (*args, *span)):
        tops[(r[0], r[1])] = r[2:]
    per: dict[int, list[tuple[float, tuple[Any, ...]]]] = defaultdict(list)
    for sid, ts, value, quality, method_id in db.execute(
            f"SELECT series_id, ts, value, quality, method_id FROM readings WHERE {chosen} "
            "ORDER BY series_id, ts", (*args, *span)):
        top = tops.pop((sid, ts), None) if tops else None
        per[sid].append((ts, top or (0, value, quality, method_id, "", "", "", None)))
    for (sid, ts), top in tops.items():
        # A version with no raw read under it (an estimate for a gap), merged in order.
        per[sid].append((ts, top))
        per[sid].sort(key=lambda r: r[0])
    for sid in sorted(per, key=lambda i: series[i][0]):
        meter, unit = series[sid]
        for ts, row in per[sid]:
            yield meter, unit, ts, row


def _current_versions(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
                      end: datetime, meter_ids: Sequence[str] | None) -> list[ValueVersion]:
    methods = dict(db.execute("SELECT id, name FROM methods").fetchall())
    stamps: dict[float, datetime] = {}
    out: list[ValueVersion] = []
    for meter, unit, ts, (version, value, quality, method_id, reason, actor, note,
                          created) in _current_rows(db, quantity, kind, start, end, meter_ids):
        at = stamps.get(ts)
        if at is None:
            at = stamps[ts] = datetime.fromtimestamp(ts, UTC)
        out.append(version_row(
            meter, quantity, kind.value, unit, at, version, value, QUALITY_OF_CODE[quality],
            methods[method_id], reason, actor, note,
            None if created is None else datetime.fromtimestamp(created, UTC)))
    return out


def _current_arrays(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
                    end: datetime, meter_ids: Sequence[str] | None) -> CurrentArrays:
    """Straight from the rows into one float matrix: every column here is a number.
    Named meters are asked for by their series ids, found once: SQLite would otherwise
    bind and search the meter list again for each table."""
    where, args = _series_filter(quantity, kind, meter_ids)
    found = db.execute(f"SELECT id, meter_id, unit FROM series WHERE {where}", args).fetchall()
    if not found:
        return empty_arrays()
    meter_of = {sid: meter for sid, meter, _ in found}
    unit_of = {sid: unit for sid, _, unit in found}
    span = (start.timestamp(), end.timestamp())
    if meter_ids is None:
        chosen, ids = f"series_id IN (SELECT id FROM series WHERE {where})", args
    else:
        ids = list(meter_of)
        chosen = f"series_id IN ({','.join('?' * len(ids))})"
    chosen += " AND ts >= ? AND ts <= ?"
    # Four columns, quality and method packed in one: the sqlite3 module's cost is per
    # column fetched, and this is most of a bulk read's time.
    packed = np.array(db.execute(
        f"SELECT series_id, ts, value, quality * {_PACK} + method_id FROM readings "
        f"WHERE {chosen} ORDER BY series_id, ts", (*ids, *span)).fetchall(),
        dtype=np.float64).reshape(-1, 4)
    raw = np.zeros((len(packed), 7))
    raw[:, :3] = packed[:, :3]
    raw[:, 3], raw[:, 4] = np.divmod(packed[:, 3].astype(np.int64), _PACK)
    later = db.execute(
        "SELECT series_id, ts, coalesce(value, 0), quality, method_id, version, "
        f"actor LIKE '{AUTOMATIC}%' FROM reading_versions WHERE {chosen}",
        (*ids, *span)).fetchall()
    names: dict[int, str] = dict(db.execute("SELECT id, name FROM methods"))
    methods = [""] * (max(names) + 1)
    for i, n in names.items():
        methods[i] = n
    columns = np.vstack([raw, np.array(later, dtype=np.float64).reshape(-1, 7)])
    return from_columns(meter_of, columns, methods, unit_of)


_PACK = 1 << 20
"""Method ids stay below this (one per estimation method and import)."""
