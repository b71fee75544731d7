"""Readings as long-format CSV: a row per value, with everything a billing system needs
to trust it (service point, meter, quantity, interval end, value, unit, quality, method,
reason, version)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import datetime

from model import ValueVersion

READING_COLUMNS = ("service_point", "meter", "quantity", "interval_end", "value", "unit",
                   "quality", "method", "reason", "version")


def csv_line(values: Sequence[object]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(values)
    return out.getvalue()


def reading_row(point: str, v: ValueVersion) -> tuple[object, ...]:
    return (point, v.meter_id, v.quantity, v.ts.isoformat(), "" if v.value is None else v.value,
            v.unit, str(v.quality), v.method, v.reason, v.version)


async def reading_lines(rows: AsyncIterator[tuple[str, ValueVersion]]) -> AsyncIterator[str]:
    yield csv_line(READING_COLUMNS)
    async for point, v in rows:
        yield csv_line(reading_row(point, v))


def table_lines(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterable[str]:
    yield csv_line(columns)
    for row in rows:
        yield csv_line([x.isoformat() if isinstance(x, datetime) else x for x in row])
