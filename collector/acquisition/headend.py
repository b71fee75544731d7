"""Head-end mode: ingest gateway and concentrator batches from the broker into storage.

Each message is acknowledged (PUBACK) only after its batch is stored, so a head-end
killed mid-stream gets the unacknowledged messages again from its persistent session,
and the idempotent ingest makes the redelivery harmless. Several head-end processes
split the load through an MQTT v5 shared subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiomqtt

from collector.acquisition import mqtt_link, paho_adapter
from collector.config.settings import MqttSettings
from collector.ops.metrics import Metrics
from protocols.mqtt import schema, topics
from storage.base import StorageError, Store

T = TypeVar("T")

log = logging.getLogger(__name__)
MAX_MESSAGES_PER_WRITE = 50


@dataclass
class HeadEndStats:
    batches: int = 0
    readings: int = 0
    new: int = 0
    dead_letters: int = 0
    connects: int = 0
    storage_retries: int = 0


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source: str
    payload: bytes
    reason: str
    kind: str
    """payload | topic | storage | validator: the metric label, a bounded set."""


class Stopping(Exception):
    """Storage is down and the daemon is stopping: leave the messages unacknowledged so
    the broker redelivers them to the next run."""


class HeadEnd:
    def __init__(self, settings: MqttSettings, store: Store, *, client_id: str = "",
                 metrics: Metrics | None = None, limits: schema.Limits | None = None,
                 now: Callable[[], datetime] | None = None) -> None:
        """`now` is the clock timestamps are judged against (too old, too far ahead): the
        daemon's own, so a head-end on a simulated clock accepts what its gateways stamp."""
        self.settings = settings
        self.store = store
        self.client_id = client_id or settings.client_id or f"mc-headend-{socket.gethostname()}"
        self.stats = HeadEndStats()
        self.metrics = metrics or Metrics()
        self.limits = limits or settings.limits
        self.now = now or (lambda: datetime.now(UTC))
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
                paho_adapter.manual_acks(client)
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
                        f"user {self.settings.username!r}: {exc}; fix [mqtt] username and "
                        "the password in password_env") from None
                log.warning("broker connection lost (%s); reconnecting in %.1f s", exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 30.0)
            finally:
                self.ready.clear()

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
                try:
                    await self.handle_many([(m.topic.value, _bytes(m.payload)) for m in batch])
                except Stopping:
                    return
                for m in batch:
                    paho_adapter.ack(client, m)
        finally:
            stop.cancel()

    async def handle_many(self, messages: list[tuple[str, bytes]]) -> None:
        """Store every message's batch, or keep it as a dead letter with its reason.

        Each message is judged alone: a payload the validator refuses, or rows storage
        refuses, end as one dead letter (keyed, so a redelivery adds none) and the rest
        are stored. Only an outage is retried, because the messages are acknowledged
        only afterwards; raises Stopping if the daemon stops during an outage.
        """
        decoded: list[tuple[str, bytes, schema.Batch]] = []
        dead: list[DeadLetter] = []
        for topic, payload in messages:
            source = f"mqtt:{topic}"
            try:
                parsed = topics.parse(topic, self.settings.topic_prefix)
                batch = schema.decode_batch(payload, parsed.gateway, now=self.now(),
                                            limits=self.limits)
                decoded.append((source, payload, batch))
                # Only the items that failed their checks are set aside, each with its
                # reason; the rest of the message is stored below.
                dead += [DeadLetter(f"{source} seq {batch.seq} {r.where}", r.item, r.reason,
                                    "payload") for r in batch.rejected]
            except topics.TopicError as exc:
                dead.append(DeadLetter(source, payload, str(exc), "topic"))
            except schema.PayloadError as exc:
                dead.append(DeadLetter(source, payload, str(exc), "payload"))
            except Exception as exc:  # a validator bug must not stop the stream
                log.exception("validator failed on a message from %s", topic,
                              extra={"topic": topic})
                dead.append(DeadLetter(source, payload,
                                       f"validator failed: {type(exc).__name__}: {exc}",
                                       "validator"))
        dead += await self._retrying(lambda: self._store_isolated(decoded))
        for letter in dead:
            log.warning("dead letter from %s: %s", letter.source, letter.reason,
                        extra={"topic": letter.source, "reason": letter.kind})
            await self._retrying(functools.partial(self._keep, letter))
            self.metrics.dead_letters.labels(letter.kind).inc()
        self.stats.dead_letters += len(dead)
        self.stats.batches += len(decoded)

    async def _retrying(self, write: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        while True:
            try:
                return await write()
            except StorageError as exc:
                if not exc.transient:
                    raise
                self.stats.storage_retries += 1
                log.error("storage unavailable (%s); retrying before acknowledging", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
            if self._stop.is_set():
                raise Stopping
            delay = min(delay * 2, 10.0)

    async def _keep(self, letter: DeadLetter) -> None:
        payload, reason = bounded(letter.payload, letter.reason)
        try:
            await self.store.write_dead_letter(_safe(letter.source), payload, _safe(reason))
        except StorageError as exc:
            if exc.transient:
                raise
            # Nothing more can be done with it: log it whole rather than wedge the stream.
            log.error("dead letter could not be kept (%s); payload %s", exc,
                      letter.payload[:2048].hex())

    async def _store_isolated(self, decoded: list[tuple[str, bytes, schema.Batch]]
                              ) -> list[DeadLetter]:
        """One write for all; if storage refuses it, message by message, then row by row."""
        if not decoded:
            return []
        try:
            await self._store([b for _, _, b in decoded])
            return []
        except StorageError as exc:
            if exc.transient:
                raise
            if len(decoded) > 1:
                dead: list[DeadLetter] = []
                for one in decoded:
                    dead += await self._store_isolated([one])
                return dead
            source, payload, batch = decoded[0]
            refused = await self._store_rows(batch)
            reasons = "; ".join(refused[:3]) + ("; …" if len(refused) > 3 else "")
            total = len(batch.readings) + len(batch.events) + len(batch.attempts)
            return [DeadLetter(source, payload, f"storage refused {len(refused)} of {total} "
                               f"rows, the rest are stored: {reasons}", "storage")]

    async def _store_rows(self, batch: schema.Batch) -> list[str]:
        """Bisect each kind of row to find the ones storage refuses; store the others."""
        refused: list[str] = []

        async def bisect(kind: str, rows: Sequence[Any], offset: int) -> None:
            try:
                await self._store([schema.Batch(batch.gateway, batch.seq,
                                                **{kind: tuple(rows)})])
            except StorageError as exc:
                if exc.transient:
                    raise
                if len(rows) == 1:
                    refused.append(f"{kind}[{offset}]: {exc}")
                    return
                half = len(rows) // 2
                await bisect(kind, rows[:half], offset)
                await bisect(kind, rows[half:], offset + half)

        for kind in ("readings", "events", "attempts"):
            rows = getattr(batch, kind)
            if rows:
                await bisect(kind, rows, 0)
        return refused

    async def _store(self, batches: Sequence[schema.Batch]) -> None:
        readings = [r for b in batches for r in b.readings]
        if readings:
            result = await self.store.write_readings(readings)
            self.stats.new += result.new
            self.stats.readings += len(readings)
            self.metrics.ingest_rows.labels("mqtt").inc(len(readings))
        events = [e for b in batches for e in b.events]
        if events:
            await self.store.write_events(events)
        attempts = [a for b in batches for a in b.attempts]
        if attempts:
            await self.store.write_attempts(attempts)


KEPT_BYTES = 64 * 1024
"""The most of one dead letter the table keeps: a payload refused for its size must not
be stored whole, or the refusal would cost the disk what it saved the ingest."""


def bounded(payload: bytes, reason: str) -> tuple[bytes, str]:
    """The payload, or its first KEPT_BYTES with its size and SHA-256 in the reason, so
    the original can still be matched against the gateway's copy."""
    if len(payload) <= KEPT_BYTES:
        return payload, reason
    digest = hashlib.sha256(payload).hexdigest()
    return payload[:KEPT_BYTES], (f"{reason} (kept the first {KEPT_BYTES} of {len(payload)} "
                                  f"bytes; sha256 {digest})")


def _safe(text: str) -> str:
    """Text any store accepts: no NUL, no lone surrogate."""
    return text.replace("\0", "\\0").encode("utf-8", "backslashreplace").decode("utf-8")


def _bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode("utf-8", "surrogatepass")
    return b"" if payload is None else str(payload).encode("utf-8", "backslashreplace")
