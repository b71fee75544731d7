"""The commands operators queue for meters (from the web view or the API), run by the
daemon that reaches the meters' buses.

The API and the daemon are separate processes, often on separate machines, so the
store carries the queue: the API writes a command, this service takes the queued ones
for the meters on its own buses in order, runs each through the same CommandHandler a
gateway uses for the head-end's MQTT commands, and writes the answer back. A command
for a meter this daemon does not reach stays queued for the daemon that does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

from collector.acquisition.clock import Clock, holding, sleep_until_or_stopped
from protocols.mqtt import schema
from storage.base import StorageError
from storage.meter_commands import MeterCommand

log = logging.getLogger(__name__)
POLL = timedelta(seconds=5)
"""How often the queue is looked at: an operator who clicks 'read now' waits this long."""

Handler = Callable[[schema.Command], Awaitable[tuple[bool, str, Sequence[Any]]]]


class CommandQueue:
    def __init__(self, store: Any, handler: Handler, clock: Clock,
                 meter_ids: Sequence[str], every: timedelta = POLL) -> None:
        self.store = store
        self.handler = handler
        self.clock = clock
        self.meter_ids = list(meter_ids)
        self.every = every
        self.done = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            with holding(self.clock):
                try:
                    for command in await self.store.meter_commands(
                            self.meter_ids, queued_only=True, limit=20):
                        await self._one(command)
                except StorageError as exc:
                    log.warning("queued meter commands not read: %s", exc)
            if await sleep_until_or_stopped(self.clock, self.clock.now() + self.every,
                                            self._stop):
                return

    async def _one(self, command: MeterCommand) -> None:
        log.info("meter %s: %s, queued by %s (%s)", command.meter_id, command.command,
                 command.requested_by, command.reason or "no reason given",
                 extra={"meter": command.meter_id})
        try:
            ok, detail, _ = await self.handler(schema.Command(
                f"q{command.id}", command.command, command.meter_id,
                reason=command.reason or f"queued by {command.requested_by}"))
        except Exception as exc:  # one command's failure must not stop the queue
            log.exception("meter %s: %s failed", command.meter_id, command.command)
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        await self.store.finish_command(command.id, ok, detail)
        self.done += 1
