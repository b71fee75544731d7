"""The stepped clock that the daemon tests run on: time moves only when no work holds it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from collector.acquisition.clock import SteppedClock, holding

T0 = datetime(2026, 11, 22, 16, tzinfo=UTC)


async def test_time_stands_still_while_work_holds_it_however_long_the_work_takes() -> None:
    clock = SteppedClock(T0)
    woke: list[datetime] = []

    async def sleeper() -> None:
        await clock.sleep_until(T0 + timedelta(minutes=15))
        woke.append(clock.now())

    with holding(clock):
        task = asyncio.create_task(sleeper())
        for _ in range(200):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)  # real time passes too; simulated time must not
        assert clock.now() == T0 and not woke
    await task
    assert woke == [T0 + timedelta(minutes=15)]


async def test_sleepers_wake_in_time_order_each_at_its_own_instant() -> None:
    clock = SteppedClock(T0)
    order: list[tuple[str, datetime]] = []

    async def sleeper(name: str, minutes: int) -> None:
        await clock.sleep_until(T0 + timedelta(minutes=minutes))
        order.append((name, clock.now()))

    await asyncio.gather(sleeper("late", 30), sleeper("early", 15), sleeper("also", 15))
    assert order == [("early", T0 + timedelta(minutes=15)), ("also", T0 + timedelta(minutes=15)),
                     ("late", T0 + timedelta(minutes=30))]


async def test_a_task_woken_at_a_slot_holds_the_clock_before_it_can_jump_again() -> None:
    """The scheduler's pattern: wake, queue work with a hold, sleep for the next slot."""
    clock = SteppedClock(T0)
    seen: list[tuple[datetime, datetime]] = []

    async def worker(slot: datetime) -> None:
        await asyncio.sleep(0.01)  # a read on the wire, in real time
        seen.append((slot, clock.now()))
        clock.release()

    workers: list[asyncio.Task[None]] = []

    async def producer() -> None:
        slot = T0
        for _ in range(4):
            slot += timedelta(minutes=15)
            await clock.sleep_until(slot)
            clock.hold()
            workers.append(asyncio.create_task(worker(slot)))

    await producer()
    await asyncio.gather(*workers)
    assert seen == [(T0 + timedelta(minutes=15 * n),) * 2 for n in range(1, 5)]


async def test_a_cancelled_sleeper_does_not_stop_the_others() -> None:
    clock = SteppedClock(T0)
    gone = asyncio.create_task(clock.sleep_until(T0 + timedelta(minutes=5)))
    await asyncio.sleep(0)
    gone.cancel()
    await clock.sleep_until(T0 + timedelta(minutes=10))
    assert clock.now() == T0 + timedelta(minutes=10)


def test_a_release_without_a_hold_is_a_bug_and_says_so() -> None:
    with pytest.raises(RuntimeError, match="without a hold"):
        SteppedClock(T0).release()
