"""A gateway's outbox: every new or changed row is queued in the same transaction that
stores it, so a stored read is never left unsent, and the oldest rows give way past the
configured bound."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from storage.sqlite.connection import SqliteConnection


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    kind: str
    item: dict[str, Any]


class SqliteOutbox(SqliteConnection):
    def _queue(self, db: sqlite3.Connection, kind: str, items: list[dict[str, Any]]) -> None:
        if self.outbox and items:
            queued = self._outbox_count(db)
            now = datetime.now(UTC).timestamp()
            db.executemany("INSERT INTO outbox (kind, item, queued_at) VALUES (?, ?, ?)",
                           [(kind, json.dumps(i), now) for i in items])
            self._outbox_rows = queued + len(items)
            self._bound_outbox(db)

    def _outbox_count(self, db: sqlite3.Connection) -> int:
        if self._outbox_rows is None:
            self._outbox_rows = int(db.execute("SELECT count(*) FROM outbox").fetchone()[0])
        return self._outbox_rows

    def _bound_outbox(self, db: sqlite3.Connection) -> None:
        """Past the configured bound, the oldest queued rows give way (and are counted):
        a gateway's disk is finite, and the newest register reads matter most."""
        if not self.outbox_max_rows:
            return
        size = self._outbox_count(db)
        excess = size - self.outbox_max_rows
        if excess > 0:
            db.execute("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id "
                       "LIMIT ?)", (excess,))
            self.outbox_evicted += excess
            self._outbox_rows = size - excess

    async def outbox_peek(self, limit: int) -> list[OutboxRow]:
        def read(db: sqlite3.Connection) -> list[OutboxRow]:
            rows = db.execute("SELECT id, kind, item FROM outbox ORDER BY id LIMIT ?",
                              (limit,)).fetchall()
            return [OutboxRow(int(r[0]), r[1], json.loads(r[2])) for r in rows]

        return await self._query(read)

    async def outbox_delete(self, ids: Sequence[int]) -> None:
        def delete(db: sqlite3.Connection) -> None:
            queued = self._outbox_count(db)
            cur = db.executemany("DELETE FROM outbox WHERE id = ?", [(i,) for i in ids])
            self._outbox_rows = queued - cur.rowcount

        await self._run(self._tx(delete))

    async def outbox_size(self) -> int:
        known = self._outbox_rows
        if known is not None:
            return known
        return await self._query(
            lambda db: int(db.execute("SELECT count(*) FROM outbox").fetchone()[0]))

    async def outbox_oldest_age(self, now: datetime | None = None) -> float:
        """Seconds the oldest queued row has waited: how far behind the uplink is."""
        oldest = await self._query(
            lambda db: (db.execute("SELECT queued_at FROM outbox ORDER BY id LIMIT 1").fetchone()
                        or (None,))[0])
        if oldest is None:
            return 0.0
        return max(0.0, (now or datetime.now(UTC)).timestamp() - float(oldest))
