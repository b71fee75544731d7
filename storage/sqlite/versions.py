"""VEE's versions beside the raw reads in SQLite, and the current value of each key: raw
reads straight off their primary key with the few later versions laid over them."""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from model import (
    AUTOMATIC,
    ReadKind,
    ValueVersion,
    Verdict,
)
from storage.arrays import CurrentArrays, from_columns
from storage.arrays import empty as empty_arrays
from storage.base import (
    QUALITY_CODES,
    QUALITY_OF_CODE,
    UnitMismatch,
)
from storage.sqlite.connection import SqliteConnection
from storage.versions import (
    evidence_text,
    key_of,
    plan_versions,
    version_row,
)


class SqliteVersions(SqliteConnection):
    async def current_values(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        def read(db: sqlite3.Connection) -> list[ValueVersion]:
            return _current_versions(db, quantity, kind, start, end, meter_ids)

        return await self._query(read)

    async def current_arrays(
        self, quantity: str, start: datetime, end: datetime,
        meter_ids: Sequence[str] | None = None, kind: ReadKind = ReadKind.INTERVAL,
    ) -> CurrentArrays:
        def read(db: sqlite3.Connection) -> CurrentArrays:
            return _current_arrays(db, quantity, kind, start, end, meter_ids)

        return await self._query(read)

    async def value_history(
        self, meter_id: str, quantity: str, start: datetime, end: datetime,
        kind: ReadKind = ReadKind.INTERVAL,
    ) -> list[ValueVersion]:
        def read(db: sqlite3.Connection) -> list[ValueVersion]:
            return _versions(db, quantity, kind, start, end, [meter_id])

        return await self._query(read)

    async def write_versions(self, versions: Sequence[ValueVersion]) -> int:
        if not versions:
            return 0
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> int:
            ids = _series_ids(db, versions)
            tops: dict[tuple[str, str, str, datetime], ValueVersion] = {}
            methods = dict(db.execute("SELECT id, name FROM methods").fetchall())
            for v in versions:
                sid = ids[(v.meter_id, v.quantity, str(v.kind))]
                row = db.execute(
                    "SELECT version, value, quality, method_id, reason, actor, note FROM ("
                    "SELECT 0 AS version, value, quality, method_id, '' AS reason, '' AS actor,"
                    " '' AS note FROM readings WHERE series_id = ? AND ts = ? UNION ALL "
                    "SELECT version, value, quality, method_id, reason, actor, note "
                    "FROM reading_versions WHERE series_id = ? AND ts = ?) "
                    "ORDER BY version DESC LIMIT 1",
                    (sid, v.ts.timestamp(), sid, v.ts.timestamp())).fetchone()
                if row is not None:
                    tops[key_of(v)] = version_row(
                        v.meter_id, v.quantity, str(v.kind), v.unit, v.ts, row[0], row[1],
                        QUALITY_OF_CODE[row[2]], methods[row[3]], row[4], row[5], row[6], None)
            planned = plan_versions(tops, versions)
            db.executemany("INSERT OR IGNORE INTO methods (name) VALUES (?)",
                           [(v.method,) for v in planned])
            method_ids = {n: i for i, n in db.execute("SELECT id, name FROM methods")}
            db.executemany(
                "INSERT INTO reading_versions (series_id, ts, version, value, quality, "
                "method_id, reason, actor, created_at, note) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(ids[(v.meter_id, v.quantity, str(v.kind))], v.ts.timestamp(), v.version,
                  v.value, QUALITY_CODES[v.quality], method_ids[v.method], v.reason, v.actor,
                  now, v.note) for v in planned])
            return len(planned)

        return await self._run(self._tx(write))

    async def write_verdicts(self, verdicts: Sequence[Verdict]) -> None:
        now = datetime.now(UTC).timestamp()
        rows = [(v.meter_id, v.day.isoformat(), v.rule, int(v.passed), evidence_text(v), now)
                for v in verdicts]

        def write(db: sqlite3.Connection) -> None:
            db.executemany(
                "INSERT INTO vee_verdicts VALUES (?,?,?,?,?,?) ON CONFLICT (meter_id, day, "
                "rule) DO UPDATE SET passed = excluded.passed, evidence = excluded.evidence, "
                "judged_at = excluded.judged_at WHERE passed != excluded.passed "
                "OR evidence != excluded.evidence", rows)

        await self._run(self._tx(write))

    async def verdicts(self, first: date, last: date,
                       meter_ids: Sequence[str] | None = None) -> list[Verdict]:
        def read(db: sqlite3.Connection) -> list[Verdict]:
            rows = db.execute(
                "SELECT meter_id, day, rule, passed, evidence FROM vee_verdicts "
                "WHERE day >= ? AND day <= ? ORDER BY meter_id, day, rule",
                (first.isoformat(), last.isoformat())).fetchall()
            wanted = set(meter_ids) if meter_ids is not None else None
            return [Verdict(m, date.fromisoformat(d), r, bool(p), json.loads(e))
                    for m, d, r, p, e in rows if wanted is None or m in wanted]

        return await self._query(read)


def _series_ids(db: sqlite3.Connection,
                versions: Sequence[ValueVersion]) -> dict[tuple[str, str, str], int]:
    """Each version's series id, creating series never read before (a null estimate for
    a meter that has not answered yet still needs somewhere to live)."""
    wanted = {(v.meter_id, v.quantity, str(v.kind)): v.unit for v in versions}
    ids = {}
    for (meter, quantity, kind), unit in wanted.items():
        db.execute("INSERT OR IGNORE INTO series (meter_id, quantity, kind, unit) "
                   "VALUES (?,?,?,?)", (meter, quantity, kind, unit))
        sid, have = db.execute("SELECT id, unit FROM series WHERE meter_id = ? AND "
                               "quantity = ? AND kind = ?", (meter, quantity, kind)).fetchone()
        if have != unit:
            raise UnitMismatch(f"a version of {meter} {quantity} ({kind}) is in {unit}, "
                               f"the series is in {have}")
        ids[(meter, quantity, kind)] = sid
    return ids


def _series_filter(quantity: str, kind: ReadKind, meter_ids: Sequence[str] | None
                   ) -> tuple[str, list[Any]]:
    where = "quantity = ? AND kind = ?"
    args: list[Any] = [quantity, kind.value]
    if meter_ids is not None:
        where += f" AND meter_id IN ({','.join('?' * len(meter_ids))})"
        args += list(meter_ids)
    return where, args


def _versions(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
              end: datetime, meter_ids: Sequence[str] | None) -> list[ValueVersion]:
    """Raw reads (version 0) and every later version."""
    where, args = _series_filter(quantity, kind, meter_ids)
    span = (start.timestamp(), end.timestamp())
    rows = db.execute(
        "SELECT s.meter_id, s.unit, v.ts, v.version, v.value, v.quality, v.method_id, "
        "v.reason, v.actor, v.note, v.created_at FROM ("
        "SELECT series_id, ts, 0 AS version, value, quality, method_id, '' AS reason, "
        "'' AS actor, '' AS note, NULL AS created_at FROM readings "
        f"WHERE series_id IN (SELECT id FROM series WHERE {where}) AND ts >= ? AND ts <= ? "
        "UNION ALL SELECT series_id, ts, version, value, quality, method_id, reason, actor, "
        "note, created_at FROM reading_versions "
        f"WHERE series_id IN (SELECT id FROM series WHERE {where}) AND ts >= ? AND ts <= ?"
        ") v JOIN series s ON s.id = v.series_id ORDER BY s.meter_id, v.ts, v.version",
        (*args, *span, *args, *span)).fetchall()
    methods = dict(db.execute("SELECT id, name FROM methods").fetchall())
    return [version_row(r[0], quantity, kind.value, r[1], datetime.fromtimestamp(r[2], UTC),
                        r[3], r[4], QUALITY_OF_CODE[r[5]], methods[r[6]], r[7], r[8], r[9],
                        None if r[10] is None else datetime.fromtimestamp(r[10], UTC))
            for r in rows]


def _current_rows(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
                  end: datetime, meter_ids: Sequence[str] | None
                  ) -> Iterator[tuple[str, str, float, tuple[Any, ...]]]:
    """Each key's top version as (meter, unit, ts, (version, value, quality, method_id,
    reason, actor, note, created_at)), by meter and time. Raw reads are read straight
    off their primary key and the few later versions laid over them in Python: a GROUP
    BY over the union of both tables costs ten times as much, and billing and VEE read
    millions of these."""
    where, args = _series_filter(quantity, kind, meter_ids)
    series = {sid: (meter, unit) for sid, meter, unit in db.execute(
        f"SELECT id, meter_id, unit FROM series WHERE {where}", args)}
    if not series:
        return
    span = (start.timestamp(), end.timestamp())
    chosen = f"series_id IN (SELECT id FROM series WHERE {where}) AND ts >= ? AND ts <= ?"
    tops: dict[tuple[int, float], tuple[Any, ...]] = {}
    for r in db.execute(
            "SELECT series_id, ts, max(version), value, quality, method_id, reason, actor, "
            f"note, created_at FROM reading_versions WHERE {chosen} GROUP BY series_id, ts",
            (*args, *span)):
        tops[(r[0], r[1])] = r[2:]
    per: dict[int, list[tuple[float, tuple[Any, ...]]]] = defaultdict(list)
    for sid, ts, value, quality, method_id in db.execute(
            f"SELECT series_id, ts, value, quality, method_id FROM readings WHERE {chosen} "
            "ORDER BY series_id, ts", (*args, *span)):
        top = tops.pop((sid, ts), None) if tops else None
        per[sid].append((ts, top or (0, value, quality, method_id, "", "", "", None)))
    for (sid, ts), top in tops.items():
        # A version with no raw read under it (an estimate for a gap), merged in order.
        per[sid].append((ts, top))
        per[sid].sort(key=lambda r: r[0])
    for sid in sorted(per, key=lambda i: series[i][0]):
        meter, unit = series[sid]
        for ts, row in per[sid]:
            yield meter, unit, ts, row


def _current_versions(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
                      end: datetime, meter_ids: Sequence[str] | None) -> list[ValueVersion]:
    methods = dict(db.execute("SELECT id, name FROM methods").fetchall())
    stamps: dict[float, datetime] = {}
    out: list[ValueVersion] = []
    for meter, unit, ts, (version, value, quality, method_id, reason, actor, note,
                          created) in _current_rows(db, quantity, kind, start, end, meter_ids):
        at = stamps.get(ts)
        if at is None:
            at = stamps[ts] = datetime.fromtimestamp(ts, UTC)
        out.append(version_row(
            meter, quantity, kind.value, unit, at, version, value, QUALITY_OF_CODE[quality],
            methods[method_id], reason, actor, note,
            None if created is None else datetime.fromtimestamp(created, UTC)))
    return out


def _current_arrays(db: sqlite3.Connection, quantity: str, kind: ReadKind, start: datetime,
                    end: datetime, meter_ids: Sequence[str] | None) -> CurrentArrays:
    """Straight from the rows into one float matrix: every column here is a number.
    Named meters are asked for by their series ids, found once: SQLite would otherwise
    bind and search the meter list again for each table."""
    where, args = _series_filter(quantity, kind, meter_ids)
    found = db.execute(f"SELECT id, meter_id, unit FROM series WHERE {where}", args).fetchall()
    if not found:
        return empty_arrays()
    meter_of = {sid: meter for sid, meter, _ in found}
    unit_of = {sid: unit for sid, _, unit in found}
    span = (start.timestamp(), end.timestamp())
    if meter_ids is None:
        chosen, ids = f"series_id IN (SELECT id FROM series WHERE {where})", args
    else:
        ids = list(meter_of)
        chosen = f"series_id IN ({','.join('?' * len(ids))})"
    chosen += " AND ts >= ? AND ts <= ?"
    # Four columns, quality and method packed in one: the sqlite3 module's cost is per
    # column fetched, and this is most of a bulk read's time.
    packed = np.array(db.execute(
        f"SELECT series_id, ts, value, quality * {_PACK} + method_id FROM readings "
        f"WHERE {chosen} ORDER BY series_id, ts", (*ids, *span)).fetchall(),
        dtype=np.float64).reshape(-1, 4)
    raw = np.zeros((len(packed), 7))
    raw[:, :3] = packed[:, :3]
    raw[:, 3], raw[:, 4] = np.divmod(packed[:, 3].astype(np.int64), _PACK)
    later = db.execute(
        "SELECT series_id, ts, coalesce(value, 0), quality, method_id, version, "
        f"actor LIKE '{AUTOMATIC}%' FROM reading_versions WHERE {chosen}",
        (*ids, *span)).fetchall()
    names: dict[int, str] = dict(db.execute("SELECT id, name FROM methods"))
    methods = [""] * (max(names) + 1)
    for i, n in names.items():
        methods[i] = n
    columns = np.vstack([raw, np.array(later, dtype=np.float64).reshape(-1, 7)])
    return from_columns(meter_of, columns, methods, unit_of)


_PACK = 1 << 20
"""Method ids stay below this (one per estimation method and import)."""
