"""The embedded store: the demo's database, a gateway's local disk, the Postgres spill
file. One class made of its parts, each a room of its own."""

from __future__ import annotations

from storage.sqlite.billing import SqliteBilling
from storage.sqlite.connection import path_from_url
from storage.sqlite.points import SqlitePoints
from storage.sqlite.readings import SqliteReadings
from storage.sqlite.records import SqliteRecords
from storage.sqlite.schema import apply_migrations
from storage.sqlite.tokens import SqliteTokens
from storage.sqlite.versions import SqliteVersions


class SqliteStore(SqliteReadings, SqliteRecords, SqliteVersions, SqlitePoints, SqliteBilling,
                  SqliteTokens):
    """With `outbox=True` (a gateway), every new or changed row is also queued in the
    outbox table in the same transaction, so a stored read is never left unsent."""

    @classmethod
    def from_url(cls, url: str) -> SqliteStore:
        return cls(path_from_url(url))

    async def migrate(self) -> list[str]:
        return await self._run(apply_migrations)
