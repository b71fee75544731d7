"""The data model as JSON: for spill files, the gateway outbox and MQTT payloads.

One encoding, so a reading that waited on disk and one that crossed the broker are
decoded by the same code and come back identical.
"""

from __future__ import annotations

from dataclasses import asdict, is_dataclass
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any

from model.records import CollectionAttempt, Event, Outcome, Quality, Reading, ReadKind


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses as dicts, times as ISO 8601, enums by value, bytes as hex.
    The API's documents and the frame analyser's fields are both made by it."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [plain(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.hex(" ")
    return value


def ts_text(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def reading_to_json(r: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {
        "meter": r.meter_id, "quantity": r.quantity, "ts": ts_text(r.ts),
        "value": r.value, "unit": r.unit, "quality": r.quality.value,
    }
    if r.source:
        out["source"] = r.source
    if r.method:
        out["method"] = r.method
    if r.kind is not ReadKind.INTERVAL:
        out["kind"] = r.kind.value
    return out


def reading_from_json(d: dict[str, Any]) -> Reading:
    return Reading(
        meter_id=d["meter"], quantity=d["quantity"], ts=parse_ts(d["ts"]),
        value=float(d["value"]), unit=d["unit"], quality=Quality(d.get("quality", "A")),
        source=d.get("source", ""), method=d.get("method", ""),
        kind=ReadKind(d.get("kind", "interval")),
    )


def attempt_to_json(a: CollectionAttempt) -> dict[str, Any]:
    return {"meter": a.meter_id, "bus": a.bus, "ts": ts_text(a.ts), "outcome": a.outcome.value,
            "latency_ms": a.latency_ms, "error": a.error, "gateway": a.gateway}


def attempt_from_json(d: dict[str, Any]) -> CollectionAttempt:
    return CollectionAttempt(d["meter"], d["bus"], parse_ts(d["ts"]), Outcome(d["outcome"]),
                             float(d["latency_ms"]), d.get("error", ""), d.get("gateway", ""))


def event_to_json(e: Event) -> dict[str, Any]:
    return {"meter": e.meter_id, "ts": ts_text(e.ts), "kind": e.kind, "details": e.details}


def event_from_json(d: dict[str, Any]) -> Event:
    return Event(d["meter"], parse_ts(d["ts"]), d["kind"], dict(d.get("details", {})))
