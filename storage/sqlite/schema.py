"""The SQLite schema, as migrations applied in order, each exactly once: the same logical
schema as PostgreSQL's numbered SQL files, so a gateway's file and the head-end's
database hold the same rows."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from storage.base import (
    QUALITY_CODES,
    StorageError,
)
from storage.sqlite.billing import SCHEMA as BILLING_SCHEMA
from storage.sqlite.tokens import SCHEMA as TOKENS_SCHEMA
from storage.sqlite.tokens import SESSIONS_SCHEMA

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
_SCHEMA.append((
    "0009_flag_actions",
    # The same logical schema as PostgreSQL's 0009: see its comments.
    """
    CREATE TABLE flag_actions (
        id INTEGER PRIMARY KEY, flag_id INTEGER NOT NULL REFERENCES flags (id),
        at REAL NOT NULL, actor TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('acknowledge', 'assign', 'note', 'close')),
        assignee TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX flag_actions_flag ON flag_actions (flag_id, id)
    """,
))
_SCHEMA.append((
    "0010_meter_commands",
    # The same logical schema as PostgreSQL's 0010: see its comments.
    """
    CREATE TABLE meter_commands (
        id INTEGER PRIMARY KEY, meter_id TEXT NOT NULL,
        command TEXT NOT NULL CHECK (command IN ('read', 'time_sync', 'trip', 'reconnect')),
        reason TEXT NOT NULL DEFAULT '', requested_by TEXT NOT NULL,
        requested_at REAL NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
        done_at REAL, result TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX meter_commands_queued ON meter_commands (id) WHERE status = 'queued';
    CREATE INDEX meter_commands_meter ON meter_commands (meter_id, id)
    """,
))

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


def apply_migrations(db: sqlite3.Connection) -> list[str]:
    """Pending migrations, each in its own transaction; returns the versions applied."""
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
