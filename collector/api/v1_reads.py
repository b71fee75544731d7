"""/v1 meters, service points, their readings (current, raw or every version) and their
daily and monthly consumption."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from numpy.typing import NDArray

from collector.acquisition.clock import local_midnight
from collector.api import paging
from collector.api.auth import need
from collector.api.common import (
    CSV_TOO,
    IsoDate,
    IsoTime,
    JsonText,
    Quantity,
    aware,
    days,
    obis,
    settings_of,
    span,
    store_of,
    table,
    version_doc,
    wants_csv,
)
from collector.api.problems import Problem
from collector.vee.service_points import consumption
from model import ReadKind, ValueVersion
from model.codec_json import plain
from storage.base import QUALITY_OF_CODE

router = APIRouter(prefix="/v1", tags=["readings"])
READ = Depends(need("read"))
Version = Literal["current", "raw", "all"]
READING_COLUMNS = ("meter", "ts", "value", "unit", "quality", "method", "reason", "version",
                   "actor")


@router.get("/meters", dependencies=[READ])
async def meters(request: Request, area: str | None = None) -> Any:
    found = [m for m in await store_of(request).meters() if area is None or m.area == area]
    return {"items": plain(found)}


@router.get("/meters/{meter_id}", dependencies=[READ])
async def meter(request: Request, meter_id: str) -> Any:
    store = store_of(request)
    found = next((m for m in await store.meters() if m.id == meter_id), None)
    if found is None:
        raise Problem(404, "Not found", f"no meter {meter_id!r}")
    return {**plain(found), "assignments": plain(await store.assignments(meter_id=meter_id))}


@router.get("/service-points", dependencies=[READ])
async def service_points(request: Request, area: str | None = None,
                         segment: str | None = None) -> Any:
    found = [p for p in await store_of(request).service_points()
             if (area is None or p.area == area) and (segment is None or p.segment == segment)]
    return {"items": plain(found)}


@router.get("/service-points/{point_id}", dependencies=[READ])
async def service_point(request: Request, point_id: str) -> Any:
    store = store_of(request)
    found = next((p for p in await store.service_points() if p.id == point_id), None)
    if found is None:
        raise Problem(404, "Not found", f"no service point {point_id!r}")
    return {**plain(found), "meters": plain(await store.assignments(point_id))}


async def _page(store: Any, meter_id: str, quantity: str, kind: ReadKind, version: Version,
                start: datetime, end: datetime, after: tuple[float, int] | None, limit: int,
                step: timedelta) -> tuple[list[ValueVersion], tuple[float, int] | None]:
    """One page in (ts, version) order after the cursor, read a window at a time so a
    year of 15-minute data never sits in memory for a page of a thousand rows."""
    out: list[ValueVersion] = []
    lo = max(start, datetime.fromtimestamp(after[0], start.tzinfo)) if after else start
    window = step * (limit + 1)
    while lo <= end and len(out) <= limit:
        hi = min(end, lo + window)
        if version == "current":
            got = await store.current_values(quantity, lo, hi, [meter_id], kind)
        else:
            got = await store.value_history(meter_id, quantity, lo, hi, kind)
            if version == "raw":
                got = [v for v in got if v.version == 0]
        for v in got:
            if after is None or (v.ts.timestamp(), v.version) > after:
                out.append(v)
        if hi >= end:
            break
        lo = hi + timedelta(microseconds=1)
        window *= 2
    if len(out) > limit:
        last = out[limit - 1]
        return out[:limit], (last.ts.timestamp(), last.version)
    return out, None


def _iso(epochs: NDArray[np.float64]) -> list[str]:
    """ISO 8601 UTC stamps for many epoch seconds at once, as datetime.isoformat writes
    them (whole seconds: register reads are stamped at interval ends)."""
    text = np.datetime_as_string(np.rint(epochs).astype("datetime64[s]"), unit="s")
    return [f"{t}+00:00" for t in text.tolist()]


async def _raw_page(store: Any, meter_id: str, quantity: str, kind: ReadKind,
                    start: datetime, end: datetime, after: tuple[float, int] | None,
                    limit: int) -> tuple[bytes, int, tuple[float, int] | None] | None:
    """The current values as JSON text straight from the store's columns, for the usual
    page where every value is a raw read (version 0); None sends the caller the slow way.
    A month of 15-minute reads is 2,881 rows: an object and a dict each cost more than
    the query."""
    got = await store.current_arrays(quantity, start, end, [meter_id], kind)
    rows = got.rows(meter_id)
    ts = got.ts[rows]
    if after is not None:
        rows = slice(rows.start + int(np.searchsorted(ts, after[0], side="right")), rows.stop)
    if np.any(got.version[rows]):
        return None
    take = slice(rows.start, min(rows.stop, rows.start + limit))
    more = rows.stop - rows.start > limit
    unit = json.dumps(got.unit(meter_id))
    stamps = _iso(got.ts[take])
    values = got.value[take].tolist()
    letter = {c: str(QUALITY_OF_CODE[c]) for c in QUALITY_OF_CODE}
    methods = [json.dumps(m) for m in got.methods]
    quality = got.quality[take].tolist()
    method = got.method[take].tolist()
    items = ",".join(
        f'{{"ts":"{t}","value":{"null" if v != v else repr(v)},"unit":{unit},'
        f'"quality":"{letter[q]}","method":{methods[m]},"reason":"","version":0,'
        f'"actor":"","note":"","created_at":null}}'
        for t, v, q, m in zip(stamps, values, quality, method, strict=True))
    last = (float(got.ts[take.stop - 1]), 0) if more else None
    return items.encode(), take.stop - take.start, last


@router.get("/meters/{meter_id}/readings", dependencies=[READ], responses=CSV_TOO)
async def meter_readings(
    request: Request, meter_id: str,
    start: Annotated[IsoTime, Query(alias="from")], end: Annotated[IsoTime, Query(alias="to")],
    quantity: Quantity = "1-0:1.8.0", kind: ReadKind = ReadKind.INTERVAL,
    version: Version = "current", limit: Annotated[int, Query(ge=1)] = 1000,
    cursor: str | None = None,
) -> Response:
    """Readings of one meter, each with quality, method, reason and version.
    `version=current` gives each key's current value, `raw` the reads as received, `all`
    every version. Accept: text/csv answers in CSV (the next cursor in X-Next-Cursor)."""
    lo, hi = span(start, end)
    limit = min(limit, settings_of(request).api.max_page)
    pos = paging.decode(cursor)
    after = (float(pos["ts"]), int(pos["v"])) if pos else None
    step = timedelta(minutes=settings_of(request).vee.interval_minutes)
    quantity = obis(quantity)
    fast = (await _raw_page(store_of(request), meter_id, quantity, kind, lo, hi, after, limit)
            if version == "current" and not wants_csv(request) else None)
    if fast is not None:
        items, _, last = fast
        nxt = json.dumps(paging.encode({"ts": last[0], "v": last[1]}) if last else None)
        head = json.dumps({"meter": meter_id, "quantity": quantity, "kind": str(kind),
                           "version": version})[:-1]
        return JsonText(f'{head},"items":['.encode() + items
                        + f'],"next":{nxt}}}'.encode())
    rows, more = await _page(store_of(request), meter_id, quantity, kind, version, lo,
                             hi, after, limit, step)
    doc = {"meter": meter_id, "quantity": quantity, "kind": str(kind), "version": version,
           "items": [version_doc(v) for v in rows],
           "next": paging.encode({"ts": more[0], "v": more[1]}) if more else None}
    return table(request, READING_COLUMNS,
                 ((meter_id, v.ts, v.value, v.unit, str(v.quality), v.method, v.reason,
                   v.version, v.actor) for v in rows), doc, f"{meter_id}.csv")


@router.get("/service-points/{point_id}/readings", dependencies=[READ], responses=CSV_TOO)
async def point_readings(
    request: Request, point_id: str,
    start: Annotated[IsoTime, Query(alias="from")], end: Annotated[IsoTime, Query(alias="to")],
    quantity: Quantity = "1-0:1.8.0", version: Version = "current",
    limit: Annotated[int, Query(ge=1)] = 1000, cursor: str | None = None,
) -> Response:
    """The readings of every meter that was on the service point, each within the time
    it was there, with its multiplier: billing goes by service point, across swaps."""
    lo, hi = span(start, end)
    store = store_of(request)
    assignments = await store.assignments(point_id)
    if not assignments:
        raise Problem(404, "Not found", f"no meters on service point {point_id!r}")
    limit = min(limit, settings_of(request).api.max_page)
    pos = paging.decode(cursor) or {"a": 0}
    step = timedelta(minutes=settings_of(request).vee.interval_minutes)
    items: list[dict[str, Any]] = []
    nxt = None
    for n, a in enumerate(assignments):
        if n < int(pos["a"]):
            continue
        a_lo = max(lo, a.start) if a.start else lo
        a_hi = min(hi, a.end) if a.end else hi
        after = (float(pos["ts"]), int(pos["v"])) if n == int(pos["a"]) and "ts" in pos else None
        rows, more = await _page(store, a.meter_id, obis(quantity), ReadKind.INTERVAL, version,
                                 a_lo, a_hi, after, limit - len(items), step)
        items += [{"meter": a.meter_id, "multiplier": a.multiplier, **version_doc(v)}
                  for v in rows]
        if more:
            nxt = paging.encode({"a": n, "ts": more[0], "v": more[1]})
            break
        if len(items) >= limit and n + 1 < len(assignments):
            nxt = paging.encode({"a": n + 1})
            break
    doc = {"service_point": point_id, "quantity": quantity, "version": version,
           "items": items, "next": nxt}
    return table(request, ("meter", "multiplier", *READING_COLUMNS[1:]),
                 ((i["meter"], i["multiplier"], i["ts"], i["value"], i["unit"], i["quality"],
                   i["method"], i["reason"], i["version"], i["actor"]) for i in items),
                 doc, f"{point_id}.csv")


def _by_month(rows: Sequence[tuple[date, float | None]]) -> list[tuple[str, float | None]]:
    months: dict[str, float | None] = defaultdict(float)
    for day, kwh in rows:
        key = f"{day:%Y-%m}"
        months[key] = None if kwh is None or months[key] is None else (months[key] or 0) + kwh
    return sorted(months.items())


@router.get("/service-points/{point_id}/consumption", dependencies=[READ], responses=CSV_TOO)
async def point_consumption(
    request: Request, point_id: str, start: Annotated[IsoDate, Query(alias="from")],
    end: Annotated[IsoDate, Query(alias="to")], by: Literal["day", "month"] = "day",
) -> Response:
    """kWh per local day (or month) of the service point, across meter swaps and with
    multipliers; a day runs midnight to midnight in [collector] timezone, so a DST day
    has 23 or 25 hours."""
    first, last = days(start, end)
    settings = settings_of(request)
    store = store_of(request)
    tz = settings.collector.tz
    rows: list[tuple[date, float | None]] = []
    day = first
    while day <= last:
        c = await consumption(store, point_id, local_midnight(day, tz),
                              local_midnight(day + timedelta(days=1), tz),
                              settings.vee.register_max, settings.vee.register_resolution)
        rows.append((day, None if c.kwh is None else round(c.kwh, 4)))
        day += timedelta(days=1)
    out = [(d.isoformat(), k) for d, k in rows] if by == "day" else _by_month(rows)
    return table(request, ("period", "kwh"), out,
                 {"service_point": point_id, "by": by, "timezone": str(tz),
                  "items": [{"period": p, "kwh": k} for p, k in out]}, f"{point_id}-{by}.csv")


@router.get("/meters/{meter_id}/consumption", dependencies=[READ], responses=CSV_TOO)
async def meter_consumption(
    request: Request, meter_id: str, start: Annotated[IsoDate, Query(alias="from")],
    end: Annotated[IsoDate, Query(alias="to")], by: Literal["day", "month"] = "day",
) -> Response:
    """kWh per local day (or month) of one meter."""
    first, last = days(start, end)
    settings = settings_of(request)
    tz = settings.collector.tz
    got = await store_of(request).daily_consumption(
        aware(local_midnight(first, tz), "from"),
        aware(local_midnight(last + timedelta(days=1), tz), "to"), "meter", str(tz))
    rows = [(date.fromisoformat(r.day), round(r.kwh, 4)) for r in got if r.subject == meter_id]
    out: list[tuple[str, float | None]] = ([(d.isoformat(), k) for d, k in rows]
                                           if by == "day" else _by_month(rows))
    return table(request, ("period", "kwh"), out,
                 {"meter": meter_id, "by": by, "timezone": str(tz),
                  "items": [{"period": p, "kwh": k} for p, k in out]}, f"{meter_id}-{by}.csv")

