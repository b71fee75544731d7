"""Gateway mode: forward the local SQLite outbox to the broker, answer head-end commands.

Rows leave the outbox only after the broker's PUBACK for the batch that carried them,
so a dead uplink, a broker restart or a power cut (the outbox is on disk with
synchronous=FULL) costs delay, never data. The head-end ingests idempotently, so a
batch re-sent after an ambiguous failure changes nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiomqtt

from collector.acquisition import mqtt_link, paho_adapter
from collector.config.settings import MqttSettings
from model import Reading
from protocols.mqtt import schema, topics
from storage.sqlite import OutboxRow, SqliteStore

log = logging.getLogger(__name__)

CommandHandler = Callable[[schema.Command], Awaitable[tuple[bool, str, list[Reading]]]]
FILL_WARNINGS = (0.5, 0.8, 0.95)


@dataclass
class UplinkStats:
    batches: int = 0
    rows: int = 0
    connects: int = 0
    commands: int = 0
    refused: int = 0
    """Batches the broker acknowledged without delivering (kept and re-sent)."""


class Uplink:
    def __init__(
        self,
        settings: MqttSettings,
        gateway: str,
        store: SqliteStore,
        on_command: CommandHandler | None = None,
        *,
        poll_s: float = 0.2,
    ) -> None:
        self.settings = settings
        self.gateway = topics.check_gateway(gateway)
        self.store = store
        self.on_command = on_command
        self.poll_s = poll_s
        self.stats = UplinkStats()
        self._warned = 0.0
        self._stop = asyncio.Event()
        self.ready = asyncio.Event()
        """Set while connected: the daemon's /readyz reports it as the broker check."""

    def topic(self, kind: str) -> str:
        return topics.topic(self.gateway, kind, self.settings.topic_prefix)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        """Connect, drain, reconnect with backoff; returns once stop() is called."""
        delay = 0.5
        will = aiomqtt.Will(self.topic("status"),
                            schema.encode_status(self.gateway, "offline"), qos=1, retain=True)
        client_id = self.settings.client_id or f"mc-gw-{self.gateway}"
        while not self._stop.is_set():
            try:
                async with mqtt_link.client(self.settings, client_id, will=will) as client:
                    self.stats.connects += 1
                    delay = 0.5
                    await self._session(client)
            except aiomqtt.MqttError as exc:
                if mqtt_link.is_auth_failure(exc):
                    raise mqtt_link.MqttAuthError(
                        f"broker {self.settings.host}:{self.settings.port} refused "
                        f"user {self.settings.username!r}: {exc}") from None
                log.warning("uplink to %s:%s down (%s); outbox keeps filling, retry in %.1f s",
                            self.settings.host, self.settings.port, exc, delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), delay)
                delay = min(delay * 2, 30.0)

    async def _session(self, client: aiomqtt.Client) -> None:
        receipts = paho_adapter.PublishReceipts(client)
        # Subscribed before it says it is online: a head-end that waits for "online"
        # and then sends a command must find the gateway listening.
        await client.subscribe(self.topic("cmd"), qos=1)
        await client.publish(self.topic("status"), schema.encode_status(self.gateway, "online"),
                             qos=1, retain=True)
        self.ready.set()
        tasks = [asyncio.create_task(self._drain(client, receipts)),
                 asyncio.create_task(self._heartbeat(client)),
                 asyncio.create_task(self._commands(client)),
                 asyncio.create_task(self._stop.wait())]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # re-raise a broken connection
            if self._stop.is_set():
                await client.publish(self.topic("status"),
                                     schema.encode_status(self.gateway, "offline"),
                                     qos=1, retain=True)
        finally:
            self.ready.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, client: aiomqtt.Client, receipts: paho_adapter.PublishReceipts) -> None:
        refused_delay = self.poll_s
        while True:
            rows = await self.store.outbox_peek(self.settings.batch_size)
            await self._warn_if_filling()
            if not rows:
                await asyncio.sleep(self.poll_s)
                continue
            seq = rows[-1].id
            data = [r for r in rows if r.kind in ("reading", "attempt")]
            events = [r for r in rows if r.kind == "event"]
            codes = []
            if data:
                codes.append(await receipts.publish_checked(
                    client, self.topic("readings"), _payload(self.gateway, seq, data)))
            if events:
                codes.append(await receipts.publish_checked(
                    client, self.topic("events"), _payload(self.gateway, seq, events)))
            if any(codes):
                # Acknowledged but not delivered: keep the rows and try again, rather
                # than delete what no head-end will ever see.
                self.stats.refused += 1
                log.warning("broker took batch %d but reported reason 0x%02X (%s); rows "
                            "stay in the outbox, retry in %.1f s", seq, max(codes),
                            _reason_text(max(codes)), refused_delay,
                            extra={"gateway": self.gateway})
                await asyncio.sleep(refused_delay)
                refused_delay = min(refused_delay * 2, 5.0)
                continue
            refused_delay = self.poll_s
            # Both publishes returned: the broker acknowledged (PUBACK) every row.
            await self.store.outbox_delete([r.id for r in rows])
            self.stats.batches += 1
            self.stats.rows += len(rows)

    async def _warn_if_filling(self) -> None:
        bound = self.store.outbox_max_rows
        if not bound:
            return
        fill = await self.store.outbox_size() / bound
        crossed = max((w for w in FILL_WARNINGS if fill >= w), default=0.0)
        if crossed > self._warned:
            log.warning("outbox %.0f%% full (%d rows of %d): the uplink is not keeping up",
                        fill * 100, int(fill * bound), bound)
        self._warned = crossed
        if self.store.outbox_evicted:
            log.error("outbox full: %d oldest rows were dropped", self.store.outbox_evicted)

    async def _heartbeat(self, client: aiomqtt.Client) -> None:
        while True:
            await asyncio.sleep(self.settings.heartbeat_s)
            await client.publish(
                self.topic("status"),
                schema.encode_status(self.gateway, "online", await self.store.outbox_size()),
                qos=1, retain=True)

    async def _commands(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            try:
                command = schema.decode_command(payload)
            except schema.PayloadError as exc:
                log.warning("command refused: %s", exc)
                continue
            self.stats.commands += 1
            readings: list[Reading] = []
            if self.on_command is None:
                ok, detail = False, "this gateway takes no commands"
            else:
                ok, detail, readings = await self.on_command(command)
            await client.publish(self.topic("cmd/reply"),
                                 schema.encode_reply(command.id, ok, detail, readings), qos=1)


def _payload(gateway: str, seq: int, rows: list[OutboxRow]) -> bytes:
    body = schema.batch_envelope(gateway, seq)
    for kind, key in (("reading", "readings"), ("attempt", "attempts"), ("event", "events")):
        items = [r.item for r in rows if r.kind == kind]
        if items:
            body[key] = items
    return schema.encode_items(body)


def _reason_text(code: int) -> str:
    if code == paho_adapter.NO_MATCHING_SUBSCRIBERS:
        return "no matching subscribers: no head-end subscribed yet, or the broker lost its " \
               "subscriptions in a restart"
    return "refused by the broker"
