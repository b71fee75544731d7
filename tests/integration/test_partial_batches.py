"""One bad item costs only itself: the rest of its message is stored, and the bad item
is kept as a dead letter with its reason. The gateway deleted the whole message from its
outbox once the head-end acknowledged it, so refusing 999 good readings for one bad one
lost them for good (issue 28). What makes a whole message untrustworthy (a key given
twice) still refuses it whole, and a message refused for its size is not kept whole."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

from collector.acquisition.headend import KEPT_BYTES
from protocols.mqtt import schema
from simulator.broker import Mosquitto
from storage.sqlite import SqliteStore
from tests.integration.test_poison_stream import run_headend, wait_until

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=30)


def readings(meter: str, n: int = 1000) -> list[dict[str, object]]:
    return [{"meter": meter, "quantity": "1-0:1.8.0",
             "ts": (T0 + timedelta(minutes=i)).isoformat(), "value": 100.0 + i,
             "unit": "kWh"} for i in range(n)]


def batch(seq: int, items: list[dict[str, object]]) -> bytes:
    return json.dumps({"v": 1, "gateway": "gw1", "seq": seq, "readings": items}).encode()


async def publish(broker: Mosquitto, *payloads: bytes) -> None:
    async with aiomqtt.Client("127.0.0.1", broker.port, username="collector", password="secret",
                              identifier="partial", protocol=aiomqtt.ProtocolVersion.V5) as pub:
        for payload in payloads:
            await pub.publish("mc/v1/gw1/readings", payload, qos=1)


async def test_one_invalid_reading_costs_only_itself_and_is_kept_with_its_reason(
        broker: Mosquitto, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    head, task = await run_headend(broker, store)
    bad = {"m-string": ("value", "12.5", "must be a number"),
           "m-naive": ("ts", "2026-11-23T11:45:00", "has no UTC offset"),
           "m-2099": ("ts", "2099-01-01T00:00:00Z", "outside the accepted window")}
    payloads = []
    for seq, (meter, (field, value, _)) in enumerate(bad.items()):
        items = readings(meter)
        items[500][field] = value
        payloads.append(batch(seq, items))
    await publish(broker, *payloads)

    async def all_in() -> bool:
        return (await store.count_readings() == 3 * 999
                and len(await store.dead_letters()) == 3)

    await wait_until(all_in)
    letters = await store.dead_letters()
    for meter, (field, value, reason) in bad.items():
        (source, item, why), = [d for d in letters if meter.encode() in d[1]]
        assert "readings[500]" in source and reason in why
        assert json.loads(item)[field] == value
    head.stop()
    await task
    await store.close()


async def test_a_key_given_twice_refuses_the_whole_message(broker: Mosquitto,
                                                            tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    head, task = await run_headend(broker, store)
    forged = batch(1, readings("m1", 3)).replace(b'"gateway": "gw1"',
                                                 b'"gateway": "evil-gw", "gateway": "gw1"')
    await publish(broker, forged, batch(2, readings("m2", 3)))

    async def both_seen() -> bool:
        return await store.count_readings() == 3 and len(await store.dead_letters()) == 1

    await wait_until(both_seen)
    ((_, payload, reason),) = await store.dead_letters()
    assert payload == forged and "appears twice" in reason
    assert {r.meter_id for r in await store.latest_readings()} == {"m2"}
    head.stop()
    await task
    await store.close()


async def test_a_payload_refused_for_its_size_is_kept_as_a_prefix_and_a_digest(
        broker: Mosquitto, tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    head, task = await run_headend(broker, store)
    huge = batch(1, readings("m1", 3)) + b" " * schema.DEFAULT_LIMITS.max_payload_bytes
    await publish(broker, huge)

    async def kept() -> bool:
        return len(await store.dead_letters()) == 1

    await wait_until(kept)
    ((_, payload, reason),) = await store.dead_letters()
    assert len(payload) == KEPT_BYTES and huge.startswith(payload)
    assert "at most" in reason and hashlib.sha256(huge).hexdigest() in reason
    assert str(len(huge)) in reason
    head.stop()
    await task
    await store.close()
