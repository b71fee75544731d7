"""Versioned JSON payloads between gateways and the head-end, validated field by field.

Every decode either returns model objects or raises PayloadError with a reason a
person can act on; the caller keeps the raw bytes in dead_letters. Nothing here
touches a socket.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from model import CollectionAttempt, Event, Outcome, Quality, Reading, ReadKind, codec_json

T = TypeVar("T")

VERSION = 1
MAX_ITEMS = 10_000
_OBIS = re.compile(r"[0-9]{1,3}-[0-9]{1,3}:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}")


class PayloadError(ValueError):
    """A payload we will not ingest, with the reason."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on everything a payload may carry: a broker is an open door, and one
    message must never be able to stop, wedge or exhaust the head-end."""

    max_payload_bytes: int = 4 * 1024 * 1024
    max_items: int = MAX_ITEMS
    max_id_chars: int = 64
    max_text_chars: int = 500
    max_int_digits: int = 19
    max_magnitude: float = 1e15
    max_depth: int = 8
    max_details_keys: int = 64
    max_age: timedelta = timedelta(days=400)
    """How far back a timestamp may lie: a gateway's backlog after weeks offline, not a
    clock reset to 1970 or 2000 after a power cut."""
    max_ahead: timedelta = timedelta(days=1)


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Rejected:
    """One item of a batch that failed its checks. The rest of the batch stands: the
    gateway deleted the whole message from its outbox once it was acknowledged, so
    refusing 999 good readings for one bad one would lose them."""

    where: str
    """`readings[17]`, `events[0]`: the item's place in its batch."""
    item: bytes
    """The item as JSON, for the dead-letter table."""
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    gateway: str
    seq: int
    readings: tuple[Reading, ...] = ()
    events: tuple[Event, ...] = ()
    attempts: tuple[CollectionAttempt, ...] = ()
    rejected: tuple[Rejected, ...] = ()


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
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def batch_envelope(gateway: str, seq: int) -> dict[str, Any]:
    return {"v": VERSION, "gateway": gateway, "seq": seq,
            "sent_at": codec_json.ts_text(datetime.now(UTC))}


def decode_batch(payload: bytes, topic_gateway: str | None = None, *,
                 now: datetime | None = None, limits: Limits = DEFAULT_LIMITS) -> Batch:
    """A Batch, or PayloadError: nothing else escapes, whatever the bytes.

    What makes the message untrustworthy (not JSON, a key given twice, the wrong
    version or gateway, too many items) refuses it whole. An item that fails its own
    checks is set aside in `rejected` with its reason and the others are kept; a batch
    none of whose items passes is refused whole, with their reasons.
    """
    check = _Checker(limits, now or datetime.now(UTC))
    body = check.json(payload)
    if not isinstance(body, dict):
        raise PayloadError("payload must be a JSON object")
    version = body.get("v")
    if type(version) is not int or version != VERSION:
        raise PayloadError(f"unsupported payload version {_show(version)}; this head-end "
                           f"reads v{VERSION}")
    gateway = check.ident(body, "gateway", "batch")
    if topic_gateway is not None and gateway != topic_gateway:
        raise PayloadError(f"gateway {gateway!r} in the payload, {topic_gateway!r} in the topic")
    seq = check.integer(body, "seq", "batch")
    rejected: list[Rejected] = []

    def each(kind: str, one: Callable[[Any, int], T]) -> tuple[T, ...]:
        kept = []
        for i, item in enumerate(check.items(body, kind)):
            try:
                kept.append(one(item, i))
            except PayloadError as exc:
                rejected.append(Rejected(f"{kind}[{i}]", _item_json(item), str(exc)))
        return tuple(kept)

    readings = each("readings", lambda r, i: check.reading(r, i, gateway))
    events = each("events", check.event)
    attempts = each("attempts", lambda a, i: check.attempt(a, i, gateway))
    if not (readings or events or attempts):
        if not rejected:
            raise PayloadError("batch carries no readings, events or attempts")
        if len(rejected) == 1:
            raise PayloadError(rejected[0].reason)
        shown = "; ".join(r.reason for r in rejected[:3])
        raise PayloadError(f"every item was refused ({len(rejected)} in all): {shown}"
                           + ("; …" if len(rejected) > 3 else ""))
    return Batch(gateway, seq, readings, events, attempts, tuple(rejected))


def _item_json(item: Any) -> bytes:
    """An item as it came, re-encoded; a lone surrogate is kept as its escape."""
    try:
        return json.dumps(item, separators=(",", ":"), ensure_ascii=True).encode()
    except (RecursionError, ValueError, TypeError):
        return _show(item).encode("utf-8", "backslashreplace")


def _one_of_each(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice is refused: JSON readers disagree on which one wins, so
    `"gateway":"evil-gw","gateway":"gw-p"` could pass a check and be stored as another."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise PayloadError(f"key {_show(key)} appears twice in one object")
        obj[key] = value
    return obj


def _show(value: Any) -> str:
    """A value for an error message: short, and safe to log or store as text."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reject_constant(name: str) -> Any:
    raise PayloadError(f"{name} is not a number JSON allows (finite numbers only)")


class _Checker:
    """Every rule a payload must pass, in one place; each raises PayloadError only."""

    def __init__(self, limits: Limits, now: datetime) -> None:
        self.limits = limits
        self.earliest = now - limits.max_age
        self.latest = now + limits.max_ahead

    def json(self, payload: bytes) -> Any:
        if len(payload) > self.limits.max_payload_bytes:
            raise PayloadError(f"payload is {len(payload)} bytes, at most "
                               f"{self.limits.max_payload_bytes}")
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            raise PayloadError("payload is not UTF-8") from None
        try:
            return json.loads(text, parse_constant=_reject_constant, parse_int=self._int,
                              parse_float=self._float, object_pairs_hook=_one_of_each)
        except json.JSONDecodeError as exc:
            raise PayloadError(f"payload is not JSON: {exc.msg} at byte {exc.pos}") from None
        except RecursionError:
            raise PayloadError("payload nests too deeply") from None

    def _int(self, text: str) -> int:
        if len(text.lstrip("-")) > self.limits.max_int_digits:
            raise PayloadError(f"a number has {len(text)} digits, at most "
                               f"{self.limits.max_int_digits}")
        return int(text)

    def _float(self, text: str) -> float:
        if len(text) > 64:
            raise PayloadError(f"a number is written with {len(text)} characters, at most 64")
        value = float(text)
        if not math.isfinite(value):
            raise PayloadError(f"number {text[:20]} is out of range")
        return value

    def items(self, body: dict[str, Any], key: str) -> list[Any]:
        items = body.get(key, [])
        if not isinstance(items, list):
            raise PayloadError(f"batch.{key} must be a list")
        if len(items) > self.limits.max_items:
            raise PayloadError(f"batch.{key} has {len(items)} items, at most "
                               f"{self.limits.max_items}")
        return items

    def field(self, d: Any, key: str, where: str) -> Any:
        if not isinstance(d, dict):
            raise PayloadError(f"{where} must be an object")
        value = d.get(key)
        if value is None:
            raise PayloadError(f"{where}.{key} is missing")
        return value

    def text(self, d: Any, key: str, where: str, *, max_chars: int | None = None,
             default: str | None = None) -> str:
        if default is not None and isinstance(d, dict) and d.get(key) is None:
            return default
        value = self.field(d, key, where)
        if not isinstance(value, str):
            raise PayloadError(f"{where}.{key} must be a string, got {type(value).__name__}")
        limit = max_chars or self.limits.max_text_chars
        if len(value) > limit:
            raise PayloadError(f"{where}.{key} has {len(value)} characters, at most {limit}")
        if not value.isprintable():
            raise PayloadError(f"{where}.{key} {_show(value)} holds a control character, "
                               "NUL or lone surrogate")
        return value

    def ident(self, d: Any, key: str, where: str) -> str:
        value = self.text(d, key, where, max_chars=self.limits.max_id_chars)
        if not value.strip():
            raise PayloadError(f"{where}.{key} must not be blank")
        return value

    def integer(self, d: Any, key: str, where: str) -> int:
        value = self.field(d, key, where)
        if type(value) is not int:
            raise PayloadError(f"{where}.{key} must be an integer, got {type(value).__name__}")
        if not 0 <= value < 2**63:
            raise PayloadError(f"{where}.{key} must be between 0 and 2^63-1")
        return value

    def number(self, d: Any, key: str, where: str) -> float:
        value = self.field(d, key, where)
        if type(value) not in (int, float):
            raise PayloadError(f"{where}.{key} must be a number, got {type(value).__name__}")
        number = float(value)
        if not abs(number) <= self.limits.max_magnitude:
            raise PayloadError(f"{where}.{key} {_show(value)} is beyond "
                               f"±{self.limits.max_magnitude:g}")
        return number

    def time(self, d: Any, key: str, where: str) -> datetime:
        text = self.text(d, key, where, max_chars=40)
        try:
            ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise PayloadError(f"{where}.{key} {text!r} is not an ISO 8601 time") from None
        if ts.utcoffset() is None:  # a naive time could be any zone's: say which is wrong
            raise PayloadError(f"{where}.{key} {text!r} has no UTC offset")
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            raise PayloadError(f"{where}.{key} {text!r} is not an ISO 8601 time") from None
        if not self.earliest <= ts <= self.latest:
            raise PayloadError(f"{where}.{key} {text!r} is outside the accepted window "
                               f"{codec_json.ts_text(self.earliest)} … "
                               f"{codec_json.ts_text(self.latest)}")
        return ts

    def details(self, d: Any, where: str) -> dict[str, Any]:
        details = d.get("details", {}) if isinstance(d, dict) else {}
        if not isinstance(details, dict):
            raise PayloadError(f"{where}.details must be an object")
        # Iteratively, so the walk itself cannot be driven into a RecursionError.
        stack: list[tuple[Any, int, str]] = [(details, 1, f"{where}.details")]
        while stack:
            node, depth, path = stack.pop()
            if depth > self.limits.max_depth:
                raise PayloadError(f"{path} nests deeper than {self.limits.max_depth}")
            if isinstance(node, dict):
                if len(node) > self.limits.max_details_keys:
                    raise PayloadError(f"{path} has {len(node)} keys, at most "
                                       f"{self.limits.max_details_keys}")
                for key, value in node.items():
                    self.text({"k": key}, "k", f"{path} key", max_chars=self.limits.max_id_chars)
                    stack.append((value, depth + 1, f"{path}.{key}"))
            elif isinstance(node, list):
                if len(node) > self.limits.max_details_keys:
                    raise PayloadError(f"{path} has {len(node)} items, at most "
                                       f"{self.limits.max_details_keys}")
                stack.extend((v, depth + 1, f"{path}[{i}]") for i, v in enumerate(node))
            elif isinstance(node, str):
                self.text({"s": node}, "s", path)
            elif type(node) in (int, float):
                self.number({"n": node}, "n", path)
        return details

    def reading(self, r: Any, i: int, gateway: str) -> Reading:
        where = f"readings[{i}]"
        meter = self.ident(r, "meter", where)
        quantity = self.text(r, "quantity", where, max_chars=20)
        if not _OBIS.fullmatch(quantity):
            raise PayloadError(f"{where}.quantity {quantity!r} is not an OBIS code")
        value = self.number(r, "value", where)
        quality = r.get("quality", "A")
        if not isinstance(quality, str) or quality not in Quality._value2member_map_:
            raise PayloadError(f"{where}.quality {_show(quality)} is not one of A E F S N V")
        source = self.text(r, "source", where, max_chars=128, default="")
        kind = r.get("kind", "interval")
        if not isinstance(kind, str) or kind not in ReadKind._value2member_map_:
            raise PayloadError(f"{where}.kind {_show(kind)} is not one of "
                               f"{' '.join(ReadKind)}")
        return Reading(meter, quantity, self.time(r, "ts", where), value,
                       self.text(r, "unit", where, max_chars=16), Quality(quality),
                       source=f"mqtt:{gateway}" + (f":{source}" if source else ""),
                       method=self.text(r, "method", where, max_chars=16, default=""),
                       kind=ReadKind(kind))

    def event(self, e: Any, i: int) -> Event:
        where = f"events[{i}]"
        return Event(self.ident(e, "meter", where), self.time(e, "ts", where),
                     self.ident(e, "kind", where), self.details(e, where))

    def attempt(self, a: Any, i: int, gateway: str) -> CollectionAttempt:
        where = f"attempts[{i}]"
        outcome = self.field(a, "outcome", where)
        if not isinstance(outcome, str) or outcome not in Outcome._value2member_map_:
            raise PayloadError(f"{where}.outcome {_show(outcome)} is not ok, timeout or error")
        latency = self.number(a, "latency_ms", where)
        if latency < 0:
            raise PayloadError(f"{where}.latency_ms must not be negative")
        return CollectionAttempt(self.ident(a, "meter", where), self.ident(a, "bus", where),
                                 self.time(a, "ts", where), Outcome(outcome), latency,
                                 self.text(a, "error", where, default=""), gateway)


# --- commands --------------------------------------------------------------------------

COMMANDS = ("read", "time_sync", "trip", "reconnect")
METER_COMMANDS = ("read", "trip", "reconnect")


@dataclass(frozen=True, slots=True)
class Command:
    id: str
    command: str
    meter: str = ""
    quantities: tuple[str, ...] = ()
    force: bool = False
    """For time_sync: send it even where the offset looks like a time-zone mistake."""
    reason: str = ""
    """For trip and reconnect: why, as the head-end logged it (the gateway logs it too)."""


def encode_command(cmd: Command) -> bytes:
    body: dict[str, Any] = {"v": VERSION, "id": cmd.id, "command": cmd.command}
    if cmd.meter:
        body["meter"] = cmd.meter
    if cmd.quantities:
        body["quantities"] = list(cmd.quantities)
    if cmd.force:
        body["force"] = True
    if cmd.reason:
        body["reason"] = cmd.reason
    return json.dumps(body).encode()


def decode_command(payload: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Command:
    check = _Checker(limits, datetime.now(UTC))
    body = check.json(payload)
    if not isinstance(body, dict) or type(body.get("v")) is not int or body["v"] != VERSION:
        raise PayloadError(f"command must be a v{VERSION} JSON object")
    command = check.text(body, "command", "command", max_chars=32)
    if command not in COMMANDS:
        raise PayloadError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    quantities = body.get("quantities", [])
    if not isinstance(quantities, list) or len(quantities) > 64 or not all(
            isinstance(q, str) and _OBIS.fullmatch(q) for q in quantities):
        raise PayloadError("command.quantities must list OBIS codes")
    meter = check.text(body, "meter", "command", max_chars=limits.max_id_chars, default="")
    if command in METER_COMMANDS and not meter:
        raise PayloadError(f"a {command} command needs a meter")
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise PayloadError("command.force must be true or false")
    reason = check.text(body, "reason", "command", max_chars=500, default="")
    if command in ("trip", "reconnect") and not reason:
        raise PayloadError(f"a {command} command needs its reason")
    return Command(check.ident(body, "id", "command"), command, meter, tuple(quantities), force,
                   reason)


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
