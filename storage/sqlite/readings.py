"""Raw reads in SQLite: the idempotent ingest (a staging table, one upsert with quality
precedence, late reads over VEE's estimates) and the reads of raw values."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from model import (
    AUTOMATIC,
    IngestResult,
    Quality,
    Reading,
    ReadKind,
)
from storage.base import (
    QUALITY_CODES,
    QUALITY_OF_CODE,
    DailyConsumption,
    StorageError,
    UnitMismatch,
    quality_code_rank_sql,
)
from storage.daily import daily_from_rows
from storage.sqlite.outbox import SqliteOutbox
from storage.versions import (
    LATE_READ_ACTOR,
    LATE_READ_NOTE,
    LATE_READ_REASON,
)

FORWARD_ACTIVE = "1-0:1.8.0"
_RANK_NEW = quality_code_rank_sql("excluded.quality")
_RANK_OLD = quality_code_rank_sql("readings.quality")
_RANK_STAGED = quality_code_rank_sql("s.quality")
_RANK_STORED = quality_code_rank_sql("r.quality")
# Enum `.value` is a Python-level property: looked up once here, not once per row.
_KIND_TEXT = {k: k.value for k in ReadKind}
_QUALITY_FIELDS = {q: (QUALITY_CODES[q], q.value) for q in Quality}


class SqliteReadings(SqliteOutbox):
    @functools.cached_property
    def _names(self) -> tuple[_Names, _Names]:
        return _Names("sources"), _Names("methods")

    async def write_readings(self, readings: Sequence[Reading]) -> IngestResult:
        if not readings:
            return IngestResult()
        received = datetime.now(UTC).timestamp()
        kinds, qualities = _KIND_TEXT, _QUALITY_FIELDS
        rows = [
            (r.meter_id, r.quantity, kinds[r.kind], r.unit, r.ts.timestamp(), r.value,
             *qualities[r.quality], r.method, r.source, received)
            for r in readings
        ]
        def write(db: sqlite3.Connection) -> IngestResult:
            if not self.outbox:
                return _ingest(db, rows)
            queued = self._outbox_count(db)
            result = _ingest(db, rows, outbox=True)
            # _ingest queues exactly the rows it found new or changed.
            self._outbox_rows = queued + result.new + result.updated
            self._bound_outbox(db)
            return result

        return await self._run(self._tx(write))

    async def count_readings(self) -> int:
        return await self._query(
            lambda db: int(db.execute("SELECT count(*) FROM readings").fetchone()[0])
        )

    async def readings_in(
        self, start: datetime, end: datetime, quantities: Sequence[str]
    ) -> list[Reading]:
        marks = ",".join("?" * len(quantities))

        def read(db: sqlite3.Connection) -> list[Reading]:
            rows = db.execute(
                f"{_VALUES_SELECT} WHERE ts >= ? AND ts <= ? AND quantity IN ({marks}) "
                "ORDER BY meter_id, quantity, kind, ts",
                (start.timestamp(), end.timestamp(), *quantities),
            ).fetchall()
            return _readings(db, rows, self._names)

        return await self._query(read)

    async def values_in(
        self, start: datetime, end: datetime, quantities: Sequence[str],
        meter_ids: Sequence[str],
    ) -> list[tuple[str, str, str, float, float]]:
        marks = ",".join("?" * len(quantities))

        def read(db: sqlite3.Connection) -> list[tuple[str, str, str, float, float]]:
            return db.execute(
                "SELECT s.meter_id, s.quantity, s.kind, r.ts, r.value FROM series s "
                "JOIN readings r ON r.series_id = s.id "
                "WHERE s.meter_id IN (SELECT value FROM json_each(?)) "
                f"AND s.quantity IN ({marks}) AND r.ts >= ? AND r.ts <= ? ORDER BY 1, 2, 3, 4",
                (json.dumps(list(meter_ids)), *quantities, start.timestamp(),
                 end.timestamp())).fetchall()

        return await self._query(read)

    async def heard_from(self, start: datetime, end: datetime) -> list[str]:
        def read(db: sqlite3.Connection) -> list[str]:
            return [r[0] for r in db.execute(
                "SELECT DISTINCT s.meter_id FROM series s WHERE EXISTS (SELECT 1 FROM "
                "readings r WHERE r.series_id = s.id AND r.ts >= ? AND r.ts <= ?) "
                "ORDER BY 1", (start.timestamp(), end.timestamp()))]

        return await self._query(read)

    async def latest_readings(self, meter_ids: Sequence[str] | None = None) -> list[Reading]:
        def read(db: sqlite3.Connection) -> list[Reading]:
            rows = db.execute(
                f"{_VALUES_SELECT} JOIN (SELECT series_id, max(ts) AS ts "
                "FROM readings GROUP BY series_id) l "
                "ON r.series_id = l.series_id AND r.ts = l.ts "
                "ORDER BY s.meter_id, s.quantity, s.kind = 'interval', s.kind"
            ).fetchall()
            wanted = set(meter_ids) if meter_ids is not None else None
            return _readings(db, (r for r in rows if wanted is None or r[0] in wanted),
                             self._names)

        return await self._query(read)

    async def series(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[Reading]:
        def read(db: sqlite3.Connection) -> list[Reading]:
            rows = db.execute(
                f"{_VALUES_SELECT} WHERE meter_id = ? AND quantity = ? AND kind = ? "
                "AND ts >= ? AND ts <= ? ORDER BY ts",
                (meter_id, quantity, kind.value, start.timestamp(), end.timestamp()),
            ).fetchall()
            return _readings(db, rows, self._names)

        return await self._query(read)

    async def daily_consumption(
        self, start: datetime, end: datetime, by: str = "meter", tz: str = "UTC",
        quantity: str = FORWARD_ACTIVE, meter_ids: Sequence[str] | None = None,
    ) -> list[DailyConsumption]:
        """A register's energy per local day: its value at day end minus at day start.

        Computed from register reads at the day's boundaries (the readings stamped at
        local midnight), so a DST day correctly has 23 or 25 hours of energy in it.
        """
        if by not in ("meter", "area"):
            raise StorageError("daily consumption groups by meter or area")
        zone = ZoneInfo(tz)

        which, extra = "", []
        if meter_ids is not None:
            which = "AND r.meter_id IN (SELECT value FROM json_each(?)) "
            extra.append(json.dumps(list(meter_ids)))

        def read(db: sqlite3.Connection) -> list[DailyConsumption]:
            rows = db.execute(
                "SELECT r.meter_id, coalesce(m.area, ''), coalesce(m.area_meter, 0), r.ts, r.value "
                "FROM reading_values r LEFT JOIN meters m ON m.id = r.meter_id "
                "WHERE r.quantity = ? AND r.kind IN ('interval', 'daily') AND r.ts >= ? "
                f"AND r.ts <= ? {which}ORDER BY r.meter_id, r.ts, r.kind = 'interval'",
                (quantity, start.timestamp(), (end + timedelta(days=1)).timestamp(), *extra),
            ).fetchall()
            return daily_from_rows(rows, start, end, zone, by)

        return await self._query(read)


# reading_values without its three name joins: the names come from small tables read
# once per query (_readings), not looked up again for each of a month's rows.
_VALUES_SELECT = ("SELECT s.meter_id, s.quantity, r.ts, r.value, s.unit, r.quality, "
                  "r.source_id, r.method_id, s.kind FROM readings r "
                  "JOIN series s ON s.id = r.series_id")


_KIND_OF = {k.value: k for k in ReadKind}


class _Names(dict[int, str]):
    """id → name of an append-only table (sources, methods), read again only for an id it
    has not seen. Reading the whole table per query cost a 2,000-concentrator front end
    16 % of its core: every terminal has its own sources, and each of its 32 meters'
    "where did I stop" queries read all 6,000 of them."""

    def __init__(self, table: str) -> None:
        super().__init__()
        self.sql = f"SELECT id, name FROM {table} WHERE id > ?"

    def __missing__(self, key: int) -> str:
        self.update(self._db.execute(self.sql, (max(self, default=-1),)))
        if key not in self:
            raise KeyError(key)
        return self[key]

    def on(self, db: sqlite3.Connection) -> _Names:
        self._db = db
        return self

    _db: sqlite3.Connection


def _readings(db: sqlite3.Connection, rows: Iterable[Sequence[Any]],
              names: tuple[_Names, _Names]) -> list[Reading]:
    """Rows of _VALUES_SELECT as Readings. A window's meters share their slot times, so
    each timestamp becomes a datetime once, and names and enum members come from dicts:
    the flag pass reads a month of every meter through here."""
    sources, methods = (n.on(db) for n in names)
    stamps: dict[float, datetime] = {}
    out = []
    for r in rows:
        ts = stamps.get(r[2])
        if ts is None:
            ts = stamps[r[2]] = datetime.fromtimestamp(r[2], UTC)
        out.append(Reading(r[0], r[1], ts, r[3], r[4], QUALITY_OF_CODE[r[5]], sources[r[6]],
                           methods[r[7]], _KIND_OF[r[8]]))
    return out


# A raw actual read of a key whose current version is VEE's estimate: the read arrived
# late, and replaces the estimate with a new version; the estimate stays in the history.
_LATE_READS = f"""
INSERT INTO reading_versions (series_id, ts, version, value, quality, method_id, reason, actor,
                              created_at, note)
SELECT v.series_id, v.ts, v.version + 1, r.value, r.quality, r.method_id, ?, ?, ?, ?
FROM (SELECT series_id, ts, max(version) AS version, quality, actor FROM reading_versions
      WHERE series_id IN (SELECT DISTINCT series_id FROM series_staging)
      GROUP BY series_id, ts) v
JOIN series_staging st ON st.series_id = v.series_id AND st.ts = v.ts
JOIN readings r ON r.series_id = v.series_id AND r.ts = v.ts
WHERE v.actor LIKE '{AUTOMATIC}%' AND {_RANK_STORED} > {quality_code_rank_sql("v.quality")}
"""
_CHANGED = (f"{_RANK_STAGED} >= {_RANK_STORED} AND (s.value != r.value OR "
            "s.quality != r.quality OR s.method_id != r.method_id)")


def _ingest(
    db: sqlite3.Connection, rows: list[tuple[Any, ...]], *, outbox: bool = False
) -> IngestResult:
    db.execute(
        "CREATE TEMP TABLE IF NOT EXISTS series_staging (meter_id TEXT, quantity TEXT, "
        "kind TEXT, unit TEXT, ts REAL, value REAL, quality INTEGER, letter TEXT, method TEXT, "
        "source TEXT, queued_at REAL, series_id INTEGER, method_id INTEGER, "
        "source_id INTEGER, PRIMARY KEY (meter_id, quantity, kind, ts))"
    )
    db.execute("DELETE FROM series_staging")
    # Within one batch the last value for a key wins, as it would arriving one by one.
    db.executemany(
        "INSERT OR REPLACE INTO series_staging (meter_id, quantity, kind, unit, ts, value, "
        "quality, letter, method, source, queued_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    db.execute("INSERT OR IGNORE INTO series (meter_id, quantity, kind, unit) "
               "SELECT DISTINCT meter_id, quantity, kind, unit FROM series_staging")
    db.execute("INSERT OR IGNORE INTO sources (name) SELECT DISTINCT source FROM series_staging")
    db.execute("INSERT OR IGNORE INTO methods (name) SELECT DISTINCT method FROM series_staging")
    db.execute(
        "UPDATE series_staging SET "
        "series_id = (SELECT id FROM series x WHERE x.meter_id = series_staging.meter_id "
        "AND x.quantity = series_staging.quantity AND x.kind = series_staging.kind), "
        "source_id = (SELECT id FROM sources WHERE name = series_staging.source), "
        "method_id = (SELECT id FROM methods WHERE name = series_staging.method)")
    wrong = db.execute(
        "SELECT s.meter_id, s.quantity, s.kind, x.unit, s.unit FROM series_staging s "
        "JOIN series x ON x.id = s.series_id WHERE x.unit != s.unit LIMIT 5").fetchall()
    if wrong:
        raise UnitMismatch("readings refused, a series keeps one unit: " + "; ".join(
            f"{m} {q} ({k}) is in {have}, got {got}" for m, q, k, have, got in wrong))
    new = db.execute(
        "SELECT count(*) FROM series_staging s WHERE NOT EXISTS (SELECT 1 FROM readings r "
        "WHERE r.series_id = s.series_id AND r.ts = s.ts)"
    ).fetchone()[0]
    updated = db.execute(
        "SELECT count(*) FROM series_staging s JOIN readings r ON r.series_id = s.series_id "
        f"AND r.ts = s.ts WHERE {_CHANGED}"
    ).fetchone()[0]
    if outbox and new + updated:
        db.execute(
            "INSERT INTO outbox (kind, item, queued_at) SELECT 'reading', "
            "json_object('meter', s.meter_id, "
            "'quantity', s.quantity, 'ts', strftime('%Y-%m-%dT%H:%M:%fZ', s.ts, 'unixepoch'), "
            "'value', s.value, 'unit', s.unit, 'quality', s.letter, 'method', s.method, "
            "'source', s.source, 'kind', s.kind), s.queued_at FROM series_staging s "
            "LEFT JOIN readings r ON r.series_id = s.series_id AND r.ts = s.ts "
            f"WHERE r.series_id IS NULL OR ({_CHANGED}) "
            "ORDER BY s.ts, s.meter_id, s.quantity"
        )
    db.execute(
        "INSERT INTO readings SELECT series_id, ts, value, quality, method_id, source_id "
        "FROM series_staging WHERE true "
        "ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value, "
        "quality = excluded.quality, method_id = excluded.method_id, "
        "source_id = excluded.source_id "
        f"WHERE {_RANK_NEW} >= {_RANK_OLD} AND (excluded.value != readings.value OR "
        "excluded.quality != readings.quality OR excluded.method_id != readings.method_id)"
    )
    db.execute(_LATE_READS, (LATE_READ_REASON, LATE_READ_ACTOR,
                             datetime.now(UTC).timestamp(), LATE_READ_NOTE))
    return IngestResult(new=new, updated=updated, unchanged=len(rows) - new - updated)
