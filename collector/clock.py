"""Real time, and a simulated time that runs N× faster for the demo and the tests.

The scheduler, the simulator and the flags all ask one Clock, so a day of 15-minute
intervals can be exercised in seconds without any of them knowing it is not real.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    speed: float

    def now(self) -> datetime: ...

    async def sleep_until(self, when: datetime) -> None: ...


class RealClock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        await asyncio.sleep(max(0.0, (when - self.now()).total_seconds()))


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
