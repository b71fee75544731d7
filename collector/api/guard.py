"""What every response and every browser write pass through: security headers, and a
same-origin check on the writes a session cookie would authorize.

The session cookie is SameSite=Strict, which modern browsers honour; but a cookie that
authorizes a top-up must not depend on the browser alone, and a login form that takes a
cross-site post lets another site log a user in as someone else. A bearer token is never
sent by a browser on its own, so requests carrying one are not checked. Written as plain
ASGI, not as request middleware: it runs on every API call, and the API's hot path is
measured (bench.api).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.api.auth import COOKIE
from collector.api.problems import problem

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
CHECKED_ALWAYS = frozenset({"/login"})
"""Posted to before a session exists: checked with or without a cookie."""

CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on
    # its own site's form posts, and the same-origin check below could not tell them.
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
DOCS = ("/docs", "/redoc")
"""FastAPI's interactive docs load their script from a CDN: no CSP of ours there."""


def same_origin(headers: Headers) -> bool:
    """The request's Origin (or, without one, its Referer) names this host."""
    claimed = headers.get("origin") or headers.get("referer")
    host = headers.get("host", "")
    if not claimed or claimed == "null" or not host:
        return False
    return urlsplit(claimed).netloc.lower() == host.lower()


class Guard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name == "content-security-policy" and path.startswith(DOCS):
                        continue
                    if name == "cache-control" and path.startswith("/static/"):
                        continue
                    if name not in headers:
                        headers[name] = value
            await send(message)

        if scope["method"] not in SAFE_METHODS and self._needs_origin(scope, path):
            headers = Headers(scope=scope)
            if not same_origin(headers):
                refused = problem(
                    403, "Cross-site request refused",
                    "a write authorized by the session cookie must come from this site's "
                    "own pages (its Origin or Referer names this host); scripts send "
                    "'Authorization: Bearer TOKEN' instead", path)
                await refused(scope, receive, with_headers)
                return
        await self.app(scope, receive, with_headers)

    @staticmethod
    def _needs_origin(scope: Scope, path: str) -> bool:
        headers = Headers(scope=scope)
        if headers.get("authorization", "").lower().startswith("bearer "):
            return False
        return path in CHECKED_ALWAYS or COOKIE in cookie_parser(headers.get("cookie", ""))
