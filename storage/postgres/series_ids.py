"""Series, source and method ids by name, cached for the life of the store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import psycopg
from psycopg.rows import TupleRow

from model import (
    Reading,
)
from storage.base import (
    QUALITY_CODES,
    UnitMismatch,
)


class SeriesIds:
    """Series, source and method ids by name, cached for the life of the store.

    A reading row holds only these integers; the names are resolved once, in their own
    short transaction, so two head-ends creating the same series at once both succeed.
    """

    def __init__(self) -> None:
        self.series: dict[tuple[str, str, str], tuple[int, str]] = {}
        self.sources: dict[str, int] = {"": 0}
        self.methods: dict[str, int] = {"": 0}

    async def rows(
        self,
        connect: Callable[[], AbstractAsyncContextManager[psycopg.AsyncConnection[TupleRow]]],
        readings: Sequence[Reading],
    ) -> list[tuple[Any, ...]]:
        """The readings as table rows; names not seen before are resolved first.

        This runs once per reading on the ingest's hot path, so it is a plain loop over
        dict lookups (a ReadKind or Quality is a str and hashes like one), and it takes a
        connection from the pool only when a name is new.
        """
        try:
            return self._rows(readings)
        except KeyError:
            async with connect() as conn:
                await self._resolve(conn, readings)
            return self._rows(readings)

    def _rows(self, readings: Sequence[Reading]) -> list[tuple[Any, ...]]:
        series, sources, methods, codes = self.series, self.sources, self.methods, QUALITY_CODES
        rows: list[tuple[Any, ...]] = []
        wrong = []
        for r in readings:
            series_id, unit = series[(r.meter_id, r.quantity, r.kind)]
            if unit != r.unit:
                wrong.append(f"{r.meter_id} {r.quantity} ({r.kind}) is in {unit}, "
                             f"got {r.unit}")
            rows.append((series_id, r.ts, r.value, codes[r.quality], methods[r.method],
                         sources[r.source]))
        if wrong:
            raise UnitMismatch("readings refused, a series keeps one unit: "
                               + "; ".join(sorted(set(wrong))[:5]))
        return rows

    async def _resolve(self, conn: psycopg.AsyncConnection[TupleRow],
                       readings: Sequence[Reading]) -> None:
        series = {(r.meter_id, r.quantity, str(r.kind)): r.unit for r in readings}
        # One order for every writer: two head-end workers inserting the same new series
        # in different orders each waited on a key the other held, and one was killed
        # as a deadlock (bench.district with two workers).
        missing = sorted((*k, unit) for k, unit in series.items() if k not in self.series)
        sources = sorted({r.source for r in readings} - self.sources.keys())
        methods = sorted({r.method for r in readings} - self.methods.keys())
        if not (missing or sources or methods):
            return
        async with conn.transaction():
            if missing:
                cols = [list(c) for c in zip(*missing, strict=True)]
                await conn.execute(
                    "INSERT INTO series (meter_id, quantity, kind, unit) SELECT * FROM "
                    "unnest(%s::text[], %s::text[], %s::text[], %s::text[]) "
                    "ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING", cols)
                cur = await conn.execute(
                    "SELECT s.id, s.meter_id, s.quantity, s.kind, s.unit FROM series s "
                    "JOIN unnest(%s::text[], %s::text[], %s::text[]) AS k(m, q, kd) "
                    "ON s.meter_id = k.m AND s.quantity = k.q AND s.kind = k.kd", cols[:3])
                for sid, meter, quantity, kind, unit in await cur.fetchall():
                    self.series[(meter, quantity, kind)] = (sid, unit)
            for table, names, cache in (("sources", sources, self.sources),
                                        ("methods", methods, self.methods)):
                if not names:
                    continue
                await conn.execute(f"INSERT INTO {table} (name) SELECT unnest(%s::text[]) "
                                   "ON CONFLICT DO NOTHING", (names,))
                cur = await conn.execute(f"SELECT id, name FROM {table} WHERE name = ANY(%s)",
                                         (names,))
                cache.update({name: int(i) for i, name in await cur.fetchall()})
