"""/v1 collection success, flags and VEE: what integrators watch and operators act on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from collector.acquisition.q1376.states import terminal_states
from collector.api.auth import need
from collector.api.common import (
    CSV_TOO,
    OBIS_PATTERN,
    IsoDate,
    IsoTime,
    Quantity,
    days,
    invalid,
    obis,
    settings_of,
    span,
    store_of,
    table,
    version_doc,
    worst_meters,
)
from collector.api.problems import Problem
from collector.vee.status import readiness
from model import ReadKind
from model.codec_json import plain
from storage.tokens import ApiToken
from storage.versions import Refused

router = APIRouter(prefix="/v1", tags=["operations"])
READ = Depends(need("read"))
CONCENTRATOR_COLUMNS = ("terminal", "address", "area", "state", "since", "last_heard",
                        "points", "collected_through")
COLLECTION_COLUMNS = ("group", "day", "attempts", "ok", "timeouts", "errors", "success",
                      "avg_latency_ms", "last_error")


def _row(r: Any) -> tuple[Any, ...]:
    return (r.group, r.day, r.attempts, r.ok, r.timeouts, r.errors, round(r.success_rate, 4),
            round(r.avg_latency_ms, 1), r.last_error)


@router.get("/collection", dependencies=[READ], responses=CSV_TOO)
async def collection(
    request: Request, start: Annotated[IsoTime, Query(alias="from")],
    end: Annotated[IsoTime, Query(alias="to")],
    by: Literal["meter", "bus", "gateway", "area"] = "meter",
) -> Response:
    """Reads attempted and answered per group (meter, bus, gateway or area) and local day."""
    lo, hi = span(start, end)
    rows = await store_of(request).collection_summary(
        lo, hi, by, str(settings_of(request).collector.tz))
    items = [dict(zip(COLLECTION_COLUMNS, _row(r), strict=True)) for r in rows]
    return table(request, COLLECTION_COLUMNS, (_row(r) for r in rows),
                 {"by": by, "items": items}, "collection.csv")


@router.get("/collection/worst", dependencies=[READ])
async def worst(
    request: Request, start: Annotated[IsoTime, Query(alias="from")],
    end: Annotated[IsoTime, Query(alias="to")], limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Any:
    """The meters with the lowest success over the span, and those never heard from."""
    lo, hi = span(start, end)
    ranked, never = await worst_meters(store_of(request), lo, hi,
                                       str(settings_of(request).collector.tz))
    return {"worst": [{**w, "success": round(w["success"], 4)} for w in ranked[:limit]],
            "never_heard": never}


@router.get("/concentrators", dependencies=[READ], responses=CSV_TOO)
async def concentrators(request: Request,
                        days: Annotated[int, Query(ge=1, le=366)] = 30) -> Response:
    """Each Q/GDW 1376.1 terminal: online or offline and since when, last heard, its
    points and how far its meters are collected (from the stored link events)."""
    states = await terminal_states(store_of(request), settings_of(request).q1376,
                                   datetime.now(UTC), days)
    items = [s.as_json() for s in states]
    return table(request, CONCENTRATOR_COLUMNS,
                 ([i[c] for c in CONCENTRATOR_COLUMNS] for i in items), {"items": items},
                 "concentrators.csv")


@router.get("/flags", dependencies=[READ])
async def flags(request: Request, kind: str | None = None, area: str | None = None,
                open_only: Annotated[bool, Query(alias="open")] = False) -> Any:
    rows = await store_of(request).list_flags(kind, area, open_only)
    return {"items": [{"id": r.id, "status": r.status, "raised_at": r.raised_at.isoformat(),
                       **plain(r.flag)} for r in rows]}


@router.get("/flags/{flag_id}", dependencies=[READ])
async def flag(request: Request, flag_id: Annotated[int, Path(ge=1, le=2**63 - 1)]) -> Any:
    found = next((r for r in await store_of(request).list_flags() if r.id == flag_id), None)
    if found is None:
        raise Problem(404, "Not found", f"no flag {flag_id}")
    return {"id": found.id, "status": found.status, "raised_at": found.raised_at.isoformat(),
            **plain(found.flag)}


SAID = r"\S"
"""A note or a name that says something (not only spaces)."""


class Acknowledge(BaseModel):
    action: Literal["acknowledge"]
    assignee: Literal[""] = ""
    note: str = Field(default="", max_length=2000)


class Assign(BaseModel):
    action: Literal["assign"]
    assignee: str = Field(min_length=1, max_length=64, pattern=SAID)
    note: str = Field(default="", max_length=2000)


class NoteOrClose(BaseModel):
    """A note, or the close, says why."""

    action: Literal["note", "close"]
    assignee: Literal[""] = ""
    note: str = Field(min_length=1, max_length=2000, pattern=SAID)


FlagStep = Annotated[Acknowledge | Assign | NoteOrClose, Field(discriminator="action")]


@router.post("/flags/{flag_id}/actions", status_code=201)
async def act_on_flag(request: Request, flag_id: Annotated[int, Path(ge=1, le=2**63 - 1)],
                      body: FlagStep,
                      token: Annotated[ApiToken, Depends(need("write"))]) -> Any:
    """Acknowledge, assign, note or close a flag (closing clears it), in the token's name."""
    store = store_of(request)
    try:
        done = await store.record_flag_action(flag_id, f"api:{token.name}", body.action,
                                              body.assignee.strip(), body.note.strip())
    except Refused as exc:
        raise Problem(404 if "no flag" in str(exc) else 409, "Action refused",
                      str(exc)) from None
    except ValueError as exc:
        raise Problem(422, "Action refused", str(exc)) from None
    await store.audit(token.name, f"flag.{body.action}", {"flag": flag_id,
                                                           **body.model_dump()})
    return plain(done)


class ReadOrSync(BaseModel):
    command: Literal["read", "time_sync"]
    reason: str = Field(default="", max_length=500)


class Switch(BaseModel):
    """A disconnect (trip) or a reconnect says why: a household is cut off or back on."""

    command: Literal["trip", "reconnect"]
    reason: str = Field(min_length=1, max_length=500, pattern=SAID)


MeterCommandBody = Annotated[ReadOrSync | Switch, Field(discriminator="command")]


@router.post("/meters/{meter_id}/commands", status_code=202)
async def command_meter(request: Request, meter_id: str, body: MeterCommandBody,
                        token: Annotated[ApiToken, Depends(need("write"))]) -> Any:
    """Queue a read, a time sync, a disconnect (trip) or a reconnect; the daemon that
    reaches the meter's bus runs it within seconds and writes its answer
    (GET …/commands). A trip or a reconnect says why."""
    store = store_of(request)
    if meter_id not in {m.id for m in await store.meters()}:
        raise Problem(404, "Not found", f"no meter {meter_id!r}")
    try:
        queued = await store.queue_command(meter_id, body.command, body.reason.strip(),
                                           f"api:{token.name}")
    except ValueError as exc:
        raise Problem(422, "Command refused", str(exc)) from None
    await store.audit(token.name, f"meter.{body.command}", {"meter": meter_id,
                                                             "reason": body.reason})
    return plain(queued)


@router.get("/meters/{meter_id}/commands", dependencies=[READ])
async def meter_commands(request: Request, meter_id: str) -> Any:
    return {"items": plain(await store_of(request).meter_commands([meter_id]))}


@router.get("/vee/status", dependencies=[READ])
async def vee_status(request: Request, day: IsoDate | None = None,
                     span_days: Annotated[int, Query(alias="days", ge=1, le=366)] = 1,
                     area: str | None = None) -> Any:
    """Per service point and local day: validated, or held and by which rule."""
    settings = settings_of(request)
    store = store_of(request)
    last = day or (datetime.now(settings.collector.tz).date() - timedelta(days=1))
    days(last, last)  # a year this head-end can hold, before any arithmetic on it
    first, last = days(last - timedelta(days=span_days - 1), last)
    r = await readiness(store, first, last, settings.collector.tz,
                        settings.meters or await store.meters(), area)
    return {"from": first.isoformat(), "to": last.isoformat(), "points": r.points,
            "validated": r.validated, "estimated": r.estimated, "held": r.held,
            "held_by": dict(r.held_by),
            "worst": [{"service_point": p, "held_days": n, "rules": rules}
                      for p, n, rules in r.worst]}


@router.get("/vee/history/{meter_id}", dependencies=[READ])
async def vee_history(request: Request, meter_id: str,
                      start: Annotated[IsoTime, Query(alias="from")],
                      end: Annotated[IsoTime, Query(alias="to")],
                      quantity: Quantity = "1-0:1.8.0", kind: ReadKind = ReadKind.INTERVAL) -> Any:
    """Every version of every value in the span: who or what made it, when and why."""
    lo, hi = span(start, end)
    if hi - lo > timedelta(days=31):
        raise invalid("to: history is served a month at a time")
    got = await store_of(request).value_history(meter_id, obis(quantity), lo, hi, kind)
    return {"meter": meter_id, "quantity": quantity, "items": [version_doc(v) for v in got]}


class Edit(BaseModel):
    meter: str = Field(min_length=1, max_length=64)
    quantity: str = Field(default="1-0:1.8.0", pattern=OBIS_PATTERN)
    start: datetime = Field(alias="from")
    end: datetime = Field(alias="to")
    value: float | None = None
    method: Literal["linear", "like-day"] | None = None
    reason: str = Field(min_length=1, max_length=4)
    note: str = Field(default="", max_length=500)


@router.post("/vee/edits", status_code=201)
async def vee_edit(request: Request, body: Edit,
                   token: Annotated[ApiToken, Depends(need("write"))]) -> Any:
    """A manual edit, written as a new version by the token's name; refused without a
    reason code."""
    from collector.vee.build import build_vee
    from collector.vee.edit import edit

    settings = settings_of(request)
    store = store_of(request)
    lo, hi = span(body.start, body.end)
    engine = build_vee(settings, store, settings.meters or await store.meters())
    try:
        written = await edit(engine, body.meter, obis(body.quantity), lo, hi, value=body.value,
                             method=body.method, reason=body.reason, note=body.note,
                             by=f"api:{token.name}", now=datetime.now(UTC))
    except Refused as exc:
        raise Problem(422, "Edit refused", str(exc)) from None
    await store.audit(token.name, "vee.edit", {**body.model_dump(mode="json", by_alias=True),
                                                "written": written})
    return {"written": written}
