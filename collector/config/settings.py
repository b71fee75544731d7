"""collector.toml → typed settings, with errors that name the file, the key and the fix."""

from __future__ import annotations

import difflib
import fnmatch
import ipaddress
import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from collector.config.billing import BillingSettings, PrepaidSettings
from collector.config.thresholds import Thresholds
from collector.config.vee import VeeSettings
from collector.errors import ConfigError
from model import Meter
from protocols.mqtt import schema

PROTOCOLS = ("dlt645", "modbus-rtu", "modbus-tcp")
PARITIES = ("N", "E", "O")
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
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
class BusConfig:
    name: str
    port: str
    baud: int = 2400
    parity: str = "E"
    latency_ms: float = 500.0
    retries: int = 2


@dataclass(frozen=True, slots=True)
class Schedule:
    """What to read and when. Slots align to the epoch (every) or to local midnight (at)."""

    name: str
    every: timedelta
    quantities: tuple[str, ...] = ()
    at: timedelta | None = None
    frozen_days: int = 0
    clock: bool = False
    events: bool = False
    meters: tuple[str, ...] = ("*",)

    def applies_to(self, meter_id: str) -> bool:
        return any(fnmatch.fnmatchcase(meter_id, pattern) for pattern in self.meters)


@dataclass(frozen=True, slots=True)
class ModbusSettings:
    profile_dirs: tuple[str, ...] = ()
    host_concurrency: int = 4
    """Requests in flight at once to one TCP host (a gateway with many unit ids)."""
    timeout_ms: float = 1000.0
    retries: int = 1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class MqttSettings:
    role: str = ""
    """"gateway" (forward the local outbox), "headend" (ingest), or "" (MQTT off)."""
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password_env: str = ""
    client_id: str = ""
    topic_prefix: str = "mc/v1"
    share_group: str = "headend"
    session_expiry_s: int = 7 * 86400
    batch_size: int = 500
    outbox_max_rows: int = 1_000_000
    heartbeat_s: float = 60.0
    tls: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    allow_insecure: bool = False
    """Allow a non-loopback broker without TLS or credentials (warned at every start)."""
    accept_past: timedelta = timedelta(days=400)
    accept_future: timedelta = timedelta(days=1)

    def insecure_reasons(self) -> list[str]:
        """What makes this connection readable or forgeable by others on the network."""
        if is_loopback(self.host):
            return []
        reasons = []
        if not self.tls:
            reasons.append("without TLS")
        if not self.username:
            reasons.append("without credentials")
        return reasons

    @property
    def limits(self) -> schema.Limits:
        return schema.Limits(max_age=self.accept_past, max_ahead=self.accept_future)


@dataclass(frozen=True, slots=True)
class FlagSettings:
    enabled: bool = True
    auto_time_sync: bool = False
    """Broadcast a time sync on the bus of a DL/T 645 meter found drifting."""
    daily_at: timedelta = timedelta(minutes=30)
    """Local time of the daily pass (theft and line loss over the trailing baseline)."""
    thresholds: Thresholds = field(default_factory=Thresholds)


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


@dataclass(frozen=True, slots=True)
class Settings:
    source: str
    collector: CollectorSettings = field(default_factory=CollectorSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    buses: tuple[BusConfig, ...] = ()
    meters: tuple[Meter, ...] = ()
    schedules: tuple[Schedule, ...] = ()
    modbus: ModbusSettings = field(default_factory=ModbusSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    flags: FlagSettings = field(default_factory=FlagSettings)
    ops: OpsSettings = field(default_factory=OpsSettings)
    vee: VeeSettings = field(default_factory=VeeSettings)
    billing: BillingSettings = field(default_factory=BillingSettings)
    prepaid: PrepaidSettings = field(default_factory=PrepaidSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

    def bus(self, name: str) -> BusConfig:
        return next(b for b in self.buses if b.name == name)


# --- helpers ---------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)\s*$")
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
_OBIS = re.compile(r"^\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}$")
_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def parse_duration(text: Any) -> timedelta | None:
    if isinstance(text, int) and not isinstance(text, bool) and text > 0:
        return timedelta(seconds=text)
    if isinstance(text, str) and (m := _DURATION.match(text)):
        seconds = float(m.group(1)) * _UNITS[m.group(2)]
        return timedelta(seconds=seconds) if seconds > 0 else None
    return None


class _Section:
    """Typed access to one TOML table that reports mistakes with the full key path."""

    def __init__(self, file: str, path: str, table: Any, known: dict[str, str]) -> None:
        self.file = file
        self.path = path
        if not isinstance(table, dict):
            raise ConfigError(file, path, f"must be a table, got {type(table).__name__}")
        self.table = table
        for key in table:
            if key not in known:
                close = difflib.get_close_matches(key, list(known), n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                example = known[close[0]] if close else ""
                raise ConfigError(file, f"{path}.{key}", f"unknown key{hint}", example)
        self.known = known

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.file, f"{self.path}.{key}", problem, self.known.get(key, ""))

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        if key not in self.table:
            if default is _REQUIRED:
                raise self.error(key, "is required")
            return default
        value = self.table[key]
        if isinstance(value, bool) and kind is not bool and not (
            isinstance(kind, tuple) and bool in kind
        ):
            raise self.error(key, f"must be {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            raise self.error(key, f"must be {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def numbers(self, defaults: Any, names: Iterable[str], *, zero_ok: bool,
                exempt: tuple[str, ...] = ()) -> dict[str, Any]:
        """Each numeric setting, typed like its default: refused below zero (at zero
        too unless `zero_ok`), except `exempt`, which may take any value."""
        values: dict[str, Any] = {}
        for name in names:
            default = getattr(defaults, name)
            kind: type | tuple[type, ...] = int if isinstance(default, int) else (int, float)
            value = self.get(name, kind, default)
            if name not in exempt and (value < 0 if zero_ok else value <= 0):
                raise self.error(name, "must not be negative" if zero_ok else "must be positive")
            values[name] = type(default)(value)
        return values

    def dates(self, key: str) -> tuple[date, ...]:
        out = []
        for i, text in enumerate(self.get(key, list, [])):
            try:
                out.append(date.fromisoformat(text))
            except (TypeError, ValueError):
                raise self.error(key, f"item {i} ({text!r}) is not a date YYYY-MM-DD") from None
        return tuple(out)


_REQUIRED = object()


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a table"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


# --- sections --------------------------------------------------------------------------

_COLLECTOR_KEYS = {
    "timezone": 'timezone = "Asia/Shanghai"',
    "gateway": 'gateway = "gw-017"',
    "log_level": 'log_level = "INFO"',
    "catch_up": 'catch_up = "2d"  # re-read slots missed while down, from meter memory',
}
_API_KEYS = {
    "listen": 'listen = "127.0.0.1:8080"  # collector api: HTTP API and web view',
    "session_hours": "session_hours = 12.0",
    "secure_cookies": "secure_cookies = true  # behind a TLS proxy",
    "max_page": "max_page = 10000",
    "access_log": "access_log = false  # a proxy in front logs requests",
    "workers": "workers = 2  # API processes on one port",
}
_OPS_KEYS = {
    "listen": 'listen = "127.0.0.1:9108"  # /metrics, /healthz, /readyz',
    "log_format": 'log_format = "json"  # or "text"',
}
_STORAGE_KEYS = {
    "url": 'url = "sqlite:///var/lib/meter-collector/collector.db"',
    "password_env": 'password_env = "COLLECTOR_DB_PASSWORD"',
    "spill_path": 'spill_path = "/var/lib/meter-collector/spill.db"',
    "memory_rows": "memory_rows = 100000",
    "attempts_retention_days": "attempts_retention_days = 180",
}
_BUS_KEYS = {
    "name": 'name = "bus1"',
    "port": 'port = "/dev/ttyUSB0"',
    "baud": "baud = 2400",
    "parity": 'parity = "E"',
    "latency_ms": "latency_ms = 500",
    "retries": "retries = 2",
}
_METER_KEYS = {
    "id": 'id = "m0001"',
    "protocol": 'protocol = "dlt645"',
    "bus": 'bus = "bus1"',
    "address": 'address = "000000000001"',
    "model": 'model = "sdm630"  # the Modbus profile; informative for DL/T 645',
    "multiplier": "multiplier = 40.0  # CT ratio × PT ratio",
    "area": 'area = "T-0412"',
    "exporter": "exporter = true  # PV customer: export is legitimate",
    "area_meter": "area_meter = true  # the transformer's own meter",
    "phases": "phases = 3",
}
_SCHEDULE_KEYS = {
    "name": 'name = "interval"',
    "every": 'every = "15m"',
    "at": 'at = "00:05"  # local time, for daily schedules',
    "quantities": 'quantities = ["1-0:1.8.0", "1-0:2.8.0", "1-0:32.7.0"]',
    "frozen_days": "frozen_days = 3",
    "clock": "clock = true",
    "events": "events = true",
    "meters": 'meters = ["*"]',
}
_MODBUS_KEYS = {
    "profile_dirs": 'profile_dirs = ["/etc/meter-collector/profiles"]',
    "host_concurrency": "host_concurrency = 4",
    "timeout_ms": "timeout_ms = 1000",
    "retries": "retries = 1",
}
_MQTT_KEYS = {
    "role": 'role = "gateway"  # or "headend"',
    "host": 'host = "mqtt.example.net"',
    "port": "port = 8883",
    "username": 'username = "gw-001"',
    "password_env": 'password_env = "COLLECTOR_MQTT_PASSWORD"',
    "client_id": 'client_id = "headend-1"',
    "topic_prefix": 'topic_prefix = "mc/v1"',
    "share_group": 'share_group = "headend"',
    "session_expiry_s": "session_expiry_s = 604800",
    "batch_size": "batch_size = 500",
    "outbox_max_rows": "outbox_max_rows = 1000000",
    "heartbeat_s": "heartbeat_s = 60",
    "tls": "tls = true",
    "ca_file": 'ca_file = "/etc/ssl/certs/ca-certificates.crt"',
    "cert_file": 'cert_file = "/etc/meter-collector/client.crt"',
    "key_file": 'key_file = "/etc/meter-collector/client.key"',
    "allow_insecure": "allow_insecure = true  # only on a network you trust",
    "accept_past": 'accept_past = "400d"  # oldest timestamp a payload may carry',
    "accept_future": 'accept_future = "1d"  # how far ahead of now a timestamp may lie',
}
_FLAG_KEYS = {
    "enabled": "enabled = true",
    "auto_time_sync": "auto_time_sync = true",
    "daily_at": 'daily_at = "00:30"',
    **{name: f"{name} = {getattr(Thresholds(), name)}" for name in Thresholds.names()},
}
_VEE_KEYS = {
    "enabled": "enabled = true",
    "holidays": 'holidays = ["2026-10-01", "2026-10-02"]',
    **{name: f"{name} = {getattr(VeeSettings(), name)}" for name in VeeSettings.numeric_names()},
}
_BILLING_KEYS = {
    "tariff_dirs": 'tariff_dirs = ["/etc/meter-collector/tariffs"]',
    "segments": 'segments = { S01 = 1, S25 = 25 }  # reading segment = reading day',
    **{name: f"{name} = {getattr(BillingSettings(), name)}"
       for name in BillingSettings.numeric_names()},
}
_PREPAID_KEYS = {
    "enabled": "enabled = true",
    "alert_days": "alert_days = 7.0",
    "disconnect_below": "disconnect_below = 0.0",
    "grace": 'grace = "24h"',
    "protected_hours": 'protected_hours = "20:00-08:00"  # never trip in this local window',
    "protected_weekends": "protected_weekends = true",
    "holidays": 'holidays = ["2026-10-01"]',
    "operator": 'operator = "00000001"',
    "password_env": 'password_env = "COLLECTOR_METER_PASSWORD"',
}
_TOP_KEYS = {
    "api": "[api]",
    "billing": "[billing]",
    "prepaid": "[prepaid]",
    "flags": "[flags]",
    "vee": "[vee]",
    "ops": "[ops]",
    "mqtt": "[mqtt]",
    "collector": "[collector]",
    "storage": "[storage]",
    "modbus": "[modbus]",
    "bus": "[[bus]]",
    "meter": "[[meter]]",
    "schedule": "[[schedule]]",
}


def load(path: str | Path) -> Settings:
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(file, "(file)", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(file, "(file)", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "(syntax)", str(exc)) from None
    return parse(data, file)


def parse(data: dict[str, Any], file: str = "collector.toml") -> Settings:
    top = _Section(file, "(top level)", data, _TOP_KEYS)
    collector = _parse_collector(_Section(file, "collector", data.get("collector", {}),
                                          _COLLECTOR_KEYS))
    storage = _parse_storage(_Section(file, "storage", data.get("storage", {}), _STORAGE_KEYS))
    modbus = _parse_modbus(_Section(file, "modbus", data.get("modbus", {}), _MODBUS_KEYS))
    mqtt = _parse_mqtt(_Section(file, "mqtt", data.get("mqtt", {}), _MQTT_KEYS))
    flags = _parse_flags(_Section(file, "flags", data.get("flags", {}), _FLAG_KEYS))
    ops = _parse_ops(_Section(file, "ops", data.get("ops", {}), _OPS_KEYS))
    api = _parse_api(_Section(file, "api", data.get("api", {}), _API_KEYS))
    vee = _parse_vee(_Section(file, "vee", data.get("vee", {}), _VEE_KEYS))
    billing = _parse_billing(_Section(file, "billing", data.get("billing", {}), _BILLING_KEYS))
    prepaid = _parse_prepaid(_Section(file, "prepaid", data.get("prepaid", {}), _PREPAID_KEYS))
    buses = [
        _parse_bus(_Section(file, f"bus[{i}]", b, _BUS_KEYS))
        for i, b in enumerate(_array(top, "bus"))
    ]
    _unique(file, "bus", [b.name for b in buses])
    bus_names = {b.name for b in buses}
    meters = [
        _parse_meter(_Section(file, f"meter[{i}]", m, _METER_KEYS), bus_names, modbus)
        for i, m in enumerate(_array(top, "meter"))
    ]
    _unique(file, "meter", [m.id for m in meters])
    seen: dict[tuple[str, str], str] = {}
    for i, m in enumerate(meters):
        if m.protocol in ("dlt645", "modbus-rtu", "modbus-tcp"):
            key = (m.bus, f"{m.protocol}:{m.address}")
            if key in seen:
                raise ConfigError(
                    file, f"meter[{i}].address",
                    f"{m.address} is already used by meter {seen[key]} on bus {m.bus}",
                )
            seen[key] = m.id
    schedules = [
        _parse_schedule(_Section(file, f"schedule[{i}]", s, _SCHEDULE_KEYS))
        for i, s in enumerate(_array(top, "schedule"))
    ]
    _unique(file, "schedule", [s.name for s in schedules])
    if mqtt.role == "gateway" and not collector.gateway:
        raise ConfigError(file, "collector.gateway", "a gateway needs an id for its topics",
                          'gateway = "gw-001"')
    if mqtt.role == "gateway" and not storage.url.startswith("sqlite://"):
        raise ConfigError(file, "storage.url", "a gateway keeps its outbox in SQLite",
                          'url = "sqlite:///var/lib/meter-collector/collector.db"')
    return Settings(file, collector, storage, tuple(buses), tuple(meters), tuple(schedules),
                    modbus, mqtt, flags, ops, vee, billing, prepaid, api)


def _parse_api(s: _Section) -> ApiSettings:
    default = ApiSettings()
    listen = s.get("listen", str, default.listen)
    if not _HOSTPORT.match(listen):
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


def _parse_ops(s: _Section) -> OpsSettings:
    listen = s.get("listen", str, "")
    if listen and not _HOSTPORT.match(listen):
        raise s.error("listen", f"{listen!r} is not host:port")
    fmt = s.get("log_format", str, "text")
    if fmt not in ("text", "json"):
        raise s.error("log_format", f"{fmt!r} must be text or json")
    return OpsSettings(listen, fmt)


def _parse_flags(s: _Section) -> FlagSettings:
    at_raw = s.get("daily_at", str, "00:30")
    m = _HHMM.match(at_raw)
    if not m:
        raise s.error("daily_at", f"{at_raw!r} is not a local time HH:MM")
    values = s.numbers(Thresholds(), Thresholds.names(), zero_ok=True,
                       exempt=("negative_loss_rate", "shape_corr"))
    if not -1.0 <= values["shape_corr"] <= 1.0:
        raise s.error("shape_corr", f"a correlation runs from -1 to 1, got {values['shape_corr']}")
    return FlagSettings(s.get("enabled", bool, True), s.get("auto_time_sync", bool, False),
                        timedelta(hours=int(m.group(1)), minutes=int(m.group(2))),
                        Thresholds(**values))


def _parse_vee(s: _Section) -> VeeSettings:
    values = s.numbers(VeeSettings(), VeeSettings.numeric_names(), zero_ok=False,
                       exempt=("backward_kwh",))
    return VeeSettings(s.get("enabled", bool, True), holidays=s.dates("holidays"), **values)


def _parse_billing(s: _Section) -> BillingSettings:
    dirs = s.get("tariff_dirs", list, [])
    if not all(isinstance(d, str) for d in dirs):
        raise s.error("tariff_dirs", "must list directories as strings")
    for d in dirs:
        if not Path(d).is_dir():
            raise s.error("tariff_dirs", f"{d} is not a directory")
    segments = s.get("segments", dict, {})
    for name, day in segments.items():
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 28:
            raise s.error("segments", f"segment {name!r}: the reading day must be 1–28 "
                          f"(every month has it), got {day!r}")
    values = s.numbers(BillingSettings(), BillingSettings.numeric_names(), zero_ok=False)
    if not 1 <= values["default_reading_day"] <= 28:
        raise s.error("default_reading_day", "must be 1–28")
    if values["review_low"] >= 1 or values["review_high"] <= 1:
        raise s.error("review_low" if values["review_low"] >= 1 else "review_high",
                      "review_low must be below 1 and review_high above 1")
    if values["review_months"] < 3:
        raise s.error("review_months", "must be at least 3 (the trailing history)")
    return BillingSettings(tuple(dirs), dict(segments), **values)


def _parse_prepaid(s: _Section) -> PrepaidSettings:
    defaults = PrepaidSettings()
    grace = parse_duration(s.get("grace", (str, int), "24h"))
    if grace is None:
        raise s.error("grace", "is not a duration like 24h or 90m")
    window = s.get("protected_hours", str, "20:00-08:00")
    ends = [_HHMM.match(part.strip()) for part in window.split("-")]
    if len(ends) != 2 or not all(ends):
        raise s.error("protected_hours", f"{window!r} is not HH:MM-HH:MM")
    start, end = (timedelta(hours=int(m.group(1)), minutes=int(m.group(2)))
                  for m in ends if m is not None)
    holidays = s.dates("holidays")
    operator = s.get("operator", str, defaults.operator)
    if not re.fullmatch(r"\d{8}", operator):
        raise s.error("operator", f"{operator!r} must be 8 digits")
    alert_days = s.get("alert_days", (int, float), defaults.alert_days)
    if alert_days <= 0:
        raise s.error("alert_days", "must be positive")
    return PrepaidSettings(
        s.get("enabled", bool, True), float(alert_days),
        float(s.get("disconnect_below", (int, float), defaults.disconnect_below)), grace,
        start, end, s.get("protected_weekends", bool, True), holidays, operator,
        s.get("password_env", str, defaults.password_env))


def _parse_mqtt(s: _Section) -> MqttSettings:
    role = s.get("role", str, "")
    if role not in ("", "gateway", "headend"):
        raise s.error("role", f"{role!r} must be gateway or headend")
    port = s.get("port", int, 1883)
    if not 1 <= port <= 65535:
        raise s.error("port", "must be 1..65535")
    expiry = s.get("session_expiry_s", int, 7 * 86400)
    batch = s.get("batch_size", int, 500)
    if not 1 <= batch <= 10_000:
        raise s.error("batch_size", "must be 1..10000 (one payload's readings)")
    outbox = s.get("outbox_max_rows", int, 1_000_000)
    if outbox < 1000:
        raise s.error("outbox_max_rows", "must be at least 1000")
    prefix = s.get("topic_prefix", str, "mc/v1")
    if not prefix or "+" in prefix or "#" in prefix:
        raise s.error("topic_prefix", "must be a plain topic path without wildcards")
    tls = s.get("tls", bool, False)
    for key in ("ca_file", "cert_file", "key_file"):
        path = s.get(key, str, "")
        if path and not Path(path).exists():
            raise s.error(key, f"{path} does not exist")
    windows: dict[str, timedelta] = {}
    for key, default in (("accept_past", "400d"), ("accept_future", "1d")):
        raw = s.get(key, (str, int), default)
        window = parse_duration(raw)
        if window is None:
            raise s.error(key, f"{raw!r} is not a duration like 1d or 400d")
        windows[key] = window
    settings = MqttSettings(
        role, s.get("host", str, "127.0.0.1"), port, s.get("username", str, ""),
        s.get("password_env", str, ""), s.get("client_id", str, ""), prefix,
        s.get("share_group", str, "headend"), expiry, batch, outbox,
        float(s.get("heartbeat_s", (int, float), 60)), tls, s.get("ca_file", str, ""),
        s.get("cert_file", str, ""), s.get("key_file", str, ""),
        s.get("allow_insecure", bool, False), windows["accept_past"],
        windows["accept_future"])
    insecure = settings.insecure_reasons()
    if role and insecure and not settings.allow_insecure:
        raise ConfigError(
            s.file, "mqtt.host",
            f"connecting to {settings.host} {' and '.join(insecure)} is refused: anyone on "
            "the network could read or forge meter data",
            'tls = true, username = "gw-001" and password_env = "COLLECTOR_MQTT_PASSWORD"; '
            "or allow_insecure = true on a network you trust")
    return settings


def _parse_modbus(s: _Section) -> ModbusSettings:
    dirs = s.get("profile_dirs", list, [])
    if not all(isinstance(d, str) for d in dirs):
        raise s.error("profile_dirs", "must list directories as strings")
    concurrency = s.get("host_concurrency", int, 4)
    if not 1 <= concurrency <= 64:
        raise s.error("host_concurrency", "must be between 1 and 64")
    timeout = float(s.get("timeout_ms", (int, float), 1000))
    if not 10 <= timeout <= 60_000:
        raise s.error("timeout_ms", "must be between 10 and 60000")
    retries = s.get("retries", int, 1)
    if not 0 <= retries <= 10:
        raise s.error("retries", "must be between 0 and 10")
    return ModbusSettings(tuple(dirs), concurrency, timeout, retries)


def _array(top: _Section, key: str) -> list[Any]:
    value = top.table.get(key, [])
    if not isinstance(value, list):
        raise top.error(key, f"must be an array of tables, written [[{key}]]")
    return value


def _unique(file: str, what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for i, name in enumerate(names):
        if name in seen:
            key = "id" if what == "meter" else "name"
            raise ConfigError(file, f"{what}[{i}].{key}", f"{name!r} is used twice")
        seen.add(name)


def _parse_collector(s: _Section) -> CollectorSettings:
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


def _parse_storage(s: _Section) -> StorageSettings:
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


def _parse_bus(s: _Section) -> BusConfig:
    name = s.get("name", str, _REQUIRED)
    port = s.get("port", str, _REQUIRED)
    baud = s.get("baud", int, 2400)
    if baud not in BAUDS:
        raise s.error("baud", f"{baud} is not a serial rate ({', '.join(map(str, BAUDS))})")
    parity = s.get("parity", str, "E").upper()
    if parity not in PARITIES:
        raise s.error("parity", f"{parity!r} must be N, E or O")
    latency = float(s.get("latency_ms", (int, float), 500))
    if not 0 <= latency <= 10_000:
        raise s.error("latency_ms", "must be between 0 and 10000")
    retries = s.get("retries", int, 2)
    if not 0 <= retries <= 10:
        raise s.error("retries", "must be between 0 and 10")
    return BusConfig(name, port, baud, parity, latency, retries)


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def _parse_meter(s: _Section, buses: set[str], modbus: ModbusSettings) -> Meter:
    meter_id = s.get("id", str, _REQUIRED)
    if not meter_id.strip():
        raise s.error("id", "must not be empty")
    protocol = s.get("protocol", str, "dlt645")
    if protocol not in PROTOCOLS:
        raise s.error("protocol", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
    bus = s.get("bus", str, _REQUIRED)
    if protocol == "modbus-tcp":
        if not _HOSTPORT.match(bus):
            raise ConfigError(s.file, f"{s.path}.bus",
                              f"{bus!r}: a modbus-tcp meter's bus is its host:port",
                              'bus = "10.20.0.7:502"')
    elif bus not in buses:
        known = ", ".join(sorted(buses)) or "none defined"
        raise s.error("bus", f"{bus!r} is not a [[bus]] name (known: {known})")
    address = str(s.get("address", (str, int), _REQUIRED))
    if protocol == "dlt645":
        address = address.zfill(12)
        if len(address) != 12 or not address.isdigit():
            raise s.error("address", f"{address!r} must be 12 decimal digits")
    else:
        if not address.isdigit() or not 1 <= int(address) <= 247:
            raise ConfigError(s.file, f"{s.path}.address",
                              f"{address!r}: a Modbus unit id is 1..247", "address = 1")
        model = s.get("model", str, "")
        if not model:
            raise ConfigError(s.file, f"{s.path}.model",
                              "a Modbus meter needs its profile name", 'model = "sdm630"')
        from protocols.modbus.profile import ProfileError, find_profile

        try:
            find_profile(model, modbus.profile_dirs)
        except ProfileError as exc:
            raise ConfigError(s.file, f"{s.path}.model", str(exc)) from None
    multiplier = float(s.get("multiplier", (int, float), 1.0))
    if multiplier <= 0:
        raise s.error("multiplier", "must be positive")
    phases = s.get("phases", int, 1)
    if phases not in (1, 3):
        raise s.error("phases", "must be 1 or 3")
    return Meter(
        id=meter_id,
        protocol=protocol,
        bus=bus,
        address=address,
        model=s.get("model", str, ""),
        multiplier=multiplier,
        area=s.get("area", str, ""),
        exporter=s.get("exporter", bool, False),
        is_area_meter=s.get("area_meter", bool, False),
        phases=phases,
    )


def _parse_schedule(s: _Section) -> Schedule:
    name = s.get("name", str, _REQUIRED)
    every_raw = s.get("every", (str, int), "15m")
    every = parse_duration(every_raw)
    if every is None:
        raise s.error("every", f"{every_raw!r} is not a duration like 15m, 1h or 1d")
    at = None
    at_raw = s.get("at", str, None)
    if at_raw is not None:
        m = _HHMM.match(at_raw)
        if not m:
            raise s.error("at", f"{at_raw!r} is not a local time HH:MM")
        at = timedelta(hours=int(m.group(1)), minutes=int(m.group(2)))
        if every != timedelta(days=1):
            raise s.error("at", 'only applies to daily schedules (every = "1d")')
    quantities = tuple(s.get("quantities", list, []))
    for q in quantities:
        if not isinstance(q, str) or not _OBIS.match(q):
            raise s.error("quantities", f"{q!r} is not an OBIS code like 1-0:1.8.0")
    frozen = s.get("frozen_days", int, 0)
    if not 0 <= frozen <= 62:
        raise s.error("frozen_days", "must be between 0 and 62 (what meters keep)")
    meters = tuple(s.get("meters", list, ["*"]))
    if not all(isinstance(m, str) for m in meters):
        raise s.error("meters", "must list meter ids or patterns as strings")
    clock = s.get("clock", bool, False)
    events = s.get("events", bool, False)
    if not (quantities or frozen or clock or events):
        raise s.error("quantities", "the schedule reads nothing")
    return Schedule(name, every, quantities, at, frozen, clock, events, meters)
