"""Run the flag engine beside the collector: after each cycle, and once a day in full."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from collector.acquisition.clock import Clock, holding, sleep_until_or_stopped
from collector.acquisition.scheduler import next_slot
from collector.config.intervals import register_interval
from collector.config.settings import Schedule, Settings
from collector.flags.engine import ENERGY, FlagEngine
from collector.ops.metrics import Metrics
from model import Meter
from storage.base import StorageError, Store

log = logging.getLogger(__name__)
SETTLE = timedelta(minutes=2)
"""How long after a slot the fast pass waits, so that slot's reads are in."""


def build_engine(settings: Settings, store: Store,
                 meters: Sequence[Meter] | None = None) -> FlagEngine | None:
    """`meters` defaults to the config's; a head-end may know its meters from the store."""
    chosen = list(meters if meters is not None else settings.meters)
    found = register_interval(replace(settings, meters=tuple(chosen)))
    if found is None:
        return None
    every, per_meter = found
    return FlagEngine(store, chosen, every=every, tz=settings.collector.tz,
                      thresholds=settings.flags.thresholds, interval_of=per_meter)


ClockFixer = Callable[[Meter, float], Awaitable[bool]]


class FlagService:
    def __init__(self, settings: Settings, engine: FlagEngine, clock: Clock,
                 fix_clock: ClockFixer | None = None, metrics: Metrics | None = None) -> None:
        """`fix_clock`, when given, broadcasts a time sync for a meter found drifting."""
        self.metrics = metrics or Metrics()
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.fix_clock = fix_clock
        self.passes = 0
        self.raised = 0
        self.syncs = 0
        self._stop = asyncio.Event()
        self._cycle = Schedule("flags", engine.every, (ENERGY,))
        self._daily = Schedule("flags-daily", timedelta(days=1), (ENERGY,),
                               at=settings.flags.daily_at)

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        tz = self.settings.collector.tz
        fast = next_slot(self._cycle, self.clock.now(), tz) + SETTLE
        daily = next_slot(self._daily, self.clock.now(), tz)
        while not self._stop.is_set():
            when, full = (daily, True) if daily <= fast else (fast, False)
            if await sleep_until_or_stopped(self.clock, when, self._stop):
                return
            with holding(self.clock):
                await self._pass(when, full)
            if full:
                daily = next_slot(self._daily, when, tz)
            else:
                fast = next_slot(self._cycle, when - SETTLE, tz) + SETTLE

    async def _pass(self, now: datetime, full: bool) -> None:
        try:
            run = await self.engine.run(now, full=full)
        except StorageError as exc:
            log.warning("flag pass skipped: %s", exc)
            return
        self.passes += 1
        self.raised += run.raised
        open_now = Counter(row.flag.kind for row in await self.engine.store.list_flags(
            open_only=True))
        self.metrics.open_flags.clear()
        for kind, count in open_now.items():
            self.metrics.open_flags.labels(kind).set(count)
        if self.fix_clock is not None:
            drifting = {f.subject: float(str(f.evidence.get("max_offset_s", 0)))
                        for f in run.findings if f.kind == "clock_drift"}
            for meter in self.engine.meters.values():
                if meter.id in drifting and await self.fix_clock(meter, drifting[meter.id]):
                    self.syncs += 1
                    log.info("clock of meter %s drifts; time sync broadcast on bus %s",
                             meter.id, meter.bus)
        if run.raised:
            log.info("%s flag pass raised %d new flags", "daily" if full else "cycle",
                     run.raised)


