"""The series-keyed readings store: kinds, one unit per series, both ingest paths, and the
conversion of a database written by the old wide schema."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from model import IngestResult, Quality, Reading, ReadKind
from storage.base import Store, UnitMismatch
from storage.postgres import PostgresStore, migrate
from storage.sqlite import SqliteStore
from storage.sqlite.schema import _SCHEMA
from tests.support.services import PgCluster

T0 = datetime(2026, 11, 1, 16, tzinfo=UTC)
FWD = "1-0:1.8.0"


def slot(n: int) -> datetime:
    return T0 + timedelta(minutes=15 * n)


async def test_a_frozen_value_and_an_interval_read_of_one_instant_are_both_kept(
        store: Store) -> None:
    live = Reading("m1", FWD, T0, 100.25, "kWh", source="dlt645:bus1")
    frozen = Reading("m1", FWD, T0, 100.0, "kWh", source="dlt645:bus1:frozen1",
                     kind=ReadKind.FROZEN_DAILY)
    assert await store.write_readings([live, frozen]) == IngestResult(new=2)
    (interval,) = await store.series("m1", FWD, T0, T0)
    (daily,) = await store.series("m1", FWD, T0, T0, kind=ReadKind.FROZEN_DAILY)
    assert (interval.value, interval.kind) == (100.25, ReadKind.INTERVAL)
    assert (daily.value, daily.kind, daily.source) == (100.0, ReadKind.FROZEN_DAILY,
                                                       "dlt645:bus1:frozen1")


async def test_a_reading_in_another_unit_than_its_series_is_refused_not_mixed_in(
        store: Store) -> None:
    await store.write_readings([Reading("m1", FWD, T0, 1.0, "kWh")])
    with pytest.raises(UnitMismatch, match=r"m1 1-0:1\.8\.0 .* is in kWh, got Wh"):
        await store.write_readings([Reading("m1", FWD, slot(1), 1000.0, "Wh")])
    assert await store.count_readings() == 1


async def test_a_batch_of_new_keys_goes_in_by_copy_and_a_replay_takes_the_upsert(
        postgres_store_factory: Callable[..., PostgresStore]) -> None:
    store = postgres_store_factory()
    try:
        await store.migrate()
        batch = [Reading(f"m{i % 7}", FWD, slot(i), float(i), "kWh", source="mqtt:gw1")
                 for i in range(500)]
        assert await store.write_readings(batch) == IngestResult(new=500)
        assert (store.direct_batches, store.upsert_batches) == (1, 0)
        newer = [Reading("m1", FWD, slot(1000), 1.0, "kWh")]
        assert await store.write_readings(batch + newer) == IngestResult(new=1, unchanged=500)
        assert (store.direct_batches, store.upsert_batches) == (1, 1)
        duplicated = [Reading("m9", FWD, T0, 1.0, "kWh"), Reading("m9", FWD, T0, 2.0, "kWh")]
        assert await store.write_readings(duplicated) == IngestResult(new=1, unchanged=1)
        (got,) = await store.series("m9", FWD, T0, T0)
        assert got.value == 2.0  # the last value for a key within a batch wins
        assert await store.count_readings() == 502
    finally:
        await store.close()


# --- conversion from the wide schema -------------------------------------------------------

WIDE = [
    # meter, quantity, ts, value, unit, quality, method, source
    ("m1", FWD, slot(0), 100.0, "kWh", "A", "", "dlt645:bus1"),
    ("m1", FWD, slot(1), 100.5, "kWh", "E", "17", "vee"),
    ("m1", "1-0:32.7.0", slot(0), 229.9, "V", "A", "", "dlt645:bus1"),
    ("m2", FWD, slot(0), 50.0, "kWh", "A", "", "dlt645:bus1:frozen1*40"),
    ("m2", FWD, slot(1), 50.5, "kWh", "S", "52", "mqtt:gw1:concentrator"),
    ("m3", "1-0:2.8.0", slot(2), 0.0, "kWh", "A", "", ""),
]


def expected() -> set[tuple[object, ...]]:
    return {(m, q, ts, v, u, qual, meth, src,
             ReadKind.FROZEN_DAILY if "frozen" in src else ReadKind.INTERVAL)
            for m, q, ts, v, u, qual, meth, src in WIDE}


def as_tuples(readings: list[Reading]) -> set[tuple[object, ...]]:
    return {(r.meter_id, r.quantity, r.ts, r.value, r.unit, r.quality.value, r.method,
             r.source, r.kind) for r in readings}


async def test_the_migration_converts_a_wide_postgres_database_without_changing_a_read(
        pg_cluster: PgCluster) -> None:
    url = pg_cluster.create_database("wide_to_series")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_migrations "
                     "(version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
        for m in migrate.plain_migrations():
            if m.version < "0004":
                conn.execute(m.text.encode())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)",
                             (m.version,))
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO readings (meter_id, quantity, ts, value, unit, "
                            "quality, method, source) VALUES (%s,%s,%s,%s,%s,%s,%s,%s)", WIDE)
    store = PostgresStore(url)
    try:
        assert "0004_series_readings" in await store.migrate()
        got = await store.readings_in(T0, slot(10), [FWD, "1-0:32.7.0", "1-0:2.8.0"])
        assert as_tuples(got) == expected()
        assert len(got) == len(WIDE)
        # The converted store goes on working: a replay of an old row is unchanged.
        again = Reading("m1", FWD, slot(0), 100.0, "kWh", source="dlt645:bus1")
        assert await store.write_readings([again]) == IngestResult(unchanged=1)
        daily = await store.daily_consumption(T0, T0 + timedelta(days=1))
        assert daily == []  # no whole day: the views were recreated and answer
    finally:
        await store.close()


def wide_sqlite(path: Path, rows: list[tuple[Any, ...]]) -> Path:
    """A SQLite file as the wide schema (migrations before 0004) left it, holding `rows`."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, "
                   "applied_at REAL NOT NULL)")
        for version, text in _SCHEMA:
            if version >= "0004":
                break
            for statement in text.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, 0)", (version,))
        db.executemany("INSERT INTO readings VALUES (?,?,?,?,?,?,?,?,0)",
                       [(m, q, ts.timestamp(), v, u, qual, meth, src)
                        for m, q, ts, v, u, qual, meth, src in rows])
    return path


async def test_the_migration_converts_a_wide_sqlite_file_without_changing_a_read(
        tmp_path: Path) -> None:
    path = wide_sqlite(tmp_path / "wide.db", WIDE)
    store = SqliteStore(str(path))
    try:
        assert (await store.migrate())[0] == "0004_series_readings"
        got = await store.readings_in(T0, slot(10), [FWD, "1-0:32.7.0", "1-0:2.8.0"])
        assert as_tuples(got) == expected()
        assert len(got) == len(WIDE)
        again = Reading("m2", FWD, slot(1), 50.5, "kWh", Quality.SUBSTITUTED, method="52",
                        source="mqtt:gw1:concentrator")
        assert await store.write_readings([again]) == IngestResult(unchanged=1)
    finally:
        await store.close()


async def test_a_wide_file_with_two_units_for_one_series_is_not_converted(
        tmp_path: Path) -> None:
    path = wide_sqlite(tmp_path / "mixed.db", [("m1", FWD, slot(0), 1.0, "kWh", "A", "", ""),
                                               ("m1", FWD, slot(1), 1001.0, "Wh", "A", "", "")])
    store = SqliteStore(str(path))
    try:
        with pytest.raises(Exception, match="more than one unit"):
            await store.migrate()
    finally:
        await store.close()
    with sqlite3.connect(path) as db:  # untouched: the old table and both rows remain
        assert db.execute("SELECT count(*) FROM readings").fetchone()[0] == 2


async def test_a_pass_reads_one_block_of_meters_and_still_hears_every_meter(
        store: Store) -> None:
    await store.write_readings([Reading(f"m{i}", FWD, slot(i), float(i), "kWh")
                                for i in range(6)])
    got = await store.values_in(T0, slot(10), [FWD], ["m1", "m4", "nobody"])
    assert [(r[0], r[4]) for r in got] == [("m1", 1.0), ("m4", 4.0)]
    assert await store.values_in(T0, slot(10), [FWD], []) == []
    assert await store.heard_from(slot(2), slot(4)) == ["m2", "m3", "m4"]
    rows = await store.values_in(T0, slot(10), [FWD], ["m2", "m0"])
    assert rows == [("m0", FWD, "interval", T0.timestamp(), 0.0),
                    ("m2", FWD, "interval", slot(2).timestamp(), 2.0)]
