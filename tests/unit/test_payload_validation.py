"""Every payload ends as a Batch or a PayloadError, whatever its bytes (issue 10's corpus)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.mqtt import schema
from protocols.mqtt.schema import PayloadError, decode_batch

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def good(**reading: object) -> dict[str, object]:
    r: dict[str, object] = {"meter": "m1", "quantity": "1-0:1.8.0",
                            "ts": "2026-11-23T11:45:00Z", "value": 12.5, "unit": "kWh"}
    r.update(reading)
    return {"v": 1, "gateway": "gw1", "seq": 7, "readings": [r]}


def raw(body: object) -> bytes:
    return json.dumps(body).encode()


def test_a_valid_payload_decodes() -> None:
    batch = decode_batch(raw(good()), "gw1", now=NOW)
    assert batch.readings[0].value == 12.5


POISON = {
    "deeply nested JSON": b'{"v":1,"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a number with thousands of digits": b'{"v":1,"gateway":"gw1","seq":' + b"9" * 5000 + b"}",
    "an integer too large for a float": raw(good()).replace(b"12.5", b"1" + b"0" * 400),
    "a float that overflows": raw(good()).replace(b"12.5", b"1e999"),
    "year 1 with a positive offset": raw(good(ts="0001-01-01T00:30:00+01:00")),
    "a lone surrogate in the meter id": raw(good()).replace(b'"m1"', b'"m\\ud800"'),
    "a NUL in the meter id": raw(good()).replace(b'"m1"', b'"m\\u0000"'),
    "NaN as a value": raw(good()).replace(b"12.5", b"NaN"),
    "Infinity as a value": raw(good()).replace(b"12.5", b"Infinity"),
    "a boolean as a value": raw(good(value=True)),
    "a boolean as the version": raw({**good(), "v": True}),
    "an OBIS code in Arabic digits": raw(good(quantity="١-0:1.8.0")),
    "an OBIS code with a trailing newline": raw(good(quantity="1-0:1.8.0\n")),
    "a timestamp far in the future": raw(good(ts="2099-01-01T00:00:00Z")),
    "a timestamp from 1970": raw(good(ts="1970-01-01T00:00:00Z")),
    "a naive timestamp": raw(good(ts="2026-11-23T11:45:00")),
    "a huge meter id": raw(good(meter="m" * 5000)),
    "a value beyond any meter": raw(good(value=1e300)),
    "not an object": b"[1,2,3]",
    "not UTF-8": b"\xff\xfe\x00",
    "NaN latency in an attempt": raw({"v": 1, "gateway": "gw1", "seq": 1, "attempts": [
        {"meter": "m1", "bus": "b", "ts": "2026-11-23T11:45:00Z", "outcome": "ok",
         "latency_ms": 1}]}).replace(b'"latency_ms": 1', b'"latency_ms": NaN'),
    "NaN inside event details": raw({"v": 1, "gateway": "gw1", "seq": 1, "events": [
        {"meter": "m1", "ts": "2026-11-23T11:45:00Z", "kind": "cover_open",
         "details": {"x": 1}}]}).replace(b'"x": 1', b'"x": NaN'),
    "Infinity deep in event details": raw({"v": 1, "gateway": "gw1", "seq": 1, "events": [
        {"meter": "m1", "ts": "2026-11-23T11:45:00Z", "kind": "k",
         "details": {"a": [{"b": 1}]}}]}).replace(b'"b": 1', b'"b": -Infinity'),
    "details nested too deep": raw({"v": 1, "gateway": "gw1", "seq": 1, "events": [
        {"meter": "m1", "ts": "2026-11-23T11:45:00Z", "kind": "k",
         "details": json.loads("[" * 20 + "]" * 20)}]}),
    "a payload over the size bound": b" " * (schema.DEFAULT_LIMITS.max_payload_bytes + 1),
}


@pytest.mark.parametrize("name", list(POISON))
def test_a_poison_payload_is_refused_with_a_payload_error_only(name: str) -> None:
    with pytest.raises(PayloadError) as caught:
        decode_batch(POISON[name], "gw1", now=NOW)
    assert str(caught.value)  # a reason a person can act on


def test_the_time_window_is_configurable() -> None:
    old = raw(good(ts="2020-01-01T00:00:00Z"))
    with pytest.raises(PayloadError, match="outside the accepted window"):
        decode_batch(old, "gw1", now=NOW)
    wide = schema.Limits(max_age=timedelta(days=4000))
    assert decode_batch(old, "gw1", now=NOW, limits=wide).readings


VALID = raw({"v": 1, "gateway": "gw1", "seq": 3, "readings": [
    {"meter": "m1", "quantity": "1-0:1.8.0", "ts": "2026-11-23T11:45:00Z", "value": 1.5,
     "unit": "kWh", "quality": "A", "method": "", "source": "s"}],
    "events": [{"meter": "m1", "ts": "2026-11-23T11:00:00Z", "kind": "cover_open",
                "details": {"count": 2, "end": "x"}}],
    "attempts": [{"meter": "m1", "bus": "b1", "ts": "2026-11-23T11:45:00Z", "outcome": "ok",
                  "latency_ms": 12.0, "error": ""}]})


def _decode_or_payload_error(data: bytes) -> None:
    with contextlib.suppress(PayloadError):
        decode_batch(data, "gw1", now=NOW)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=400))
def test_random_bytes_raise_nothing_but_payload_error(data: bytes) -> None:
    _decode_or_payload_error(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.binary(min_size=0, max_size=8)),
                max_size=6))
def test_mutated_valid_payloads_raise_nothing_but_payload_error(
        edits: list[tuple[int, bytes]]) -> None:
    data = bytearray(VALID)
    for at, chunk in edits:
        data[at:at + len(chunk)] = chunk
    _decode_or_payload_error(bytes(data))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=20)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(["meter", "quantity", "ts", "value", "unit", "quality", "method",
                        "source"]), JSON_VALUES)
def test_any_json_value_in_any_reading_field_is_handled(field: str, value: object) -> None:
    body = json.loads(VALID)
    body["readings"][0][field] = value
    try:
        text = json.dumps(body).encode()
    except ValueError:
        return
    _decode_or_payload_error(text)


def test_an_invalid_item_is_set_aside_with_its_reason_and_the_rest_kept() -> None:
    body = good()
    readings = body["readings"]
    assert isinstance(readings, list)
    readings.append({**readings[0], "ts": "2026-11-23T12:00:00", "value": 13.0})
    readings.append({**readings[0], "ts": "2026-11-23T11:30:00Z", "value": 12.0})
    batch = decode_batch(raw(body), "gw1", now=NOW)
    assert [r.value for r in batch.readings] == [12.5, 12.0]
    (rejected,) = batch.rejected
    assert rejected.where == "readings[1]" and "has no UTC offset" in rejected.reason
    assert json.loads(rejected.item)["value"] == 13.0


def test_a_key_given_twice_anywhere_refuses_the_payload() -> None:
    forged = raw(good()).replace(b'"gateway": "gw1"', b'"gateway": "evil", "gateway": "gw1"')
    with pytest.raises(PayloadError, match="appears twice"):
        decode_batch(forged, "gw1", now=NOW)
    inner = raw(good()).replace(b'"value": 12.5', b'"value": 1, "value": 12.5')
    with pytest.raises(PayloadError, match="appears twice"):
        decode_batch(inner, "gw1", now=NOW)
