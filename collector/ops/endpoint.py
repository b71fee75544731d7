"""/metrics, /healthz and /readyz on one small HTTP listener.

systemd, Kubernetes and Prometheus need only these three GETs, so a few lines of asyncio
serve them without pulling a web framework into a gateway with 256 MB of RAM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector.ops.metrics import Metrics

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[tuple[bool, str]]]
CHECK_TIMEOUT_S = 3.0


async def readiness(checks: Mapping[str, Check]) -> tuple[bool, dict[str, dict[str, object]]]:
    """Run every check (each bounded in time); ready only when all pass."""
    results: dict[str, dict[str, object]] = {}
    for name, check in checks.items():
        try:
            ok, detail = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except TimeoutError:
            ok, detail = False, f"no answer within {CHECK_TIMEOUT_S:.0f} s"
        except Exception as exc:
            ok, detail = False, f"{type(exc).__name__}: {exc}"
        results[name] = {"ok": ok, "detail": detail}
    return all(bool(r["ok"]) for r in results.values()), results


class OpsEndpoint:
    def __init__(self, metrics: Metrics, checks: Mapping[str, Check]) -> None:
        self.metrics = metrics
        self.checks = checks
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("metrics and health on http://%s:%d/metrics, /healthz, /readyz", host,
                 self.port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5)
            while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                pass  # headers: nothing here needs them
            parts = request.decode("latin-1").split()
            path = parts[1].split("?")[0] if len(parts) >= 2 else ""
            status, ctype, body = await self._route(parts[0] if parts else "", path)
            writer.write(f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                         .encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(self, method: str, path: str) -> tuple[str, str, bytes]:
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest(self.metrics.registry)
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"alive"}\n'
        if path == "/readyz":
            ready, results = await readiness(self.checks)
            body = json.dumps({"ready": ready, "checks": results}).encode() + b"\n"
            return ("200 OK" if ready else "503 Service Unavailable"), "application/json", body
        return "404 Not Found", "text/plain", b"try /metrics, /healthz or /readyz\n"
