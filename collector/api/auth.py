"""Who may call what: bearer tokens with scopes for the API, and for the web view a
login form that exchanges a token for a session cookie (HttpOnly, SameSite=Strict).

Every request looks its token up again, so a revoked token stops working at once,
session or not. `admin` holds every scope.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Request

from collector.api.problems import Problem
from storage.tokens import ApiToken, TokenStore

COOKIE = "mc_session"


@dataclass(frozen=True)
class Sessions:
    """How web sessions are issued. The sessions themselves live in the store, beside the
    tokens: a restart logs nobody out, and several API processes serve the same users."""

    hours: float
    secure: bool = False


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def _token_of(request: Request, secret: str | None, sid: str | None) -> ApiToken | None:
    store: TokenStore = request.app.state.store
    if secret is not None:
        return await store.token_for(secret)
    return await store.session_token(sid) if sid else None


async def caller(request: Request) -> ApiToken | None:
    """The active token behind a request: its bearer header, else its session cookie."""
    return await _token_of(request, _bearer(request), request.cookies.get(COOKIE))


def need(*scopes: str) -> Callable[[Request], Awaitable[ApiToken]]:
    """A dependency: the caller's token, which must hold every one of `scopes` (or
    admin). A write names its domain's scope beside `write`: a token that may edit VEE
    must not release bills or top up accounts without `billing`."""

    async def check(request: Request) -> ApiToken:
        secret, sid = _bearer(request), request.cookies.get(COOKIE)
        if secret is None and not sid:
            raise Problem(401, "Authentication required",
                          "send 'Authorization: Bearer TOKEN' (collector token create)",
                          headers={"WWW-Authenticate": "Bearer"})
        token = await _token_of(request, secret, sid)
        if token is None:
            detail = ("unknown or revoked token" if secret is not None else
                      "the web session has ended (logged out, expired or its token revoked); "
                      "log in again at /login")
            raise Problem(401, "Token not valid", detail,
                          headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        missing = [s for s in scopes if s not in token.scopes]
        if missing and "admin" not in token.scopes:
            raise Problem(403, "Scope missing",
                          f"this needs the {' and '.join(map(repr, scopes))} scope"
                          f"{'s' if len(scopes) > 1 else ''}; token {token.name!r} has "
                          f"{', '.join(token.scopes)}")
        return token

    return check
