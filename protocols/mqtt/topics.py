"""The versioned topic layout (docs/mqtt.md): {prefix}/{gateway}/{kind}."""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "mc/v1"
KINDS = ("readings", "events", "attempts", "status", "cmd", "cmd/reply")
_GATEWAY = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TopicError(ValueError):
    pass


def check_gateway(gateway: str) -> str:
    if not _GATEWAY.fullmatch(gateway):
        raise TopicError(f"gateway id {gateway!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return gateway


def topic(gateway: str, kind: str, prefix: str = PREFIX) -> str:
    if kind not in KINDS:
        raise TopicError(f"unknown topic kind {kind!r}")
    return f"{prefix}/{check_gateway(gateway)}/{kind}"


def subscription(kind: str, prefix: str = PREFIX, share_group: str = "") -> str:
    """All gateways' `kind` topics; with a group, an MQTT v5 shared subscription."""
    base = f"{prefix}/+/{kind}"
    return f"$share/{share_group}/{base}" if share_group else base


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    gateway: str
    kind: str


def parse(name: str, prefix: str = PREFIX) -> ParsedTopic:
    if not name.startswith(prefix + "/"):
        raise TopicError(f"topic {name!r} is not under {prefix}/")
    rest = name[len(prefix) + 1 :]
    gateway, _, kind = rest.partition("/")
    if kind not in KINDS:
        raise TopicError(f"topic {name!r}: unknown kind {kind!r}")
    return ParsedTopic(check_gateway(gateway), kind)
