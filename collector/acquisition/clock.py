"""Real time, and a simulated time that runs N× faster for the demo and the tests.

The scheduler, the simulator and the flags all ask one Clock, so a day of 15-minute
intervals can be exercised in seconds without any of them knowing it is not real.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Protocol


class Clock(Protocol):
    speed: float

    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...

    def hold(self) -> None:
        """Work is in progress that a stepped clock must not jump over (see SteppedClock)."""

    def release(self) -> None:
        """The work a `hold()` announced is done."""


@contextmanager
def holding(clock: Clock) -> Iterator[None]:
    clock.hold()
    try:
        yield
    finally:
        clock.release()


async def sleep_until_or_stopped(clock: Clock, when: datetime, stop: asyncio.Event) -> bool:
    """Sleep until `when` on `clock`, or until `stop` is set; True when stopped."""
    waiter = asyncio.create_task(clock.sleep_until(when))
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait([waiter, stopper], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    stopper.cancel()
    return stop.is_set()


class RealClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - self.now()).total_seconds()))

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


class SimulatedClock:
    def __init__(self, start: datetime, speed: float, t0: float | None = None) -> None:
        """`t0` (time.monotonic(), which all processes on a machine share) lets a second
        process run the same simulated time, as a restarted daemon must."""
        if start.utcoffset() != timedelta(0):
            raise ValueError("SimulatedClock.start must be UTC")
        if speed <= 0:
            raise ValueError("SimulatedClock.speed must be positive")
        self.start = start
        self.speed = speed
        self._t0 = time.monotonic() if t0 is None else t0

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    async def sleep_until(self, when: datetime) -> None:
        delay = (when - self.now()).total_seconds() / self.speed
        await asyncio.sleep(max(0.0, delay))

    def hold(self) -> None:
        pass

    def release(self) -> None:
        pass


SETTLE_TICKS = 16
"""Loop iterations a stepped clock lets pass before it jumps. A task woken at a slot
reaches its `hold()` within a few callbacks (wake → task → asyncio.wait → caller); this
counts iterations, not seconds, so a loaded machine cannot shorten it."""


class SteppedClock:
    """Simulated time that stands still while work holds it and jumps to the next
    wake-up as soon as nothing does.

    A test that runs a day of 15-minute slots on a clock 3600× faster than real time
    fails whenever the machine stalls: 250 ms of real time is 15 simulated minutes, the
    bus "overruns" and a slot goes unread. Here a read takes no simulated time at all,
    so the outcome depends on the code under test, never on how busy the machine is.
    Single-process only: a second process cannot see when this one is idle.
    """

    speed = math.inf

    def __init__(self, start: datetime) -> None:
        if start.utcoffset() != timedelta(0):
            raise ValueError("SteppedClock.start must be UTC")
        self._now = start
        self._holds = 0
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._changed: asyncio.Event | None = None
        self._stepper: asyncio.Task[None] | None = None

    def now(self) -> datetime:
        return self._now

    def hold(self) -> None:
        self._holds += 1

    def release(self) -> None:
        if self._holds <= 0:
            raise RuntimeError("SteppedClock.release() without a hold()")
        self._holds -= 1
        self._poke()

    async def sleep_until(self, when: datetime) -> None:
        if when <= self._now:
            await asyncio.sleep(0)
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._order), waiter))
        if self._stepper is None or self._stepper.done():
            self._changed = asyncio.Event()
            self._stepper = asyncio.create_task(self._step(), name="stepped-clock")
        self._poke()
        try:
            await waiter
        finally:
            if waiter.cancelled():
                self._poke()

    def _poke(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _drop_cancelled(self) -> None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)

    async def _step(self) -> None:
        assert self._changed is not None
        while True:
            await self._changed.wait()
            self._changed.clear()
            for _ in range(SETTLE_TICKS):
                await asyncio.sleep(0)
            self._drop_cancelled()
            if not self._sleepers:
                return  # the next sleep_until starts a new stepper
            if self._holds or self._changed.is_set():
                continue  # a release() or a new sleeper pokes us again
            self._now = self._sleepers[0][0]
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, waiter = heapq.heappop(self._sleepers)
                if not waiter.done():
                    waiter.set_result(None)
            self._changed.set()  # look again once the woken tasks have settled


def local_midnight(day: date, tz: tzinfo) -> datetime:
    """The UTC instant a local day starts: every day boundary (VEE's, billing's, a
    concentrator's freeze) is this one."""
    return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)


def looks_like_zone_error(offset_s: float) -> bool:
    """Whole hours (or half hours) of offset are a configuration error, not a clock drifting:
    syncing would set every meter on the bus wrong for time-of-use billing. Here, below
    the rooms that sync clocks (the field tools, the 1376.1 front end), so both share it."""
    half_hours = offset_s / 1800
    return abs(offset_s) >= 1800 and abs(half_hours - round(half_hours)) < 0.02


def align_up(ts: datetime, every: timedelta, offset: timedelta = timedelta(0)) -> datetime:
    """The first slot boundary at or after `ts`, slots aligned to the UTC epoch plus offset.

    Aligning to the epoch (not to start-up time) is what makes two gateways, or one
    gateway before and after a restart, stamp the same interval with the same key.
    """
    step = every.total_seconds()
    epoch = (ts - offset).timestamp()
    slots = -(-epoch // step)
    return datetime.fromtimestamp(slots * step, UTC) + offset


def align_down(ts: datetime, every: timedelta) -> datetime:
    step = every.total_seconds()
    return datetime.fromtimestamp((ts.timestamp() // step) * step, UTC)
