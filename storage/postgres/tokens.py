"""API tokens, web sessions and the audit trail in PostgreSQL (migrations 0007_api and
0008_web_sessions)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, timedelta
from typing import Any

import psycopg

from storage.postgres.connection import PostgresConnection
from storage.tokens import (
    ApiToken,
    AuditEntry,
    check_new,
    digest,
    new_secret,
    new_session_id,
)
from storage.versions import Refused


def _token(r: Sequence[Any]) -> ApiToken:
    return ApiToken(r[0], tuple(r[1]), r[2].astimezone(UTC), r[3] and r[3].astimezone(UTC))


class PostgresTokens(PostgresConnection):
    """Mixed into PostgresStore."""

    async def create_token(self, name: str, scopes: Sequence[str]) -> str:
        chosen = check_new(name, scopes)
        secret = new_secret()
        async with self._conn() as conn:
            try:
                await conn.execute("INSERT INTO api_tokens (name, digest, scopes) "
                                   "VALUES (%s, %s, %s)", (name, digest(secret), list(chosen)))
            except psycopg.errors.UniqueViolation:
                raise Refused(f"a token named {name!r} exists; revoke it or pick another "
                              "name") from None
        return secret

    async def tokens(self) -> list[ApiToken]:
        async with self._read() as conn:
            cur = await conn.execute("SELECT name, scopes, created_at, revoked_at "
                                     "FROM api_tokens ORDER BY name")
            return [_token(r) for r in await cur.fetchall()]

    async def revoke_token(self, name: str) -> bool:
        async with self._conn() as conn:
            cur = await conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = %s "
                                     "AND revoked_at IS NULL", (name,))
            return cur.rowcount > 0

    async def token_for(self, secret: str) -> ApiToken | None:
        async with self._read() as conn:
            cur = await conn.execute("SELECT name, scopes, created_at, revoked_at FROM "
                                     "api_tokens WHERE digest = %s AND revoked_at IS NULL",
                                     (digest(secret),))
            row = await cur.fetchone()
            return _token(row) if row else None

    async def start_session(self, token: str, hours: float) -> str:
        sid = new_session_id()
        async with self._conn() as conn:
            await conn.execute("DELETE FROM web_sessions WHERE expires_at <= now()")
            await conn.execute("INSERT INTO web_sessions VALUES (%s, %s, now() + %s)",
                               (digest(sid), token, timedelta(hours=hours)))
        return sid

    async def session_token(self, sid: str) -> ApiToken | None:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT t.name, t.scopes, t.created_at, t.revoked_at FROM web_sessions s "
                "JOIN api_tokens t ON t.name = s.token WHERE s.digest = %s AND "
                "s.expires_at > now() AND t.revoked_at IS NULL", (digest(sid),))
            row = await cur.fetchone()
            return _token(row) if row else None

    async def end_session(self, sid: str) -> None:
        async with self._conn() as conn:
            await conn.execute("DELETE FROM web_sessions WHERE digest = %s", (digest(sid),))

    async def audit(self, token: str, action: str, detail: dict[str, Any]) -> None:
        async with self._conn() as conn:
            await conn.execute("INSERT INTO api_audit (token, action, detail) "
                               "VALUES (%s, %s, %s)",
                               (token, action, json.dumps(detail, sort_keys=True, default=str)))

    async def audit_trail(self, limit: int = 100) -> list[AuditEntry]:
        async with self._read() as conn:
            cur = await conn.execute("SELECT at, token, action, detail FROM api_audit "
                                     "ORDER BY id DESC LIMIT %s", (limit,))
            return [AuditEntry(r[0].astimezone(UTC), r[1], r[2], r[3])
                    for r in await cur.fetchall()]
