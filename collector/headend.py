"""Head-end mode: ingest gateway and concentrator batches from the broker into storage.

Each message is acknowledged (PUBACK) only after its batch is stored, so a head-end
killed mid-stream gets the unacknowledged messages again from its persistent session,
and the idempotent ingest makes the redelivery harmless. Several head-end processes
split the load through an MQTT v5 shared subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass

import aiomqtt

from collector import mqtt_link
from collector.config import MqttSettings
from protocols.mqtt import schema, topics
from storage.base import StorageError, Store

log = logging.getLogger(__name__)
MAX_MESSAGES_PER_WRITE = 50


@dataclass
class HeadEndStats:
    batches: int = 0
    readings: int = 0
    new: int = 0
    dead_letters: int = 0
    connects: int = 0


class HeadEnd:
    def __init__(self, settings: MqttSettings, store: Store, *, client_id: str = "") -> None:
        self.settings = settings
        self.store = store
        self.client_id = client_id or settings.client_id or f"mc-headend-{socket.gethostname()}"
        self.stats = HeadEndStats()
        self.first_message_at: float | None = None
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        delay = 0.5
        while not self._stop.is_set():
            try:
                client = mqtt_link.client(self.settings, self.client_id, persistent=True)
                # Acknowledge by hand, after storage: see the module docstring.
                client._client.manual_ack_set(True)
                async with client:
                    self.stats.connects += 1
                    delay = 0.5
                    for kind in ("readings", "events"):
                        await client.subscribe(topics.subscription(
                            kind, self.settings.topic_prefix, self.settings.share_group), qos=1)
                    self.ready.set()
                    await self._consume(client)
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                if mqtt_link.is_auth_failure(exc):
                    raise mqtt_link.MqttAuthError(
                        f"broker {self.settings.host}:{self.settings.port} refused "
                        f"user {self.settings.username!r}: {exc}") from None
                log.warning("broker connection lost (%s); reconnecting in %.1f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 30.0)

    async def _consume(self, client: aiomqtt.Client) -> None:
        stop = asyncio.create_task(self._stop.wait())
        messages = aiter(client.messages)
        try:
            while True:
                nxt = asyncio.ensure_future(anext(messages))
                done, _ = await asyncio.wait([nxt, stop], return_when=asyncio.FIRST_COMPLETED)
                if nxt not in done:
                    nxt.cancel()
                    return
                batch = [nxt.result()]
                if self.first_message_at is None:
                    self.first_message_at = time.perf_counter()
                # Whatever else is already waiting goes into the same write: one database
                # round trip for many messages, then every one of them is acknowledged.
                while len(client.messages) and len(batch) < MAX_MESSAGES_PER_WRITE:
                    batch.append(await anext(messages))
                await self.handle_many([(m.topic.value, _bytes(m.payload)) for m in batch])
                for m in batch:
                    client._client.ack(m.mid, m.qos)
        finally:
            stop.cancel()

    async def handle_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Store the messages' batches, or their raw bytes as dead letters; retry storage
        until it succeeds, because the messages are acknowledged only afterwards."""
        batches: list[schema.Batch] = []
        dead: list[tuple[str, bytes, str]] = []
        for topic, payload in messages:
            try:
                parsed = topics.parse(topic, self.settings.topic_prefix)
                batches.append(schema.decode_batch(payload, parsed.gateway))
            except (schema.PayloadError, topics.TopicError) as exc:
                log.warning("dead letter from %s: %s", topic, exc)
                dead.append((f"mqtt:{topic}", payload, str(exc)))
        while True:
            try:
                await self._store(batches, dead)
                break
            except StorageError as exc:
                log.error("storing %d messages failed (%s); retrying before acknowledging",
                          len(messages), exc)
                await asyncio.sleep(1.0)
        self.stats.dead_letters += len(dead)
        self.stats.batches += len(batches)

    async def _store(self, batches: list[schema.Batch],
                     dead: list[tuple[str, bytes, str]]) -> None:
        for source, payload, reason in dead:
            await self.store.write_dead_letter(source, payload, reason)
        readings = [r for b in batches for r in b.readings]
        if readings:
            result = await self.store.write_readings(readings)
            self.stats.new += result.new
            self.stats.readings += len(readings)
        events = [e for b in batches for e in b.events]
        if events:
            await self.store.write_events(events)
        attempts = [a for b in batches for a in b.attempts]
        if attempts:
            await self.store.write_attempts(attempts)


def _bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    return b"" if payload is None else str(payload).encode()
