"""Versioned JSON payloads between gateways and the head-end, validated field by field.

Every decode either returns model objects or raises PayloadError with a reason a
person can act on; the caller keeps the raw bytes in dead_letters. Nothing here
touches a socket.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from collector import codec_json
from collector.model import CollectionAttempt, Event, Outcome, Quality, Reading

VERSION = 1
MAX_ITEMS = 10_000
_OBIS = re.compile(r"^\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}$")


class PayloadError(ValueError):
    """A payload we will not ingest, with the reason."""


@dataclass(frozen=True, slots=True)
class Batch:
    gateway: str
    seq: int
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    attempts: tuple[CollectionAttempt, ...] = ()



def encode_batch(
    gateway: str, seq: int, *, readings: Sequence[Reading] = (),
    events: Sequence[Event] = (), attempts: Sequence[CollectionAttempt] = (),
    sent_at: datetime | None = None,
) -> bytes:
    body = batch_envelope(gateway, seq)
    if sent_at is not None:
        body["sent_at"] = codec_json.ts_text(sent_at)
    if readings:
        body["readings"] = [codec_json.reading_to_json(r) for r in readings]
    if events:
        body["events"] = [codec_json.event_to_json(e) for e in events]
    if attempts:
        body["attempts"] = [codec_json.attempt_to_json(a) for a in attempts]
    return encode_items(body)


def encode_items(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def batch_envelope(gateway: str, seq: int) -> dict[str, Any]:
    return {"v": VERSION, "gateway": gateway, "seq": seq,
            "sent_at": codec_json.ts_text(datetime.now(UTC))}


def decode_batch(payload: bytes, topic_gateway: str | None = None) -> Batch:
    try:
        body = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise PayloadError("payload is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise PayloadError(f"payload is not JSON: {exc.msg} at byte {exc.pos}") from None
    if not isinstance(body, dict):
        raise PayloadError("payload must be a JSON object")
    if body.get("v") != VERSION:
        raise PayloadError(f"unsupported payload version {body.get('v')!r}; this head-end "
                           f"reads v{VERSION}")
    gateway = _field(body, "gateway", str, "batch")
    if topic_gateway is not None and gateway != topic_gateway:
        raise PayloadError(f"gateway {gateway!r} in the payload, {topic_gateway!r} in the topic")
    seq = _field(body, "seq", int, "batch")
    if seq < 0:
        raise PayloadError("batch.seq must not be negative")
    readings = tuple(_reading(r, i, gateway) for i, r in enumerate(_items(body, "readings")))
    events = tuple(_event(e, i) for i, e in enumerate(_items(body, "events")))
    attempts = tuple(_attempt(a, i, gateway) for i, a in enumerate(_items(body, "attempts")))
    if not (readings or events or attempts):
        raise PayloadError("batch carries no readings, events or attempts")
    return Batch(gateway, seq, readings, events, attempts)


def _items(body: dict[str, Any], key: str) -> list[Any]:
    items = body.get(key, [])
    if not isinstance(items, list):
        raise PayloadError(f"batch.{key} must be a list")
    if len(items) > MAX_ITEMS:
        raise PayloadError(f"batch.{key} has {len(items)} items, at most {MAX_ITEMS}")
    return items


def _field(d: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(d, dict):
        raise PayloadError(f"{where} must be an object")
    value = d.get(key)
    if value is None:
        raise PayloadError(f"{where}.{key} is missing")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise PayloadError(f"{where}.{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


def _time(d: Any, key: str, where: str) -> datetime:
    text = _field(d, key, str, where)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise PayloadError(f"{where}.{key} {text!r} is not an ISO 8601 time") from None
    if ts.utcoffset() is None:
        raise PayloadError(f"{where}.{key} {text!r} has no UTC offset")
    return ts.astimezone(UTC)


def _reading(r: Any, i: int, gateway: str) -> Reading:
    where = f"readings[{i}]"
    meter = _field(r, "meter", str, where)
    quantity = _field(r, "quantity", str, where)
    if not _OBIS.match(quantity):
        raise PayloadError(f"{where}.quantity {quantity!r} is not an OBIS code")
    value = _field(r, "value", float, where)
    if not math.isfinite(value):
        raise PayloadError(f"{where}.value is not finite")
    quality = r.get("quality", "A")
    try:
        q = Quality(quality)
    except ValueError:
        raise PayloadError(f"{where}.quality {quality!r} is not one of A E F S N V") from None
    source = r.get("source", "")
    return Reading(meter, quantity, _time(r, "ts", where), value, _field(r, "unit", str, where),
                   q, source=f"mqtt:{gateway}" + (f":{source}" if source else ""),
                   method=str(r.get("method", "")))


def _event(e: Any, i: int) -> Event:
    where = f"events[{i}]"
    details = e.get("details", {}) if isinstance(e, dict) else {}
    if not isinstance(details, dict):
        raise PayloadError(f"{where}.details must be an object")
    return Event(_field(e, "meter", str, where), _time(e, "ts", where),
                 _field(e, "kind", str, where), details)


def _attempt(a: Any, i: int, gateway: str) -> CollectionAttempt:
    where = f"attempts[{i}]"
    outcome = _field(a, "outcome", str, where)
    try:
        o = Outcome(outcome)
    except ValueError:
        raise PayloadError(f"{where}.outcome {outcome!r} is not ok, timeout or error") from None
    return CollectionAttempt(_field(a, "meter", str, where), _field(a, "bus", str, where),
                             _time(a, "ts", where), o, _field(a, "latency_ms", float, where),
                             str(a.get("error", "")), gateway)


# --- commands --------------------------------------------------------------------------

COMMANDS = ("read", "time_sync")


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    command: str
    meter: str = ""
    quantities: tuple[str, ...] = ()


def encode_command(cmd: Command) -> bytes:
    body: dict[str, Any] = {"v": VERSION, "id": cmd.id, "command": cmd.command}
    if cmd.meter:
        body["meter"] = cmd.meter
    if cmd.quantities:
        body["quantities"] = list(cmd.quantities)
    return json.dumps(body).encode()


def decode_command(payload: bytes) -> Command:
    try:
        body = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise PayloadError("command is not UTF-8 JSON") from None
    if not isinstance(body, dict) or body.get("v") != VERSION:
        raise PayloadError(f"command must be a v{VERSION} JSON object")
    command = _field(body, "command", str, "command")
    if command not in COMMANDS:
        raise PayloadError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    quantities = body.get("quantities", [])
    if not isinstance(quantities, list) or not all(isinstance(q, str) and _OBIS.match(q)
                                                   for q in quantities):
        raise PayloadError("command.quantities must list OBIS codes")
    meter = body.get("meter", "")
    if command == "read" and not meter:
        raise PayloadError("a read command needs a meter")
    return Command(_field(body, "id", str, "command"), command, str(meter), tuple(quantities))


def encode_reply(cmd_id: str, ok: bool, detail: str, readings: Sequence[Reading] = ()) -> bytes:
    return json.dumps({
        "v": VERSION, "id": cmd_id, "ok": ok, "detail": detail,
        "readings": [{"meter": r.meter_id, "quantity": r.quantity, "ts": codec_json.ts_text(r.ts),
                      "value": r.value, "unit": r.unit} for r in readings],
    }).encode()


def encode_status(gateway: str, state: str, outbox_rows: int = 0) -> bytes:
    return json.dumps({"v": VERSION, "gateway": gateway, "state": state,
                       "ts": codec_json.ts_text(datetime.now(UTC)),
                       "outbox_rows": outbox_rows}).encode()
