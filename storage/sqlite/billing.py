"""Bills, tariff changes and prepaid accounts in SQLite: the same logical schema as
PostgreSQL's 0006, and the same rules (storage/billing.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

from model import Bill, BillStatus, PrepaidAccount, PrepaidEvent, TariffChange
from storage.billing import (
    BALANCE_KINDS,
    BillWrite,
    by_cycle,
    document,
    holds_from,
    holds_json,
    plan_bills,
)
from storage.sqlite.connection import SqliteConnection
from storage.versions import Refused

SCHEMA = (
    "0006_billing",
    """
    CREATE TABLE tariff_changes (
        service_point_id TEXT NOT NULL REFERENCES service_points (id),
        effective TEXT NOT NULL, tariff TEXT NOT NULL, recorded_at REAL NOT NULL,
        PRIMARY KEY (service_point_id, effective)
    );
    CREATE TABLE bills (
        id INTEGER PRIMARY KEY, service_point_id TEXT NOT NULL, cycle TEXT NOT NULL,
        version INTEGER NOT NULL CHECK (version > 0), segment TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL CHECK (status IN ('held', 'released', 'superseded')),
        start_ts REAL NOT NULL, end_ts REAL NOT NULL, kwh REAL, amount REAL,
        currency TEXT NOT NULL DEFAULT '', quality TEXT NOT NULL,
        holds TEXT NOT NULL DEFAULT '[]', determinants TEXT NOT NULL, digest TEXT NOT NULL,
        correction TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL,
        released_by TEXT NOT NULL DEFAULT '', released_at REAL, note TEXT NOT NULL DEFAULT '',
        UNIQUE (service_point_id, cycle, version)
    );
    CREATE INDEX bills_cycle ON bills (cycle, status);
    CREATE TABLE prepaid_accounts (
        account TEXT PRIMARY KEY, service_point_id TEXT NOT NULL, opened REAL NOT NULL,
        charged_to REAL NOT NULL, topped_up REAL NOT NULL DEFAULT 0,
        charged REAL NOT NULL DEFAULT 0,
        relay TEXT NOT NULL DEFAULT 'closed' CHECK (relay IN ('closed', 'open')),
        below_since REAL, alert_state TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE prepaid_events (
        id INTEGER PRIMARY KEY, account TEXT NOT NULL REFERENCES prepaid_accounts (account),
        ts REAL NOT NULL, kind TEXT NOT NULL, amount REAL NOT NULL DEFAULT 0,
        balance REAL NOT NULL DEFAULT 0, detail TEXT NOT NULL DEFAULT '{}',
        reference TEXT NOT NULL, published INTEGER NOT NULL DEFAULT 0,
        UNIQUE (account, kind, reference)
    );
    CREATE INDEX prepaid_events_unpublished ON prepaid_events (id) WHERE NOT published
    """,
)

_BILL_COLUMNS = ("id, service_point_id, cycle, segment, start_ts, end_ts, kwh, amount, "
                 "currency, quality, holds, determinants, status, version, correction, "
                 "created_at, released_by, released_at, note")
_LATEST = ("SELECT {cols} FROM bills b WHERE version = (SELECT max(version) FROM bills "
           "WHERE service_point_id = b.service_point_id AND cycle = b.cycle)")
_ACCOUNT_COLUMNS = ("account, service_point_id, opened, charged_to, topped_up, charged, relay, "
                    "below_since, alert_state")


def _ts(x: float | None) -> datetime | None:
    return datetime.fromtimestamp(x, UTC) if x is not None else None


def _bill(r: Sequence[Any]) -> Bill:
    return Bill(r[1], r[2], r[3], datetime.fromtimestamp(r[4], UTC),
                datetime.fromtimestamp(r[5], UTC), r[6], r[7], r[8], r[9], holds_from(r[10]),
                json.loads(r[11]), BillStatus(r[12]), r[13], r[0], r[14], _ts(r[15]), r[16],
                _ts(r[17]), r[18])


def _account(r: Sequence[Any]) -> PrepaidAccount:
    return PrepaidAccount(r[0], r[1], datetime.fromtimestamp(r[2], UTC),
                          datetime.fromtimestamp(r[3], UTC), r[4], r[5], r[6], _ts(r[7]),
                          json.loads(r[8]))


def _latest(db: sqlite3.Connection, cycle: str, ids: Sequence[str]) -> dict[str, Bill]:
    wanted = set(ids)
    rows = db.execute(_LATEST.format(cols=_BILL_COLUMNS) + " AND cycle = ?", (cycle,))
    return {r[1]: _bill(r) for r in rows if r[1] in wanted}


class SqliteBilling(SqliteConnection):
    """Mixed into SqliteStore, which supplies the connection helpers."""

    async def tariff_changes(self, service_point_id: str | None = None) -> list[TariffChange]:
        def read(db: sqlite3.Connection) -> list[TariffChange]:
            rows = db.execute("SELECT service_point_id, tariff, effective FROM tariff_changes "
                              "WHERE ? IS NULL OR service_point_id = ? "
                              "ORDER BY service_point_id, effective",
                              (service_point_id, service_point_id)).fetchall()
            return [TariffChange(sp, t, date.fromisoformat(d)) for sp, t, d in rows]

        return await self._query(read)

    async def record_tariff_change(self, change: TariffChange) -> None:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> None:
            if db.execute("SELECT 1 FROM service_points WHERE id = ?",
                          (change.service_point_id,)).fetchone() is None:
                raise Refused(f"service point {change.service_point_id!r} is unknown")
            db.execute("INSERT INTO tariff_changes VALUES (?,?,?,?) ON CONFLICT "
                       "(service_point_id, effective) DO UPDATE SET tariff = excluded.tariff",
                       (change.service_point_id, change.effective.isoformat(), change.tariff,
                        now))

        await self._run(self._tx(write))

    async def latest_bills(self, cycle: str, service_point_ids: Sequence[str]) -> dict[str, Bill]:
        return await self._query(lambda db: _latest(db, cycle, service_point_ids))

    async def write_bills(self, bills: Sequence[Bill], correction: str = "") -> BillWrite:
        now = datetime.now(UTC)

        def write(db: sqlite3.Connection) -> BillWrite:
            latest = {(c, sp): b for c, ids in by_cycle(bills).items()
                      for sp, b in _latest(db, c, ids).items()}
            out, planned = plan_bills(latest, bills, correction)
            for was, made in planned:
                if was is not None:
                    db.execute("UPDATE bills SET status = 'superseded' WHERE id = ?", (was.id,))
                released = made.status is BillStatus.RELEASED
                cur = db.execute(
                    "INSERT INTO bills (service_point_id, cycle, version, segment, status, "
                    "start_ts, end_ts, kwh, amount, currency, quality, holds, determinants, "
                    "digest, correction, created_at, released_by, released_at, note) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (made.service_point_id, made.cycle, made.version, made.segment,
                     str(made.status), made.start.timestamp(), made.end.timestamp(),
                     made.kwh, made.amount, made.currency, made.quality,
                     holds_json(made.holds), document(made.determinants), made.digest,
                     made.correction, now.timestamp(), made.released_by,
                     now.timestamp() if released else None, made.note))
                out.written.append(replace(made, id=int(cur.lastrowid or 0), created_at=now,
                                           released_at=now if released else None))
            return out

        return await self._run(self._tx(write))

    async def bills(self, cycle: str | None = None, service_point_id: str | None = None,
                    status: BillStatus | None = None, all_versions: bool = False) -> list[Bill]:
        def read(db: sqlite3.Connection) -> list[Bill]:
            base = (f"SELECT {_BILL_COLUMNS} FROM bills b WHERE 1 = 1" if all_versions
                    else _LATEST.format(cols=_BILL_COLUMNS))
            rows = db.execute(
                f"{base} AND (? IS NULL OR cycle = ?) AND (? IS NULL OR service_point_id = ?)"
                " AND (? IS NULL OR status = ?) ORDER BY service_point_id, cycle, version",
                (cycle, cycle, service_point_id, service_point_id,
                 str(status) if status else None, str(status) if status else None)).fetchall()
            return [_bill(r) for r in rows]

        return await self._query(read)

    async def bill(self, bill_id: int) -> Bill | None:
        def read(db: sqlite3.Connection) -> Bill | None:
            row = db.execute(f"SELECT {_BILL_COLUMNS} FROM bills WHERE id = ?",
                             (bill_id,)).fetchone()
            return _bill(row) if row else None

        return await self._query(read)

    async def release_bill(self, bill_id: int, by: str, note: str) -> Bill:
        now = datetime.now(UTC).timestamp()

        def write(db: sqlite3.Connection) -> Bill:
            row = db.execute(f"SELECT {_BILL_COLUMNS} FROM bills WHERE id = ?",
                             (bill_id,)).fetchone()
            if row is None:
                raise Refused(f"no bill {bill_id}")
            b = _bill(row)
            if b.status is not BillStatus.HELD:
                raise Refused(f"bill {bill_id} is {b.status}, not held; only a held bill "
                              "is released")
            db.execute("UPDATE bills SET status = 'released', released_by = ?, "
                       "released_at = ?, note = ? WHERE id = ?", (by, now, note, bill_id))
            return _bill(db.execute(f"SELECT {_BILL_COLUMNS} FROM bills WHERE id = ?",
                                    (bill_id,)).fetchone())

        return await self._run(self._tx(write))

    async def open_prepaid(self, account: str, service_point_id: str,
                           opened: datetime) -> PrepaidAccount:
        def write(db: sqlite3.Connection) -> PrepaidAccount:
            db.execute("INSERT OR IGNORE INTO prepaid_accounts (account, service_point_id, "
                       "opened, charged_to) VALUES (?,?,?,?)",
                       (account, service_point_id, opened.timestamp(), opened.timestamp()))
            return _account(db.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM prepaid_accounts "
                                       "WHERE account = ?", (account,)).fetchone())

        return await self._run(self._tx(write))

    async def prepaid_accounts(self, account: str | None = None) -> list[PrepaidAccount]:
        def read(db: sqlite3.Connection) -> list[PrepaidAccount]:
            return [_account(r) for r in db.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM prepaid_accounts WHERE ? IS NULL OR "
                "account = ? ORDER BY account", (account, account))]

        return await self._query(read)

    async def post_prepaid(self, account: PrepaidAccount,
                           events: Sequence[PrepaidEvent]) -> list[PrepaidEvent]:
        def write(db: sqlite3.Connection) -> list[PrepaidEvent]:
            row = db.execute("SELECT topped_up, charged FROM prepaid_accounts WHERE "
                             "account = ?", (account.account,)).fetchone()
            if row is None:
                raise Refused(f"no prepaid account {account.account!r}")
            topped_up, charged = row
            written = []
            for e in events:
                moved = BALANCE_KINDS.get(e.kind, 0.0) * e.amount
                after = topped_up - charged + moved
                cur = db.execute(
                    "INSERT INTO prepaid_events (account, ts, kind, amount, balance, detail, "
                    "reference) VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
                    (e.account, e.ts.timestamp(), e.kind, e.amount, round(after, 4),
                     json.dumps(e.detail, sort_keys=True), e.reference or e.ts.isoformat()))
                if not cur.rowcount:
                    continue
                if e.kind == "topup":
                    topped_up += e.amount
                elif e.kind == "charge":
                    charged += e.amount
                written.append(replace(e, id=int(cur.lastrowid or 0), balance=round(after, 4)))
            db.execute("UPDATE prepaid_accounts SET topped_up = ?, charged = ?, charged_to = ?, "
                       "relay = ?, below_since = ?, alert_state = ? WHERE account = ?",
                       (topped_up, charged, account.charged_to.timestamp(), account.relay,
                        account.below_since.timestamp() if account.below_since else None,
                        json.dumps(account.alert_state, sort_keys=True), account.account))
            return written

        return await self._run(self._tx(write))

    async def prepaid_events(self, account: str | None = None,
                             unpublished_only: bool = False) -> list[PrepaidEvent]:
        def read(db: sqlite3.Connection) -> list[PrepaidEvent]:
            rows = db.execute(
                "SELECT account, ts, kind, amount, balance, detail, reference, id, published "
                "FROM prepaid_events WHERE (? IS NULL OR account = ?) AND (? = 0 OR NOT "
                "published) ORDER BY id", (account, account, int(unpublished_only))).fetchall()
            return [PrepaidEvent(a, datetime.fromtimestamp(ts, UTC), k, amt, bal,
                                 json.loads(d), ref, i, bool(p))
                    for a, ts, k, amt, bal, d, ref, i, p in rows]

        return await self._query(read)

    async def mark_published(self, event_ids: Sequence[int]) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.executemany("UPDATE prepaid_events SET published = 1 WHERE id = ?",
                           [(i,) for i in event_ids])

        await self._run(self._tx(write))
