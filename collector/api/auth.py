"""Who may call what: bearer tokens with scopes for the API, and for the web view a
login form that exchanges a token for a session cookie (HttpOnly, SameSite=Strict).

Every request looks its token up again, so a revoked token stops working at once,
session or not. `admin` holds every scope.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request

from collector.api.problems import Problem
from storage.tokens import ApiToken, TokenStore

COOKIE = "mc_session"


@dataclass
class Sessions:
    """Web sessions in memory: a restart logs everyone out, which is the safe side."""

    hours: float
    secure: bool = False
    _by_id: dict[str, tuple[str, float]] = field(default_factory=dict)

    def start(self, secret: str) -> str:
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = (secret, time.monotonic() + self.hours * 3600)
        return sid

    def secret(self, sid: str) -> str | None:
        found = self._by_id.get(sid)
        if found is None:
            return None
        if found[1] < time.monotonic():
            del self._by_id[sid]
            return None
        return found[0]

    def end(self, sid: str) -> None:
        self._by_id.pop(sid, None)


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    sid = request.cookies.get(COOKIE)
    sessions: Sessions = request.app.state.sessions
    return sessions.secret(sid) if sid else None


def need(scope: str) -> Callable[[Request], Awaitable[ApiToken]]:
    """A dependency: the caller's token, which must hold `scope` (or admin)."""

    async def check(request: Request) -> ApiToken:
        secret = bearer(request)
        if secret is None:
            raise Problem(401, "Authentication required",
                          "send 'Authorization: Bearer TOKEN' (collector token create)",
                          headers={"WWW-Authenticate": "Bearer"})
        store: TokenStore = request.app.state.store
        token = await store.token_for(secret)
        if token is None:
            raise Problem(401, "Token not valid", "unknown or revoked token",
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope not in token.scopes and "admin" not in token.scopes:
            raise Problem(403, "Scope missing",
                          f"this needs the {scope!r} scope; token {token.name!r} has "
                          f"{', '.join(token.scopes)}")
        return token

    return check
