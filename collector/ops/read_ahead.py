"""A fleet's blocks, each read while the one before it is worked on.

A pass over a district reads a block of meters from the database, then spends its core
on them in Python; reading the next block meanwhile keeps the database's core busy too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import TypeVar

B = TypeVar("B")
R = TypeVar("R")


async def read_ahead(blocks: Sequence[B], read: Callable[[B], Awaitable[R]]
                     ) -> AsyncGenerator[tuple[B, R], None]:
    """(block, what `read` gave for it), in order, at most one read in flight ahead.
    Use it under contextlib.aclosing, so a pass that fails cancels the read ahead."""
    pending = asyncio.ensure_future(read(blocks[0])) if blocks else None
    try:
        for k, block in enumerate(blocks):
            assert pending is not None
            got = await pending
            pending = asyncio.ensure_future(read(blocks[k + 1])) if k + 1 < len(blocks) \
                else None
            yield block, got
    finally:
        if pending is not None:
            pending.cancel()
