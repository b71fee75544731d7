"""Two head-end workers meeting the same new meters at once, as a shared subscription
hands each a share of one gateway's first day."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from model import Reading
from storage.base import StorageUnavailable
from storage.postgres import PostgresStore

T0 = datetime(2026, 11, 1, 16, tzinfo=UTC)


async def test_two_writers_creating_the_same_series_in_opposite_orders_do_not_deadlock(
        postgres_store_factory: Callable[..., PostgresStore]) -> None:
    a = postgres_store_factory()
    await a.migrate()
    b = PostgresStore(a.url)
    try:
        for round_ in range(5):
            keys = [(f"r{round_}m{i:04d}", q) for i in range(400)
                    for q in ("1-0:1.8.0", "1-0:2.8.0")]
            mine = [Reading(m, q, T0 + timedelta(minutes=15), 1.0, "kWh") for m, q in keys]
            theirs = [Reading(m, q, T0 + timedelta(minutes=30), 2.0, "kWh")
                      for m, q in reversed(keys)]
            # Each takes its new series in the other's order: without one order for
            # all, each waits on a key the other inserted first, and PostgreSQL kills one.
            await asyncio.gather(a.write_readings(mine), b.write_readings(theirs))
        assert await a.count_readings() == 5 * 800 * 2
    finally:
        await a.close()
        await b.close()


async def test_a_deadlock_is_reported_as_a_rolled_back_write_to_retry_not_a_lost_link(
        postgres_store_factory: Callable[..., PostgresStore]) -> None:
    a = postgres_store_factory()
    b = PostgresStore(a.url)
    held = {1: asyncio.Event(), 2: asyncio.Event()}

    async def lock(store: PostgresStore, one: int, two: int) -> None:
        async with store._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (one,))
            held[one].set()
            await held[two].wait()  # both hold their first lock before either asks
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (two,))

    try:
        got = await asyncio.gather(lock(a, 1, 2), lock(b, 2, 1), return_exceptions=True)
        errors = [e for e in got if isinstance(e, Exception)]
        assert len(errors) == 1 and isinstance(errors[0], StorageUnavailable)
        assert "rolled the transaction back (40P01, safe to retry)" in str(errors[0])
    finally:
        await a.close()
        await b.close()
