"""Cursor paging: an opaque token naming the last row a page gave, so that a billing
system pulling millions of rows walks them in a stable order whatever is added meanwhile
(offsets skip or repeat rows when the table changes under them)."""

from __future__ import annotations

import base64
import json
from typing import Any

from collector.api.problems import Problem


def encode(position: dict[str, Any]) -> str:
    raw = json.dumps(position, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem(422, "A parameter is not valid",
                      "cursor: not a cursor this API gave out") from None
    if not isinstance(value, dict):
        raise Problem(422, "A parameter is not valid",
                      "cursor: not a cursor this API gave out")
    return value
