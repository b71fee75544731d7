"""The alarms an operator works through (flags: the list, one flag in words with its
evidence and history, acting on it) and search."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector.api.common import store_of
from collector.api.pages import may_write, missing, need_write, page, viewer
from collector.api.problems import Problem
from collector.flags.explain import explain
from storage.flag_actions import state_of
from storage.versions import Refused

router = APIRouter(include_in_schema=False)


@router.get("/flags", response_class=HTMLResponse)
async def flags(request: Request, kind: str | None = None, area: str | None = None,
                open_only: Annotated[bool, Query(alias="open")] = False) -> HTMLResponse:
    token = await viewer(request)
    store = store_of(request)
    every = await store.list_flags()
    rows = await store.list_flags(kind or None, area or None, open_only)
    return page(request, "flags.html", token, rows=rows, kind=kind, area=area,
                open=open_only, kinds=sorted({r.flag.kind for r in every}))


@router.get("/flags/{flag_id}", response_class=HTMLResponse)
async def flag(request: Request, flag_id: int) -> HTMLResponse:
    token = await viewer(request)
    found = next((r for r in await store_of(request).list_flags() if r.id == flag_id), None)
    if found is None:
        return missing(request, token, f"No flag {flag_id} is known here.")
    actions = await store_of(request).flag_actions(flag_id)
    state, assignee = state_of(actions, found.status)
    return page(request, "flag.html", token, row=found, why=explain(found.flag),
                evidence=[(k, _shown(v)) for k, v in sorted(found.flag.evidence.items())],
                actions=actions, state=state, assignee=assignee,
                may_act=may_write(token))


@router.post("/flags/{flag_id}/actions")
async def act_on_flag(request: Request, flag_id: int, action: Annotated[str, Form()],
                      assignee: Annotated[str, Form()] = "",
                      note: Annotated[str, Form()] = "") -> Response:
    """An operator acknowledges, assigns, notes or closes a flag from its page."""
    token = await viewer(request)
    need_write(token, "acting on a flag")
    store = store_of(request)
    try:
        await store.record_flag_action(flag_id, f"web:{token.name}", action, assignee.strip(),
                                       note.strip())
    except Refused as exc:
        if "no flag" in str(exc):
            return missing(request, token, str(exc))
        # Closed meanwhile (by another operator): its page says so and by whom.
        return RedirectResponse(f"/flags/{flag_id}", status_code=303)
    except ValueError as exc:
        raise Problem(422, "Action refused", str(exc)) from None
    await store.audit(token.name, f"flag.{action}", {"flag": flag_id, "assignee": assignee,
                                                      "note": note})
    return RedirectResponse(f"/flags/{flag_id}", status_code=303)


def _shown(value: Any) -> str:
    """An evidence value for a table cell: plain where it is plain, JSON otherwise."""
    if isinstance(value, str | int | float | bool) or value is None:
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


@router.get("/search", response_class=HTMLResponse)
async def search(request: Request, q: str = "") -> Response:
    """A meter id or address, a service point or account, an area: one match opens it."""
    token = await viewer(request)
    store = store_of(request)
    needle = q.strip().lower()[:64]
    hits: list[tuple[str, str, str]] = []
    if needle:
        for m in await store.meters():
            if needle in m.id.lower() or needle in m.address.lower():
                hits.append(("meter", m.id, f"/meters/{quote(m.id)}"))
        for p in await store.service_points():
            if needle in p.id.lower() or needle in p.account.lower():
                meters = await store.assignments(service_point_id=p.id)
                target = f"/meters/{quote(meters[-1].meter_id)}" if meters else "/collection"
                hits.append(("service point", f"{p.id} ({p.account})", target))
        for area in sorted({m.area for m in await store.meters() if m.area}):
            if needle in area.lower():
                hits.append(("area", area, f"/areas/{quote(area)}"))
    if len(hits) == 1:
        return RedirectResponse(hits[0][2], status_code=303)
    return page(request, "search.html", token, q=q, hits=hits[:100])
