"""Versioned plain-SQL migrations for PostgreSQL, applied in order, each exactly once.

Files live in storage/postgres/migrations/NNNN_name.sql; the TimescaleDB layer in
storage/postgres/migrations/timescale/ is applied only when the extension is present. Applied
versions are recorded in schema_migrations, and an advisory lock keeps two processes
that start together from migrating at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

MIGRATION_LOCK = 0x6D657472  # 'metr'
TIMESCALE_PREFIX = "timescale/"


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    text: str


def _files(folder: Any, prefix: str = "") -> list[Migration]:
    found = [
        Migration(prefix + entry.name.removesuffix(".sql"), entry.read_text("utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(found, key=lambda m: m.version)


def _folder() -> Any:
    return resources.files("storage.postgres") / "migrations"


def plain_migrations() -> list[Migration]:
    return _files(_folder())


def timescale_migrations() -> list[Migration]:
    return _files(_folder() / "timescale", TIMESCALE_PREFIX)


async def timescale_available(conn: psycopg.AsyncConnection[Any]) -> bool:
    """Create the extension if the server has it; any refusal means the plain path."""
    cur = await conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if await cur.fetchone() is None:
        return False
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error:
        return False
    cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    return await cur.fetchone() is not None


async def apply(
    conn: psycopg.AsyncConnection[Any], *, timezone: str, retention_days: int = 0
) -> tuple[list[str], bool]:
    """Apply what is missing; returns (versions applied now, TimescaleDB in use)."""
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}
        for m in plain_migrations():
            if m.version not in done:
                await _run(conn, m.text)
                applied.append(m.version)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                                   (m.version,))
        await conn.execute(
            "UPDATE collector_settings SET value = %s WHERE key = 'timezone'", (timezone,)
        )
    timescale = await timescale_available(conn)
    if timescale:
        params = {
            "timezone": sql.Literal(timezone).as_string(conn),
            "retention_days": str(int(retention_days)),
        }
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            for m in timescale_migrations():
                if m.version not in done:
                    text = m.text
                    for key, value in params.items():
                        text = text.replace("{" + key + "}", value)
                    await _run(conn, text)
                    applied.append(m.version)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES (%s)", (m.version,)
                    )
    return applied, timescale


async def _run(conn: psycopg.AsyncConnection[Any], text: str) -> None:
    # No parameters: psycopg sends the whole file as one simple-protocol query.
    await conn.execute(text.encode("utf-8"))
