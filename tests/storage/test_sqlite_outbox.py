"""The gateway outbox: filled with the data it carries, bounded, emptied after PUBACK."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from model import CollectionAttempt, Outcome, Reading
from storage.sqlite import SqliteStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def batch(start: int, n: int) -> list[Reading]:
    return [Reading("m1", "1-0:1.8.0", T0 + timedelta(minutes=15 * i), float(i), "kWh")
            for i in range(start, start + n)]


def counted(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM outbox").fetchone()[0])


async def test_the_outbox_holds_new_and_changed_rows_and_gives_way_at_its_bound(
    tmp_path: Path,
) -> None:
    db = tmp_path / "gw.db"
    store = SqliteStore(str(db), outbox=True, outbox_max_rows=1500)
    await store.migrate()
    await store.write_readings(batch(0, 1000))
    await store.write_readings(batch(0, 1000))           # a replay queues nothing
    assert await store.outbox_size() == counted(db) == 1000
    await store.write_readings(batch(1000, 800))          # 1,800 > 1,500: oldest 300 go
    await store.write_attempts([CollectionAttempt("m1", "b1", T0, Outcome.OK, 5.0)])
    assert await store.outbox_size() == counted(db) == 1500
    assert store.outbox_evicted == 301
    oldest = await store.outbox_peek(200)
    assert oldest[0].item["ts"].startswith("2026-11-04T03:15")  # reading 301 of 0..
    await store.outbox_delete([r.id for r in oldest])     # the broker's PUBACK
    assert await store.outbox_size() == counted(db) == 1300
    await store.close()
    reopened = SqliteStore(str(db), outbox=True)          # after a power cut
    assert await reopened.outbox_size() == 1300
    await reopened.close()


def test_a_locked_database_is_transient_and_a_missing_column_is_not() -> None:
    import sqlite3

    from storage.sqlite import transient

    assert transient(sqlite3.OperationalError("database is locked"))
    assert transient(sqlite3.OperationalError("database or disk is full"))
    assert transient(sqlite3.OperationalError("disk I/O error"))
    assert not transient(sqlite3.OperationalError("no such column: received_at"))
    assert not transient(sqlite3.OperationalError("no such table: readings"))
    assert not transient(sqlite3.OperationalError('near "SELEC": syntax error'))
    assert not transient(sqlite3.OperationalError("no such column: disk_full"))
