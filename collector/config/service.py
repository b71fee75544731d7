"""[collector], [storage], [ops] and [api] of collector.toml: how the process itself runs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.config.sections import HOSTPORT, Section, parse_duration

DEFAULT_STORAGE = "sqlite:///collector.db"


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    timezone: str = "UTC"
    gateway: str = ""
    log_level: str = "INFO"
    catch_up: timedelta = timedelta(days=2)
    """After downtime, slots missed within this horizon are re-read from meter memory."""

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class StorageSettings:
    url: str = DEFAULT_STORAGE
    password_env: str = ""
    spill_path: str = "collector-spill.db"
    """Where writes wait while PostgreSQL is unreachable."""
    memory_rows: int = 100_000
    """Rows held in memory during an outage before the oldest spill to spill_path."""
    attempts_retention_days: int = 0


@dataclass(frozen=True, slots=True)
class OpsSettings:
    listen: str = ""
    """host:port for /metrics, /healthz and /readyz; empty = off."""
    log_format: str = "text"


@dataclass(frozen=True, slots=True)
class ApiSettings:
    listen: str = "127.0.0.1:8080"
    """host:port that `collector api` serves the HTTP API and the web view on."""
    session_hours: float = 12.0
    """How long a web login (a token exchanged for a session cookie) lasts."""
    secure_cookies: bool = False
    """Mark the session cookie Secure: set it when a TLS proxy is in front."""
    max_page: int = 10_000
    """The most rows one page of readings may hold (`limit`)."""
    access_log: bool = True
    """A line per request on stderr; behind a proxy that logs requests, false saves
    the API a good share of its time per request."""
    workers: int = 1
    """API processes sharing the port: web sessions live in the store, so any of them
    serves any user."""


COLLECTOR_KEYS = {
    "timezone": 'timezone = "Asia/Shanghai"',
    "gateway": 'gateway = "gw-017"',
    "log_level": 'log_level = "INFO"',
    "catch_up": 'catch_up = "2d"  # re-read slots missed while down, from meter memory',
}
API_KEYS = {
    "listen": 'listen = "127.0.0.1:8080"  # collector api: HTTP API and web view',
    "session_hours": "session_hours = 12.0",
    "secure_cookies": "secure_cookies = true  # behind a TLS proxy",
    "max_page": "max_page = 10000",
    "access_log": "access_log = false  # a proxy in front logs requests",
    "workers": "workers = 2  # API processes on one port",
}
OPS_KEYS = {
    "listen": 'listen = "127.0.0.1:9108"  # /metrics, /healthz, /readyz',
    "log_format": 'log_format = "json"  # or "text"',
}
STORAGE_KEYS = {
    "url": 'url = "sqlite:///var/lib/meter-collector/collector.db"',
    "password_env": 'password_env = "COLLECTOR_DB_PASSWORD"',
    "spill_path": 'spill_path = "/var/lib/meter-collector/spill.db"',
    "memory_rows": "memory_rows = 100000",
    "attempts_retention_days": "attempts_retention_days = 180",
}


def parse_api(s: Section) -> ApiSettings:
    default = ApiSettings()
    listen = s.get("listen", str, default.listen)
    if not HOSTPORT.match(listen):
        raise s.error("listen", f"{listen!r} is not host:port")
    hours = s.get("session_hours", (int, float), default.session_hours)
    if hours <= 0:
        raise s.error("session_hours", f"must be positive, got {hours}")
    page = s.get("max_page", int, default.max_page)
    if page < 1:
        raise s.error("max_page", f"must be at least 1, got {page}")
    workers = s.get("workers", int, default.workers)
    if not 1 <= workers <= 64:
        raise s.error("workers", f"must be between 1 and 64, got {workers}")
    return ApiSettings(listen, float(hours), s.get("secure_cookies", bool, False), page,
                       s.get("access_log", bool, default.access_log), workers)


def parse_ops(s: Section) -> OpsSettings:
    listen = s.get("listen", str, "")
    if listen and not HOSTPORT.match(listen):
        raise s.error("listen", f"{listen!r} is not host:port")
    fmt = s.get("log_format", str, "text")
    if fmt not in ("text", "json"):
        raise s.error("log_format", f"{fmt!r} must be text or json")
    return OpsSettings(listen, fmt)


def parse_collector(s: Section) -> CollectorSettings:
    tz = s.get("timezone", str, "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise s.error("timezone", f"{tz!r} is not an IANA time zone") from None
    level = s.get("log_level", str, "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise s.error("log_level", f"{level!r} is not DEBUG, INFO, WARNING or ERROR")
    raw = s.get("catch_up", (str, int), "2d")
    catch_up = parse_duration(raw) if raw not in ("0", 0) else timedelta(0)
    if catch_up is None:
        raise s.error("catch_up", f"{raw!r} is not a duration like 2d (or \"0\" for none)")
    return CollectorSettings(tz, s.get("gateway", str, ""), level, catch_up)


def parse_storage(s: Section) -> StorageSettings:
    url = s.get("url", str, DEFAULT_STORAGE)
    if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
        raise s.error("url", "must start with sqlite:// or postgresql://")
    if url.startswith("postgres") and re.search(r"://[^/@]*:[^/@]+@", url):
        raise s.error(
            "url",
            "must not hold the password; put it in an environment variable named by "
            "password_env",
        )
    memory_rows = s.get("memory_rows", int, 100_000)
    if memory_rows < 1:
        raise s.error("memory_rows", "must be at least 1")
    retention = s.get("attempts_retention_days", int, 0)
    if retention < 0:
        raise s.error("attempts_retention_days", "must be 0 (keep all) or a number of days")
    return StorageSettings(url, s.get("password_env", str, ""),
                           s.get("spill_path", str, "collector-spill.db"), memory_rows, retention)
