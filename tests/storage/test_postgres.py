"""PostgreSQL-only behaviour: migrations, the daily views, TimescaleDB, surviving restarts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from model import IngestResult, Reading
from storage.buffered import BufferedStore
from storage.postgres import PostgresStore
from tests.storage.test_store_contract import load_dst_days
from tests.support.services import PgCluster, running_cluster

Factory = Callable[..., PostgresStore]
FWD = "1-0:1.8.0"


def timescale_installed(cluster: PgCluster) -> bool:
    with psycopg.connect(cluster.url()) as conn:
        row = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


async def test_migrate_from_empty_then_again_applies_nothing_new(
    postgres_store_factory: Factory,
) -> None:
    store = postgres_store_factory()
    try:
        first = await store.migrate()
        assert first[:2] == ["0001_initial", "0002_daily_views"]
        assert await store.migrate() == []
        assert await store.count_readings() == 0
    finally:
        await store.close()


async def test_daily_views_count_25_hours_on_the_autumn_dst_day(
    postgres_store_factory: Factory,
) -> None:
    store = postgres_store_factory(timezone="Europe/Berlin")
    await store.migrate()
    try:
        start = await load_dst_days(store)
        end = start + timedelta(days=3)
        daily = {(r.subject, r.day): r.kwh for r in await store.daily_consumption(
            start, end, tz="Europe/Berlin")}
        assert daily[("m1", "2026-10-24")] == 24.0
        assert daily[("m1", "2026-10-25")] == 25.0
        area = {(r.subject, r.day): r.kwh for r in await store.daily_consumption(
            start, end, by="area", tz="Europe/Berlin")}
        # Days run from start's local date up to, not including, end's local date.
        assert area == {("A", "2026-10-24"): 36.0, ("A", "2026-10-25"): 37.5}
    finally:
        await store.close()


async def test_timescale_features_are_created_when_the_extension_is_present(
    pg_cluster: PgCluster, postgres_store_factory: Factory,
) -> None:
    if not timescale_installed(pg_cluster):
        pytest.skip("TimescaleDB is not installed on this PostgreSQL (Debian does not "
                    "package it); the plain-PostgreSQL path is what runs here")
    store = postgres_store_factory(timezone="Asia/Shanghai")
    try:
        applied = await store.migrate()
        assert store.timescale
        assert "timescale/0003_daily_aggregates" in applied
        with psycopg.connect(store.url) as conn:
            tables = {r[0] for r in conn.execute(
                "SELECT hypertable_name FROM timescaledb_information.hypertables")}
            caggs = {r[0] for r in conn.execute(
                "SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        assert {"readings", "events", "collection_attempts"} <= tables
        assert "readings_daily" in caggs
        batch = [Reading("m1", FWD, datetime(2026, 11, 1, tzinfo=UTC) + timedelta(hours=h),
                         float(h), "kWh") for h in range(49)]
        assert (await store.write_readings(batch)).new == 49
        assert (await store.write_readings(batch)).unchanged == 49
    finally:
        await store.close()


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    with running_cluster() as cluster:
        yield cluster


def batch(n: int, size: int) -> list[Reading]:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    return [Reading(f"m{i % 50}", FWD, t0 + timedelta(minutes=15 * (n * size + i)),
                    float(i), "kWh") for i in range(size)]


async def test_a_database_restart_mid_ingest_delivers_every_row_exactly_once(
    own_cluster: PgCluster, tmp_path: Path,
) -> None:
    url = own_cluster.create_database("restart")
    store = BufferedStore(PostgresStore(url, timeout_s=1), str(tmp_path / "spill.db"),
                          max_memory_rows=300, retry_initial_s=0.1, retry_max_s=0.5)
    await store.migrate()
    results = IngestResult()
    for n in range(30):
        if n == 10:
            await asyncio.to_thread(own_cluster.stop)
        if n == 20:
            await asyncio.to_thread(own_cluster.start)
        results += await store.write_readings(batch(n, 100))
    assert results.buffered >= 1000  # batches 10..19 at least waited
    assert await store.drain(within_s=60)
    assert store.spill.rows() == 0
    with psycopg.connect(url) as conn:
        count, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (meter_id, quantity, ts)) "
            "FROM reading_values").fetchone()
    assert count == distinct == 3000
    await store.close()


async def test_rows_waiting_on_disk_are_delivered_by_the_next_process(
    own_cluster: PgCluster, tmp_path: Path,
) -> None:
    url = own_cluster.create_database("spill")
    spill = str(tmp_path / "spill.db")
    first = BufferedStore(PostgresStore(url, timeout_s=1), spill, max_memory_rows=50)
    await first.migrate()
    await asyncio.to_thread(own_cluster.stop)
    assert (await first.write_readings(batch(0, 120))).buffered == 120
    await first.close(drain_timeout=0.5)  # the database is still down: rows go to disk
    await asyncio.to_thread(own_cluster.start)
    second = BufferedStore(PostgresStore(url, timeout_s=1), spill, retry_initial_s=0.1)
    await second.migrate()
    assert await second.drain(within_s=30)
    assert await second.count_readings() == 120
    await second.close()
