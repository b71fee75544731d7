"""A real mosquitto carrying good and poison messages: every good reading stored exactly
once, every bad message in dead letters exactly once, and the head-end still acking."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiomqtt

from collector.acquisition.headend import HeadEnd
from collector.config.settings import MqttSettings
from simulator.broker import Mosquitto
from storage.sqlite import SqliteStore
from tests.integration.conftest import PASSWORD_ENV
from tests.integration.test_hardening import POISON

T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=6)


def good(seq: int) -> bytes:
    return json.dumps({"v": 1, "gateway": "gw1", "seq": seq, "readings": [
        {"meter": f"m{seq}", "quantity": "1-0:1.8.0",
         "ts": (T0 + timedelta(minutes=15 * (seq % 8))).isoformat(), "value": float(seq),
         "unit": "kWh"}]}).encode()


async def run_headend(broker: Mosquitto, store: SqliteStore) -> tuple[HeadEnd, asyncio.Task[None]]:
    head = HeadEnd(MqttSettings(role="headend", port=broker.port, username="collector",
                                password_env=PASSWORD_ENV), store, client_id="he-poison")
    task = asyncio.create_task(head.run())
    await asyncio.wait_for(head.ready.wait(), 10)
    return head, task


async def wait_until(check: object, within: float = 30.0) -> None:
    async def poll() -> None:
        while not await check():  # type: ignore[operator]
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), within)


async def test_good_and_poison_messages_through_a_real_broker(broker: Mosquitto,
                                                              tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "he.db"))
    await store.migrate()
    head, task = await run_headend(broker, store)
    bad = [payload for _, payload in POISON[:-1]]  # the last one is a bad topic
    sent_good = 0
    async with aiomqtt.Client("127.0.0.1", broker.port, username="collector", password="secret",
                              identifier="poisoner", protocol=aiomqtt.ProtocolVersion.V5) as pub:
        for i in range(140):
            await pub.publish("mc/v1/gw1/readings", good(i), qos=1)
            sent_good += 1
            if i % 15 == 0 and i // 15 < len(bad):
                await pub.publish("mc/v1/gw1/readings", bad[i // 15], qos=1)
        await pub.publish("mc/v1/gw1/readings", b"\x00not json at all", qos=1)
        await pub.publish("mc/v1/gw 1/readings", good(999), qos=1)
        await pub.publish("mc/v1/gw1/readings", good(1000), qos=1)  # the sentinel
    sent_bad = len(bad) + 2

    async def all_in() -> bool:
        return await store.count_readings() == sent_good + 1 and len(
            await store.dead_letters()) == sent_bad

    await wait_until(all_in)
    assert head.stats.dead_letters == sent_bad
    head.stop()
    await task

    # Restarted with the same session: anything not acknowledged would come back before a
    # new sentinel does (a session delivers in order); nothing does.
    head, task = await run_headend(broker, store)
    async with aiomqtt.Client("127.0.0.1", broker.port, username="collector", password="secret",
                              identifier="poisoner", protocol=aiomqtt.ProtocolVersion.V5) as pub:
        await pub.publish("mc/v1/gw1/readings", good(1001), qos=1)

    async def sentinel() -> bool:
        return await store.count_readings() == sent_good + 2

    await wait_until(sentinel)
    assert head.stats.dead_letters == 0 and head.stats.batches == 1
    assert len(await store.dead_letters()) == sent_bad
    head.stop()
    await task
    await store.close()
