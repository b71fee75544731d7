"""API tokens, web sessions and the audit trail of writes: what both stores agree on.

A token is shown once, when it is made, and a session id only to the browser holding it;
the store keeps only their SHA-256, so a copy of the database gives nobody a way in.
Every write through the API is kept with the name of the token that made it.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from storage.versions import Refused

SCOPES = ("read", "billing", "write", "admin")
"""read: readings, flags, status; billing: bills, exports; write: edits, releases,
top-ups; admin: tokens, meters."""
PREFIX = "mc_"


@dataclass(frozen=True, slots=True)
class ApiToken:
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    token: str
    action: str
    detail: dict[str, Any]


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def new_secret() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def check_new(name: str, scopes: Sequence[str]) -> tuple[str, ...]:
    """The scopes of a token about to be made, or Refused saying what is wrong."""
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise Refused(f"token name {name!r}: use 1-64 letters, digits, '-' or '_'")
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise Refused(f"scopes {', '.join(unknown) or '(none)'}: choose from "
                      f"{', '.join(SCOPES)}")
    return tuple(s for s in SCOPES if s in scopes)


class TokenStore(Protocol):
    async def create_token(self, name: str, scopes: Sequence[str]) -> str:
        """Make a token; returns its secret, which is not kept."""
        ...

    async def tokens(self) -> list[ApiToken]: ...

    async def revoke_token(self, name: str) -> bool: ...

    async def token_for(self, secret: str) -> ApiToken | None:
        """The active token with this secret, or None."""
        ...

    async def start_session(self, token: str, hours: float) -> str:
        """Open a web session for the named token; returns its id, which is not kept."""
        ...

    async def session_token(self, sid: str) -> ApiToken | None:
        """The active token of an unexpired session, or None."""
        ...

    async def end_session(self, sid: str) -> None: ...

    async def audit(self, token: str, action: str, detail: dict[str, Any]) -> None: ...

    async def audit_trail(self, limit: int = 100) -> list[AuditEntry]: ...
