"""Blocks read one ahead of the work on them, and no read left running after a failure."""

from __future__ import annotations

import asyncio
from contextlib import aclosing

import pytest

from collector.ops.read_ahead import read_ahead


async def test_each_block_comes_in_order_with_the_next_already_being_read() -> None:
    started: list[int] = []

    async def read(n: int) -> int:
        started.append(n)
        await asyncio.sleep(0)
        return n * 10

    seen = []
    async with aclosing(read_ahead([1, 2, 3], read)) as each:
        async for block, got in each:
            await asyncio.sleep(0)  # the work on a block lets the next read start
            seen.append((block, got, list(started)))
    assert seen == [(1, 10, [1, 2]), (2, 20, [1, 2, 3]), (3, 30, [1, 2, 3])]


async def test_a_pass_that_fails_cancels_the_read_ahead() -> None:
    gate = asyncio.Event()
    cancelled = asyncio.Event()

    async def read(n: int) -> int:
        if n == 2:
            try:
                await gate.wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        return n

    with pytest.raises(RuntimeError):
        async with aclosing(read_ahead([1, 2], read)) as each:
            async for _ in each:
                await asyncio.sleep(0)  # block 2's read is under way
                raise RuntimeError("the pass failed")
    await asyncio.wait_for(cancelled.wait(), 5)


async def test_no_blocks_read_nothing() -> None:
    async def read(n: int) -> int:
        raise AssertionError("nothing to read")

    assert [x async for x in read_ahead([], read)] == []
