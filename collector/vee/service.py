"""Run VEE beside the collector: after each collection cycle for the day so far, and
once more over the whole previous day when a local day closes. What stands on validated
reads (prepaid balances) runs right after each pass, so it never prices a gap VEE is
about to fill."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime, timedelta

from collector.acquisition.clock import Clock, holding, sleep_until_or_stopped
from collector.acquisition.scheduler import next_slot
from collector.config.settings import Schedule
from collector.vee.engine import ENERGY, VeeEngine, VeeRun
from storage.base import StorageError

log = logging.getLogger(__name__)
SETTLE = timedelta(minutes=3)
"""After a slot, wait this long so that slot's reads (and the flag pass) are in."""


AfterPass = Callable[[datetime], Awaitable[object]]
"""A step that runs after each pass, given the pass's time."""


class VeeService:
    def __init__(self, engine: VeeEngine, clock: Clock, every: timedelta,
                 after: Sequence[AfterPass] = ()) -> None:
        self.engine = engine
        self.after = list(after)
        self.clock = clock
        self.passes = 0
        self.last: VeeRun | None = None
        self._stop = asyncio.Event()
        self._cycle = Schedule("vee", every, (ENERGY,))
        self._closed: date | None = None

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        tz = self.engine.tz
        when = next_slot(self._cycle, self.clock.now(), tz) + SETTLE
        while not self._stop.is_set():
            if await sleep_until_or_stopped(self.clock, when, self._stop):
                return
            today = when.astimezone(tz).date()
            first = today if self._closed in (None, today) else today - timedelta(days=1)
            with holding(self.clock):
                try:
                    self.last = await self.engine.run(first, today, when)
                    self.passes += 1
                    self._closed = today
                except StorageError as exc:
                    log.warning("VEE pass skipped: %s", exc)
                for step in self.after:
                    try:
                        await step(when)
                    except StorageError as exc:
                        log.warning("%s after the VEE pass skipped: %s",
                                    getattr(step, "__qualname__", step), exc)
            when = next_slot(self._cycle, when - SETTLE, tz) + SETTLE
