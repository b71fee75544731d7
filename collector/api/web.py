"""The web view: server-rendered pages (Jinja2, no JavaScript) behind a login that
exchanges an API token for a session cookie. Charts are SVG drawn here, so a page is
whole when it arrives."""

from __future__ import annotations

import itertools
import logging
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta, tzinfo
from html import escape
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from collector.acquisition.clock import local_midnight
from collector.acquisition.q1376.states import terminal_states
from collector.api.auth import COOKIE, Sessions
from collector.api.common import settings_of, store_of, worst_meters
from collector.api.pages import may_write, missing, need_write, page, viewer
from collector.api.problems import Problem
from collector.api.throttle import LoginThrottle
from collector.vee.status import readiness
from model import Quality, ValueVersion
from model.resolution import decimals_in

log = logging.getLogger(__name__)
ENERGY, REVERSE = "1-0:1.8.0", "1-0:2.8.0"
READ_TARGET = 0.98
"""The read rate the KPI strip measures against (a common service-level target)."""
router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/collection") -> HTMLResponse:
    return page(request, "login.html", None, next=_local(next), error="")


@router.post("/login")
async def login(request: Request, token: Annotated[str, Form()],
                next: Annotated[str, Form()] = "/collection") -> Response:
    throttle: LoginThrottle = request.app.state.login_throttle
    client = request.client.host if request.client else "?"
    wait = throttle.wait(client)
    if wait:
        log.warning("login refused from %s: too many failed logins; %d s to wait", client,
                    wait, extra={"client": client})
        refused = page(request, "login.html", None, next=_local(next),
                       error=f"Too many failed logins from this address: try again in "
                             f"{wait} s.")
        refused.status_code = 429
        refused.headers["Retry-After"] = str(wait)
        return refused
    found = await store_of(request).token_for(token.strip())
    if found is None or not ({"read", "admin"} & set(found.scopes)):
        failures = throttle.failed(client)
        log.warning("failed login from %s (%d in the last %g s)", client, failures,
                    throttle.window_s, extra={"client": client})
        return page(request, "login.html", None, next=_local(next),
                    error="That token is unknown, revoked, or lacks the read scope.")
    sessions: Sessions = request.app.state.sessions
    response = RedirectResponse(_local(next), status_code=303)
    sid = await store_of(request).start_session(found.name, sessions.hours)
    response.set_cookie(COOKIE, sid, httponly=True,
                        samesite="strict", secure=sessions.secure,
                        max_age=int(sessions.hours * 3600))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    sid = request.cookies.get(COOKIE)
    if sid:
        await store_of(request).end_session(sid)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


def _local(path: str) -> str:
    """Only paths on this site: a login must not bounce the user elsewhere."""
    return path if path.startswith("/") and not path.startswith("//") else "/collection"


@router.get("/")
async def home() -> Response:
    return RedirectResponse("/collection", status_code=303)


@router.get("/collection", response_class=HTMLResponse)
async def collection(request: Request, days: Annotated[int, Query(ge=1, le=62)] = 7
                     ) -> HTMLResponse:
    token = await viewer(request)
    store = store_of(request)
    tz = settings_of(request).collector.tz
    end = await _latest_day(store, tz) + timedelta(days=1)
    first = end - timedelta(days=days)
    lo, hi = local_midnight(first, tz), local_midnight(end, tz)
    rows = await store.collection_summary(lo, hi, "area", str(tz))
    day_names = [(first + timedelta(days=i)).isoformat() for i in range(days)]
    cells: dict[str, dict[str, float]] = defaultdict(dict)
    for r in rows:
        cells[r.group][r.day] = r.success_rate
    heat = [(area, [cells[area].get(d) for d in day_names]) for area in sorted(cells)]
    worst, never = await worst_meters(store, lo, hi, str(tz))
    q1376 = settings_of(request).q1376
    terminals = (await terminal_states(store, q1376, datetime.now(UTC), days)
                 if q1376.concentrators else [])
    return page(request, "collection.html", token, days=day_names, heat=heat,
                worst=worst[:15], never=never, kpi=await _kpis(store, rows, first, end, tz),
                links=await _links(store, lo, hi, tz), terminals=terminals)


async def _kpis(store: Any, rows: Any, first: date, end: date, tz: Any) -> dict[str, Any]:
    """The shift's three figures: reads against the target, how much of the consumption
    is estimated, and the open alarms by severity."""
    attempts = sum(r.attempts for r in rows)
    ok = sum(r.ok for r in rows)
    status = await readiness(store, first, end - timedelta(days=1), tz, await store.meters())
    by_severity: dict[str, int] = defaultdict(int)
    for r in await store.list_flags(open_only=True):
        by_severity[r.flag.severity] += 1
    return {"read_rate": ok / attempts if attempts else None, "target": READ_TARGET,
            "estimated": status.estimated / status.points if status.points else None,
            "held": status.held, "alarms": dict(sorted(by_severity.items()))}


async def _links(store: Any, lo: datetime, hi: datetime, tz: Any) -> list[dict[str, Any]]:
    """Communication health per gateway (a concentrator reports as one): a gateway down
    silences every meter behind it, and the meter table alone hides that."""
    totals: dict[str, dict[str, Any]] = {}
    for r in await store.collection_summary(lo, hi, "gateway", str(tz)):
        t = totals.setdefault(r.group or "(this collector)",
                              {"attempts": 0, "ok": 0, "last_ok": None})
        t["attempts"] += r.attempts
        t["ok"] += r.ok
        if r.ok and (t["last_ok"] is None or r.day > t["last_ok"]):
            t["last_ok"] = r.day
    return [{"gateway": g, "attempts": t["attempts"],
             "success": t["ok"] / t["attempts"] if t["attempts"] else None,
             "last_ok": t["last_ok"]} for g, t in sorted(totals.items())]


async def _latest_day(store: Any, tz: Any) -> date:
    """The last local day with any attempt: a demo database from last week still shows."""
    latest = max((await store.last_attempts([m.id for m in await store.meters()])).values(),
                 default=None)
    return (latest or datetime.now(UTC)).astimezone(tz).date()


@router.get("/meters/{meter_id}", response_class=HTMLResponse)
async def meter(request: Request, meter_id: str,
                start: Annotated[date | None, Query(alias="from")] = None,
                end: Annotated[date | None, Query(alias="to")] = None) -> HTMLResponse:
    token = await viewer(request)
    store = store_of(request)
    tz = settings_of(request).collector.tz
    latest = [r.ts for r in await store.latest_readings([meter_id]) if r.quantity == ENERGY]
    if not latest and meter_id not in {m.id for m in await store.meters()}:
        return missing(request, token, f"No meter {meter_id} is known here.")
    # The day its newest read closes: a read stamped at midnight ends the day before, so
    # the page does not open on an empty day.
    last = end or ((max(latest) - timedelta(microseconds=1)).astimezone(tz).date() if latest
                   else await _latest_day(store, tz))
    first = start or last
    if last < first or (last - first).days > 62:
        raise Problem(422, "A parameter is not valid", "from/to: up to 62 days, in order")
    lo, hi = local_midnight(first, tz), local_midnight(last + timedelta(days=1), tz)
    values = await store.current_values(ENERGY, lo, hi, [meter_id])
    windows = [(r.flag.start, r.flag.end, r.flag.kind) for r in await store.list_flags()
               if r.flag.subject == meter_id and r.flag.end >= lo and r.flag.start <= hi]
    versions = [v for v in await store.value_history(meter_id, ENERGY, lo, hi)
                if v.version > 0]
    assignments = await store.assignments(meter_id=meter_id)
    point = assignments[-1].service_point_id if assignments else ""
    bills = await store.bills(service_point_id=point) if point else []
    commands = await store.meter_commands([meter_id], limit=10)
    shown = versions[-200:]
    # A column at one resolution: the fewest decimals that show every value as stored.
    return page(request, "meter.html", token, meter_id=meter_id, point=point,
                first=first.isoformat(), last=last.isoformat(),
                chart=profile_svg(values, windows, lo, hi, tz), versions=shown,
                decimals=decimals_in(v.value for v in shown), bills=bills, commands=commands,
                may_act=may_write(token),
                kwh_decimals=decimals_in(b.kwh for b in bills))


def profile_svg(values: list[ValueVersion], windows: list[tuple[datetime, datetime, str]],
                lo: datetime, hi: datetime, tz: tzinfo, width: int = 960,
                height: int = 260) -> str:
    """Interval energy as points joined by a line; estimated intervals orange, flag
    windows shaded behind. A point per interval whose both register ends are known."""
    pad = 40
    points: list[tuple[datetime, float, bool]] = []
    for prev, cur in itertools.pairwise(values):
        if prev.value is None or cur.value is None:
            continue
        estimated = Quality.ACTUAL not in (prev.quality, cur.quality) or prev.quality != cur.quality
        points.append((cur.ts, cur.value - prev.value, estimated))
    span_s = max((hi - lo).total_seconds(), 1.0)
    top = max((p[1] for p in points), default=1.0) or 1.0

    def x(t: datetime) -> float:
        return pad + (width - 2 * pad) * (t - lo).total_seconds() / span_s

    def y(v: float) -> float:
        return height - pad - (height - 2 * pad) * max(v, 0.0) / top

    parts = [f'<svg id="profile" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="load profile">',
             f'<rect x="{pad}" y="{pad}" width="{width - 2 * pad}" height="{height - 2 * pad}" '
             'fill="#fff" stroke="#d5dbe3"/>']
    for a, b, kind in windows:
        x0, x1 = x(max(a, lo)), x(min(b, hi))
        parts.append(f'<rect class="flag-window" x="{x0:.1f}" y="{pad}" '
                     f'width="{max(x1 - x0, 2):.1f}" height="{height - 2 * pad}" '
                     f'fill="#f8d3d3"><title>{escape(kind)}</title></rect>')
    if points:
        line = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v, _ in points)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#2b6cb0" '
                     'stroke-width="1"/>')
        for t, v, est in points:
            parts.append(f'<circle class="{"estimated" if est else "actual"}" '
                         f'cx="{x(t):.1f}" cy="{y(v):.1f}" r="{3 if est else 1.6}" '
                         f'fill="{"#dd6b20" if est else "#2b6cb0"}"/>')
    else:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle">'
                     'no interval data in this range</text>')
    parts.append(f'<text x="{pad}" y="{pad - 8}" font-size="12">{top:.3f} kWh</text>')
    hours = max(int((hi - lo).total_seconds() // 3600), 1)
    every = max(1, hours // 12)
    for h in range(0, hours + 1, every):
        t = lo + timedelta(hours=h)
        parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{height - pad}" '
                     f'y2="{height - pad + 4}" stroke="#888"/><text x="{x(t):.1f}" '
                     f'y="{height - pad + 16}" font-size="11" text-anchor="middle">'
                     f'{t.astimezone(tz):%H:%M}</text>')
    parts.append(f'<text x="{pad}" y="{height - 6}" font-size="12">'
                 f'{lo.astimezone(tz):%Y-%m-%d %H:%M} to {hi.astimezone(tz):%Y-%m-%d %H:%M} '
                 f'{escape(str(tz))}</text></svg>')
    return "".join(parts)


@router.post("/meters/{meter_id}/commands")
async def command_meter(request: Request, meter_id: str, command: Annotated[str, Form()],
                        reason: Annotated[str, Form()] = "") -> Response:
    """An operator's 'read now', 'time sync', 'disconnect' or 'reconnect' from the page."""
    token = await viewer(request)
    need_write(token, "a meter command")
    store = store_of(request)
    if meter_id not in {m.id for m in await store.meters()}:
        return missing(request, token, f"No meter {meter_id} is known here.")
    try:
        await store.queue_command(meter_id, command, reason.strip(), f"web:{token.name}")
    except ValueError as exc:
        raise Problem(422, "Command refused", str(exc)) from None
    await store.audit(token.name, f"meter.{command}", {"meter": meter_id, "reason": reason})
    return RedirectResponse(f"/meters/{quote(meter_id)}#commands", status_code=303)


@router.get("/areas", response_class=HTMLResponse)
async def areas(request: Request) -> HTMLResponse:
    token = await viewer(request)
    found = sorted({m.area for m in await store_of(request).meters() if m.area})
    return page(request, "areas.html", token, areas=found)


@router.get("/areas/{area}", response_class=HTMLResponse)
async def area(request: Request, area: str, days: Annotated[int, Query(ge=1, le=62)] = 14
               ) -> HTMLResponse:
    token = await viewer(request)
    store = store_of(request)
    tz = settings_of(request).collector.tz
    end = await _latest_day(store, tz) + timedelta(days=1)
    lo, hi = local_midnight(end - timedelta(days=days), tz), local_midnight(end, tz)
    meters = {m.id: m for m in await store.meters() if m.area == area}
    if not meters:
        return missing(request, token, f"No meter is in area {area}.")
    per_day: dict[str, dict[str, float]] = defaultdict(dict)
    for r in await store.daily_consumption(lo, hi, "meter", str(tz)):
        if r.subject in meters:
            per_day[r.day][r.subject] = r.kwh
    exported: dict[str, float] = defaultdict(float)
    if any(m.exporter for m in meters.values()):  # generation nets off at the transformer
        for r in await store.daily_consumption(lo, hi, "meter", str(tz), REVERSE):
            if r.subject in meters and meters[r.subject].exporter:
                exported[r.day] += r.kwh
    balance = []
    for day in sorted(per_day):
        feed = sum(v for m, v in per_day[day].items() if meters[m].is_area_meter)
        has_feed = any(meters[m].is_area_meter for m in per_day[day])
        customers = sum(v for m, v in per_day[day].items()
                        if not meters[m].is_area_meter) - exported[day]
        loss = feed - customers if has_feed else None
        balance.append({"day": day, "feed": round(feed, 2) if has_feed else None,
                        "customers": customers, "loss": loss,
                        "pct": 100 * loss / feed if loss is not None and feed else None})
    flagged = [r for r in await store.list_flags(kind="high_line_loss", area=area)]
    ranking = []
    if flagged:
        for s in flagged[-1].flag.evidence.get("suspects_by_loss_correlation", []):
            ranking.append({"meter": s.get("meter"), "detail": f"correlation {s.get('corr')}"})
    return page(request, "area.html", token, area=area, balance=balance, ranking=ranking,
                flagged=flagged[-1].id if flagged else None)
