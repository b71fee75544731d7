"""API tokens, web sessions and the audit trail in SQLite (the same schema as PostgreSQL's
0007 and 0008)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from storage.sqlite.connection import SqliteConnection
from storage.tokens import (
    ApiToken,
    AuditEntry,
    check_new,
    digest,
    new_secret,
    new_session_id,
)
from storage.versions import Refused

SCHEMA = (
    "0007_api",
    """
    CREATE TABLE api_tokens (
        name TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL,
        created_at REAL NOT NULL, revoked_at REAL
    );
    CREATE TABLE api_audit (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, token TEXT NOT NULL,
        action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}'
    );
    """,
)

SESSIONS_SCHEMA = (
    "0008_web_sessions",
    """
    CREATE TABLE web_sessions (
        digest TEXT PRIMARY KEY, token TEXT NOT NULL REFERENCES api_tokens (name),
        expires_at REAL NOT NULL
    );
    CREATE INDEX web_sessions_expiry ON web_sessions (expires_at);
    """,
)


def _token(r: Sequence[Any]) -> ApiToken:
    return ApiToken(r[0], tuple(json.loads(r[1])), datetime.fromtimestamp(r[2], UTC),
                    None if r[3] is None else datetime.fromtimestamp(r[3], UTC))


class SqliteTokens(SqliteConnection):
    """Mixed into SqliteStore, which supplies the connection helpers."""

    async def create_token(self, name: str, scopes: Sequence[str]) -> str:
        chosen = check_new(name, scopes)
        secret = new_secret()
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                raise Refused(f"a token named {name!r} exists; revoke it or pick another name")
            db.execute("INSERT INTO api_tokens VALUES (?,?,?,?,NULL)",
                       (name, digest(secret), json.dumps(chosen), now))

        await self._run(self._tx(write))
        return secret

    async def tokens(self) -> list[ApiToken]:
        return await self._query(lambda db: [_token(r) for r in db.execute(
            "SELECT name, scopes, created_at, revoked_at FROM api_tokens ORDER BY name")])

    async def revoke_token(self, name: str) -> bool:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> bool:
            cur = db.execute("UPDATE api_tokens SET revoked_at = ? WHERE name = ? AND "
                             "revoked_at IS NULL", (now, name))
            return cur.rowcount > 0

        return await self._run(self._tx(write))

    async def token_for(self, secret: str) -> ApiToken | None:
        def read(db: sqlite3.Connection) -> ApiToken | None:
            row = db.execute("SELECT name, scopes, created_at, revoked_at FROM api_tokens "
                             "WHERE digest = ? AND revoked_at IS NULL",
                             (digest(secret),)).fetchone()
            return _token(row) if row else None

        return await self._query(read)

    async def start_session(self, token: str, hours: float) -> str:
        sid = new_session_id()
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM web_sessions WHERE expires_at <= ?", (now,))
            db.execute("INSERT INTO web_sessions VALUES (?,?,?)",
                       (digest(sid), token, now + hours * 3600))

        await self._run(self._tx(write))
        return sid

    async def session_token(self, sid: str) -> ApiToken | None:
        def read(db: sqlite3.Connection) -> ApiToken | None:
            row = db.execute(
                "SELECT t.name, t.scopes, t.created_at, t.revoked_at FROM web_sessions s "
                "JOIN api_tokens t ON t.name = s.token WHERE s.digest = ? AND "
                "s.expires_at > ? AND t.revoked_at IS NULL",
                (digest(sid), datetime.now(UTC).timestamp())).fetchone()
            return _token(row) if row else None

        return await self._query(read)

    async def end_session(self, sid: str) -> None:
        await self._run(self._tx(lambda db: db.execute(
            "DELETE FROM web_sessions WHERE digest = ?", (digest(sid),))))

    async def audit(self, token: str, action: str, detail: dict[str, Any]) -> None:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO api_audit (at, token, action, detail) VALUES (?,?,?,?)",
                       (now, token, action, json.dumps(detail, sort_keys=True, default=str)))

        await self._run(self._tx(write))

    async def audit_trail(self, limit: int = 100) -> list[AuditEntry]:
        return await self._query(lambda db: [
            AuditEntry(datetime.fromtimestamp(r[0], UTC), r[1], r[2], json.loads(r[3]))
            for r in db.execute("SELECT at, token, action, detail FROM api_audit "
                                "ORDER BY id DESC LIMIT ?", (limit,))])
