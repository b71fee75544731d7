"""/v1 bills, bill review and release, prepaid accounts and top-ups, exports (NEM12 and
CSV, streamed), and tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from collector.api.auth import need
from collector.api.common import (
    CSV,
    CSV_TOO,
    CsvStream,
    IsoDate,
    TextStream,
    days,
    settings_of,
    store_of,
    streamed,
    table,
)
from collector.api.problems import Problem
from collector.exports.bills import BILL_COLUMNS, bill_row
from collector.exports.csv_rows import reading_lines
from collector.exports.nem12 import nem12_lines
from collector.exports.selection import SelectionError, export_meters
from collector.exports.streams import ENERGY, standard_midnight, stream_days
from model import Bill, BillStatus, ValueVersion
from model.codec_json import plain
from storage.tokens import ApiToken
from storage.versions import Refused

router = APIRouter(prefix="/v1", tags=["billing"])
BILLING = Depends(need("billing"))
BillId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def bill_doc(b: Bill) -> dict[str, Any]:
    return {"id": b.id, "service_point": b.service_point_id, "cycle": b.cycle,
            "segment": b.segment, "version": b.version, "status": str(b.status),
            "from": b.start.isoformat(), "to": b.end.isoformat(), "kwh": b.kwh,
            "amount": b.amount, "currency": b.currency, "quality": b.quality,
            "holds": [{"code": h.code, "detail": h.detail} for h in b.holds],
            "correction": b.correction, "released_by": b.released_by,
            "released_at": b.released_at.isoformat() if b.released_at else None,
            "determinants": b.determinants}


@router.get("/bills", dependencies=[BILLING], responses=CSV_TOO)
async def bills(request: Request, cycle: str | None = None, segment: str | None = None,
                status: BillStatus | None = None) -> Response:
    """The latest version of each bill; Accept: text/csv gives the export rows."""
    found = [b for b in await store_of(request).bills(cycle, status=status)
             if segment is None or b.segment == segment]
    return table(request, BILL_COLUMNS, (bill_row(b) for b in found),
                 {"items": [bill_doc(b) for b in found]}, f"bills-{cycle or 'all'}.csv")


@router.get("/bills/{bill_id}", dependencies=[BILLING])
async def bill(request: Request, bill_id: BillId) -> Any:
    found = await store_of(request).bill(bill_id)
    if found is None:
        raise Problem(404, "Not found", f"no bill {bill_id}")
    return bill_doc(found)


class Release(BaseModel):
    note: str = Field(default="", max_length=500)


@router.post("/bills/{bill_id}/release")
async def release(request: Request, bill_id: BillId, body: Release,
                  token: Annotated[ApiToken, Depends(need("billing", "write"))]) -> Any:
    """Release a held bill after review (核), by the token's name."""
    store = store_of(request)
    if await store.bill(bill_id) is None:
        raise Problem(404, "Not found", f"no bill {bill_id}")
    try:
        done = await store.release_bill(bill_id, f"api:{token.name}", body.note)
    except Refused as exc:
        raise Problem(409, "Bill not released", str(exc)) from None
    await store.audit(token.name, "bill.release", {"bill": bill_id, "note": body.note})
    return bill_doc(done)


@router.get("/prepaid/accounts", dependencies=[BILLING])
async def accounts(request: Request) -> Any:
    return {"items": plain(await store_of(request).prepaid_accounts())}


@router.get("/prepaid/alerts", dependencies=[BILLING])
async def alerts(request: Request, account: str | None = None) -> Any:
    events = [e for e in await store_of(request).prepaid_events(account)
              if e.kind not in ("charge", "topup")]
    return {"items": plain(events)}


class Topup(BaseModel):
    amount: float = Field(gt=0, le=1_000_000)
    reference: str = Field(min_length=1, max_length=64)


@router.post("/prepaid/{account}/topups", status_code=201)
async def topup(request: Request, account: str, body: Topup,
                token: Annotated[ApiToken, Depends(need("billing", "write"))]) -> Any:
    """A top-up; the same reference twice is one top-up (200 and `repeat: true`)."""
    from collector.billing.prepaid import Prepaid
    from collector.billing.tariff import Tariffs

    settings = settings_of(request)
    store = store_of(request)
    prepaid = Prepaid(store, settings.prepaid, settings.collector.tz,
                      Tariffs(settings.billing.tariff_dirs))
    try:
        done = await prepaid.topup(account, body.amount, datetime.now(UTC), body.reference,
                                   f"api:{token.name}")
    except ValueError as exc:
        raise Problem(404 if "no prepaid account" in str(exc) else 422, "Top-up refused",
                      str(exc)) from None
    await store.audit(token.name, "prepaid.topup", {"account": account, **body.model_dump()})
    return {"account": account, "repeat": done is None,
            "event": plain(done) if done else None}


async def _meters(request: Request, meters: str | None, area: str | None) -> list[str]:
    try:
        return export_meters(await store_of(request).meters(), meters, area)
    except SelectionError as exc:
        raise Problem(422, "A parameter is not valid", str(exc)) from None


@router.get("/exports/nem12", dependencies=[BILLING], response_class=TextStream)
async def export_nem12(request: Request, start: Annotated[IsoDate, Query(alias="from")],
                       end: Annotated[IsoDate, Query(alias="to")], meters: str | None = None,
                       area: str | None = None) -> StreamingResponse:
    """NEM12 of the validated intervals, local standard-time days, streamed."""
    first, last = days(start, end)
    settings = settings_of(request)
    ids = await _meters(request, meters, area)
    step = settings.vee.interval_minutes
    lines = nem12_lines(stream_days(store_of(request), ids, first, last, settings.collector.tz,
                                    timedelta(minutes=step)), step, datetime.now(UTC))
    return streamed(_ended(lines), "text/plain", f"nem12-{first}-{last}.csv")


async def _ended(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    async for line in lines:
        yield line + "\n"


@router.get("/exports/readings", dependencies=[BILLING], response_class=CsvStream)
async def export_readings(request: Request, start: Annotated[IsoDate, Query(alias="from")],
                          end: Annotated[IsoDate, Query(alias="to")], meters: str | None = None,
                          area: str | None = None) -> StreamingResponse:
    """Every current interval value in long format (CSV), meter by meter, streamed."""
    first, last = days(start, end)
    settings = settings_of(request)
    tz = settings.collector.tz
    ids = await _meters(request, meters, area)
    store = store_of(request)
    lo = standard_midnight(first, tz)
    hi = standard_midnight(last + timedelta(days=1), tz)
    points = {a.meter_id: a.service_point_id for a in await store.assignments()}

    async def rows() -> AsyncIterator[tuple[str, ValueVersion]]:
        for meter in ids:
            for v in await store.current_values(ENERGY, lo, hi, [meter]):
                yield points.get(meter, ""), v

    return streamed(reading_lines(rows()), CSV, f"readings-{first}-{last}.csv")


@router.get("/tokens", dependencies=[Depends(need("admin"))])
async def tokens(request: Request) -> Any:
    return {"items": plain(await store_of(request).tokens())}
