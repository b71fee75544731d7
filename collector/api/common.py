"""What every route module shares: the store and settings of the running app, time and
OBIS parameters checked the same way everywhere, and JSON-or-CSV answers."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import AfterValidator, BeforeValidator

from collector.api.problems import Problem
from collector.config.settings import Settings
from collector.exports.csv_rows import table_lines
from model import ValueVersion

OBIS_PATTERN = r"^[0-9]{1,3}-[0-9]{1,3}:[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}$"
OBIS = re.compile(OBIS_PATTERN)
CSV = "text/csv"
def _obis_code(code: str) -> str:
    if not OBIS.fullmatch(code):
        raise ValueError(f"{code[:40]!r} is not an OBIS code like 1-0:1.8.0")
    return code


Quantity = Annotated[str, Query(description="An OBIS code.",
                                json_schema_extra={"pattern": OBIS_PATTERN}),
                     AfterValidator(_obis_code)]
"""A quantity parameter: its pattern is in the OpenAPI document, so a client (or a
fuzzer) knows before it asks what a valid code looks like."""
def _iso(kind: str, pattern: re.Pattern[str]) -> Any:
    def check(value: Any) -> Any:
        if isinstance(value, str) and not pattern.match(value):
            raise ValueError(f"{value[:40]!r} is not an ISO 8601 {kind}")
        return value

    return BeforeValidator(check)


IsoDate = Annotated[date, _iso("date (YYYY-MM-DD)", re.compile(r"^\d{4}-\d{2}-\d{2}$"))]
IsoTime = Annotated[datetime, _iso("date and time", re.compile(r"^\d{4}-\d{2}-\d{2}[T ]"))]
"""Dates and times as the OpenAPI document says they are: pydantic would also take "0"
as 1970-01-01 (a count of seconds), which no caller means."""

CSV_TOO: dict[int | str, dict[str, Any]] = {
    200: {"content": {CSV: {"schema": {"type": "string"}}},
          "description": "JSON, or CSV with Accept: text/csv"}}
"""The responses of a route that answers in CSV when asked (see `table`)."""


def store_of(request: Request) -> Any:
    return request.app.state.store


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def invalid(detail: str) -> Problem:
    return Problem(422, "A parameter is not valid", detail)


YEARS = range(1900, 2201)
"""The years a query may name: before them no meter read, and past year 1 or 9999 a
local midnight cannot even be turned into UTC."""


def aware(ts: datetime, name: str) -> datetime:
    """Times in queries must say their offset: a bare local time is ambiguous on DST
    days and a frequent source of off-by-hours reads."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise invalid(f"{name}: give the offset, e.g. 2026-11-01T00:00:00+08:00 or ...Z")
    if ts.year not in YEARS:
        raise invalid(f"{name}: {ts.year} is outside {YEARS[0]}–{YEARS[-1]}")
    return ts.astimezone(UTC)


def span(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    a, b = aware(start, "from"), aware(end, "to")
    if b < a:
        raise invalid("to: is before from")
    return a, b


def days(first: date, last: date, most: int = 400) -> tuple[date, date]:
    for name, day in (("from", first), ("to", last)):
        if day.year not in YEARS:
            raise invalid(f"{name}: {day.year} is outside {YEARS[0]}–{YEARS[-1]}")
    if last < first:
        raise invalid("to: is before from")
    if (last - first).days >= most:
        raise invalid(f"to: at most {most} days at a time")
    return first, last


def obis(code: str, name: str = "quantity") -> str:
    if not OBIS.fullmatch(code):
        raise invalid(f"{name}: {code[:40]!r} is not an OBIS code like 1-0:1.8.0")
    return code


async def worst_meters(store: Any, lo: datetime, hi: datetime, tz: str
                       ) -> tuple[list[dict[str, Any]], list[str]]:
    """Every meter's attempts and answers over the span, lowest success first, and the
    registered meters never heard from: the API's and the collection page's one view."""
    totals: dict[str, list[int]] = {}
    for r in await store.collection_summary(lo, hi, "meter", tz):
        t = totals.setdefault(r.group, [0, 0])
        t[0] += r.attempts
        t[1] += r.ok
    ranked = sorted(({"meter": m, "attempts": a, "ok": ok, "success": ok / max(a, 1)}
                     for m, (a, ok) in totals.items()), key=lambda w: (w["success"], w["meter"]))
    known = {m.id for m in await store.meters() if not m.is_area_meter}
    return ranked, sorted(known - set(totals))


def version_doc(v: ValueVersion) -> dict[str, Any]:
    return {"ts": v.ts.isoformat(), "value": v.value, "unit": v.unit,
            "quality": str(v.quality), "method": v.method, "reason": v.reason,
            "version": v.version, "actor": v.actor, "note": v.note,
            "created_at": v.created_at.isoformat() if v.created_at else None}


def wants_csv(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return CSV in accept and "application/json" not in accept.split(CSV)[0]


def table(request: Request, columns: Sequence[str], rows: Iterable[Sequence[Any]],
          doc: dict[str, Any], filename: str = "table.csv") -> Response:
    """CSV when the caller asks for it (Accept: text/csv), JSON otherwise."""
    if wants_csv(request):
        return Response("".join(table_lines(columns, rows)), media_type=CSV,
                        headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                 **({"X-Next-Cursor": doc["next"]} if doc.get("next") else {})})
    return JsonText(doc)


class JsonText(Response):
    """JSON of a document that is JSON-ready already (no re-walk of every row)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return json.dumps(content, ensure_ascii=False, separators=(",", ":"),
                          default=str).encode()


class CsvStream(StreamingResponse):
    media_type = CSV


class TextStream(StreamingResponse):
    media_type = "text/plain"


def streamed(lines: AsyncIterator[str], media: str, filename: str) -> StreamingResponse:
    async def encoded() -> AsyncIterator[bytes]:
        batch: list[str] = []
        async for line in lines:
            batch.append(line)
            if len(batch) >= 500:
                yield "".join(batch).encode()
                batch.clear()
        if batch:
            yield "".join(batch).encode()

    kind = CsvStream if media == CSV else TextStream
    return kind(encoded(), media_type=media,
                headers={"Content-Disposition": f'attachment; filename="{filename}"'})
