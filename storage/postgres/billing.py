"""Bills, tariff changes and prepaid accounts in PostgreSQL (migration 0006), with the
rules shared with SQLite (storage/billing.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from model import Bill, BillStatus, PrepaidAccount, PrepaidEvent, TariffChange
from storage.billing import BALANCE_KINDS, BillWrite, by_cycle, holds_from, plan_bills
from storage.postgres.connection import PostgresConnection
from storage.versions import Refused

BILLS_LOCK = 0x62696C6C  # 'bill': one writer of bills at a time
PREPAID_LOCK = 0x70726570  # 'prep'

_BILL_COLUMNS = ("id, service_point_id, cycle, segment, start_ts, end_ts, kwh, amount, "
                 "currency, quality, holds, determinants, status, version, correction, "
                 "created_at, released_by, released_at, note")
_ACCOUNT_COLUMNS = ("account, service_point_id, opened, charged_to, topped_up, charged, relay, "
                    "below_since, alert_state")
_LATEST = (f"SELECT DISTINCT ON (service_point_id, cycle) {_BILL_COLUMNS} FROM bills "
           "WHERE cycle = %s AND service_point_id = ANY(%s) "
           "ORDER BY service_point_id, cycle, version DESC")


def _bill(r: Sequence[Any]) -> Bill:
    return Bill(r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], holds_from(r[10]),
                r[11], BillStatus(r[12]), r[13], r[0], r[14], r[15], r[16], r[17], r[18])


def _account(r: Sequence[Any]) -> PrepaidAccount:
    return PrepaidAccount(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], dict(r[8]))


class PostgresBilling(PostgresConnection):
    """Mixed into PostgresStore."""

    async def tariff_changes(self, service_point_id: str | None = None) -> list[TariffChange]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT service_point_id, tariff, effective FROM tariff_changes "
                "WHERE %s::text IS NULL OR service_point_id = %s "
                "ORDER BY service_point_id, effective", (service_point_id, service_point_id))
            return [TariffChange(*r) for r in await cur.fetchall()]

    async def record_tariff_change(self, change: TariffChange) -> None:
        async with self._conn() as conn, conn.transaction():
            cur = await conn.execute("SELECT 1 FROM service_points WHERE id = %s",
                                     (change.service_point_id,))
            if await cur.fetchone() is None:
                raise Refused(f"service point {change.service_point_id!r} is unknown")
            await conn.execute(
                "INSERT INTO tariff_changes (service_point_id, effective, tariff) "
                "VALUES (%s, %s, %s) ON CONFLICT (service_point_id, effective) "
                "DO UPDATE SET tariff = EXCLUDED.tariff",
                (change.service_point_id, change.effective, change.tariff))

    async def latest_bills(self, cycle: str, service_point_ids: Sequence[str]) -> dict[str, Bill]:
        async with self._read() as conn:
            cur = await conn.execute(_LATEST, (cycle, list(service_point_ids)))
            return {r[1]: _bill(r) for r in await cur.fetchall()}

    async def write_bills(self, bills: Sequence[Bill], correction: str = "") -> BillWrite:
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_xact_lock(%s)", (BILLS_LOCK,))
            now = (await (await conn.execute("SELECT now()")).fetchone() or [None])[0]
            latest: dict[tuple[str, str], Bill] = {}
            for cycle, ids in sorted(by_cycle(bills).items()):
                await cur.execute(_LATEST, (cycle, ids))
                latest.update({(cycle, r[1]): _bill(r) for r in await cur.fetchall()})
            out, planned = plan_bills(latest, bills, correction)
            superseded: list[tuple[int]] = []
            rows: list[tuple[Any, ...]] = []
            for was, made in planned:
                if was is not None:
                    superseded.append((was.id,))
                released = made.status is BillStatus.RELEASED
                made = replace(made, created_at=now, released_at=now if released else None)
                out.written.append(made)
                rows.append((made.service_point_id, made.cycle, made.version, made.segment,
                             str(made.status), made.start, made.end, made.kwh, made.amount,
                             made.currency, made.quality,
                             Jsonb([[h.code, h.detail] for h in made.holds]),
                             Jsonb(made.determinants), made.digest, made.correction, now,
                             made.released_by, made.released_at, made.note))
            if superseded:
                await cur.executemany("UPDATE bills SET status = 'superseded' WHERE id = %s",
                                      superseded)
            if rows:
                async with cur.copy(
                    "COPY bills (service_point_id, cycle, version, segment, status, start_ts, "
                    "end_ts, kwh, amount, currency, quality, holds, determinants, digest, "
                    "correction, created_at, released_by, released_at, note) FROM STDIN"
                ) as copy:
                    for row in rows:
                        await copy.write_row(row)
                await cur.execute(
                    "SELECT service_point_id, cycle, id FROM bills WHERE created_at = %s",
                    (now,))
                made_ids = {(sp, c): i for sp, c, i in await cur.fetchall()}
                out.written = [replace(b, id=made_ids.get((b.service_point_id, b.cycle), 0))
                               for b in out.written]
        return out

    async def bills(self, cycle: str | None = None, service_point_id: str | None = None,
                    status: BillStatus | None = None, all_versions: bool = False) -> list[Bill]:
        latest = "" if all_versions else (
            "AND version = (SELECT max(version) FROM bills l WHERE l.service_point_id = "
            "b.service_point_id AND l.cycle = b.cycle)")
        async with self._read() as conn:
            cur = await conn.execute(
                f"SELECT {_BILL_COLUMNS} FROM bills b WHERE (%(c)s::text IS NULL OR cycle = "
                "%(c)s) AND (%(sp)s::text IS NULL OR service_point_id = %(sp)s) AND "
                f"(%(st)s::text IS NULL OR status = %(st)s) {latest} "
                "ORDER BY service_point_id, cycle, version",
                {"c": cycle, "sp": service_point_id, "st": str(status) if status else None})
            return [_bill(r) for r in await cur.fetchall()]

    async def bill(self, bill_id: int) -> Bill | None:
        async with self._read() as conn:
            cur = await conn.execute(f"SELECT {_BILL_COLUMNS} FROM bills WHERE id = %s",
                                     (bill_id,))
            row = await cur.fetchone()
            return _bill(row) if row else None

    async def release_bill(self, bill_id: int, by: str, note: str) -> Bill:
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (BILLS_LOCK,))
            cur = await conn.execute(f"SELECT {_BILL_COLUMNS} FROM bills WHERE id = %s",
                                     (bill_id,))
            row = await cur.fetchone()
            if row is None:
                raise Refused(f"no bill {bill_id}")
            if _bill(row).status is not BillStatus.HELD:
                raise Refused(f"bill {bill_id} is {row[12]}, not held; only a held bill "
                              "is released")
            cur = await conn.execute(
                "UPDATE bills SET status = 'released', released_by = %s, released_at = now(), "
                f"note = %s WHERE id = %s RETURNING {_BILL_COLUMNS}", (by, note, bill_id))
            done = await cur.fetchone()
            assert done is not None
            return _bill(done)

    async def open_prepaid(self, account: str, service_point_id: str,
                           opened: datetime) -> PrepaidAccount:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO prepaid_accounts (account, service_point_id, opened, charged_to) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (account) DO NOTHING",
                (account, service_point_id, opened, opened))
            cur = await conn.execute(f"SELECT {_ACCOUNT_COLUMNS} FROM prepaid_accounts "
                                     "WHERE account = %s", (account,))
            row = await cur.fetchone()
            assert row is not None
            return _account(row)

    async def prepaid_accounts(self, account: str | None = None) -> list[PrepaidAccount]:
        async with self._read() as conn:
            cur = await conn.execute(
                f"SELECT {_ACCOUNT_COLUMNS} FROM prepaid_accounts WHERE %s::text IS NULL OR "
                "account = %s ORDER BY account", (account, account))
            return [_account(r) for r in await cur.fetchall()]

    async def post_prepaid(self, account: PrepaidAccount,
                           events: Sequence[PrepaidEvent]) -> list[PrepaidEvent]:
        async with self._conn() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT topped_up, charged FROM prepaid_accounts WHERE "
                              "account = %s FOR UPDATE", (account.account,))
            row = await cur.fetchone()
            if row is None:
                raise Refused(f"no prepaid account {account.account!r}")
            topped_up, charged = row
            written = []
            for e in events:
                after = topped_up - charged + BALANCE_KINDS.get(e.kind, 0.0) * e.amount
                await cur.execute(
                    "INSERT INTO prepaid_events (account, ts, kind, amount, balance, detail, "
                    "reference) VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING "
                    "RETURNING id",
                    (e.account, e.ts, e.kind, e.amount, round(after, 4), Jsonb(e.detail),
                     e.reference or e.ts.isoformat()))
                made = await cur.fetchone()
                if made is None:
                    continue
                if e.kind == "topup":
                    topped_up += e.amount
                elif e.kind == "charge":
                    charged += e.amount
                written.append(replace(e, id=made[0], balance=round(after, 4)))
            await cur.execute(
                "UPDATE prepaid_accounts SET topped_up = %s, charged = %s, charged_to = %s, "
                "relay = %s, below_since = %s, alert_state = %s WHERE account = %s",
                (topped_up, charged, account.charged_to, account.relay, account.below_since,
                 Jsonb(account.alert_state), account.account))
            return written

    async def prepaid_events(self, account: str | None = None,
                             unpublished_only: bool = False) -> list[PrepaidEvent]:
        async with self._read() as conn:
            cur = await conn.execute(
                "SELECT account, ts, kind, amount, balance, detail, reference, id, published "
                "FROM prepaid_events WHERE (%s::text IS NULL OR account = %s) AND "
                "(NOT %s OR NOT published) ORDER BY id", (account, account, unpublished_only))
            return [PrepaidEvent(*r) for r in await cur.fetchall()]

    async def mark_published(self, event_ids: Sequence[int]) -> None:
        async with self._conn() as conn:
            await conn.execute("UPDATE prepaid_events SET published = true WHERE id = ANY(%s)",
                               (list(event_ids),))


