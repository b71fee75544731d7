"""The PostgreSQL store's ground floor: its connection pool, and the two ways in. A write
takes `_conn()` and its own transaction; a read takes `_read()`, one snapshot for all
its statements. Every part of the store stands on this class."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from storage.base import (
    StorageError,
    StorageUnavailable,
)
from storage.postgres import migrate
from storage.postgres.series_ids import SeriesIds


class PostgresConnection:
    def __init__(
        self,
        url: str,
        *,
        password: str | None = None,
        timezone: str = "UTC",
        attempts_retention_days: int = 0,
        pool_size: int = 4,
        timeout_s: float = 5.0,
        parallel_ingest: int = 2,
    ) -> None:
        self.url = url
        self.parallel_ingest = max(1, min(parallel_ingest, pool_size))
        self.timezone = timezone
        self.attempts_retention_days = attempts_retention_days
        self.timescale = False
        kwargs: dict[str, Any] = {"connect_timeout": max(1, int(timeout_s))}
        if password is not None:
            kwargs["password"] = password
        self._pool = AsyncConnectionPool(
            url,
            kwargs=kwargs,
            min_size=1,
            max_size=pool_size,
            open=False,
            timeout=timeout_s,
            reconnect_timeout=0,  # keep trying: the database coming back is normal
            check=AsyncConnectionPool.check_connection,
        )
        self._opened = False
        self._ids = SeriesIds()
        self.direct_batches = 0
        self.upsert_batches = 0

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        if not self._opened:
            await self._pool.open(wait=False)
            self._opened = True
        try:
            async with self._pool.connection() as conn:
                yield conn
        except PoolTimeout as exc:
            raise StorageUnavailable(f"postgres unreachable: {exc}") from exc
        except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                psycopg.errors.TransactionRollback) as exc:
            # A deadlock or a serialization failure: the connection is fine, the write
            # was rolled back whole, and trying it again is what PostgreSQL asks for.
            raise StorageUnavailable(f"postgres rolled the transaction back "
                                     f"({exc.sqlstate}, safe to retry): {exc}") from exc
        except psycopg.OperationalError as exc:
            raise StorageUnavailable(f"postgres connection lost: {exc}") from exc
        except psycopg.Error as exc:
            raise StorageError(f"postgres: {exc}") from exc
        except (ValueError, OverflowError, TypeError) as exc:
            # Rows the driver cannot send (a NUL in text, a lone surrogate): retrying the
            # same rows cannot help, so this is a refusal, not an outage.
            raise StorageError(f"postgres refused the rows: {exc}") from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A connection in a read-only REPEATABLE READ transaction: every statement of one
        read sees the same snapshot, so a series or a version committed between two of
        them cannot be in one result and missing from the next. Every read goes through
        here, so a read that grows a second statement is safe without a second thought."""
        async with self._conn() as conn, conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield conn

    async def migrate(self) -> list[str]:
        async with self._conn() as conn:
            applied, self.timescale = await migrate.apply(
                conn, timezone=self.timezone, retention_days=self.attempts_retention_days
            )
        return applied

    async def close(self) -> None:
        if self._opened:
            await self._pool.close()
            self._opened = False

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute("SELECT 1")
