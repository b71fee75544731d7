"""What every page of the web view shares: its templates and their filters, the login
check, and how a page (or a missing thing) is answered."""

from __future__ import annotations

from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from collector.api.auth import caller
from collector.api.common import settings_of
from collector.api.problems import Problem
from model.resolution import at_resolution
from storage.tokens import ApiToken

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["at"] = at_resolution  # {{ value|at(decimals) }}


def _wall_time(ts: datetime, tz: tzinfo) -> str:
    """An operator reads the time on the wall: local, with its zone, to the minute."""
    here = ts.astimezone(tz)
    return f"{here:%Y-%m-%d %H:%M} {here.tzname()}"


templates.env.filters["local"] = _wall_time  # {{ ts|local(tz) }}


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


class LoginNeeded(Exception):
    pass


async def viewer(request: Request) -> ApiToken:
    token = await caller(request)
    if token is None or not ({"read", "admin"} & set(token.scopes)):
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise Problem(303, "Log in first",
                      headers={"Location": f"/login?{urlencode({'next': here})}"})
    return token


def page(request: Request, name: str, token: ApiToken | None, **context: Any) -> HTMLResponse:
    tz = settings_of(request).collector.tz
    return templates.TemplateResponse(request, name, {"token": token, "tz": tz, **context})


def missing(request: Request, token: ApiToken | None, what: str) -> HTMLResponse:
    """A page for something that is not there: 404, not an empty page that looks fine."""
    response = page(request, "missing.html", token, what=what)
    response.status_code = 404
    return response


def may_write(token: ApiToken) -> bool:
    return bool({"write", "admin"} & set(token.scopes))


def need_write(token: ApiToken, what: str) -> None:
    """A page's write (an alarm's step, a meter command) needs the write scope."""
    if not may_write(token):
        raise Problem(403, "Scope missing", f"{what} needs the 'write' scope; token "
                      f"{token.name!r} has {', '.join(token.scopes)}")
