"""[q1376] and [[concentrator]]: the front end concentrators dial into, and which pn of
which terminal is which meter."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from collector.config.sections import HOSTPORT, REQUIRED, Section, parse_duration
from collector.errors import ConfigError
from protocols.q1376.frame import Address, FrameError

Q1376_KEYS = {
    "listen": 'listen = "0.0.0.0:7100"  # where concentrators connect (TCP)',
    "accept_unknown": "accept_unknown = false  # let terminals not in [[concentrator]] log in",
    "master": "master = 1  # our master-station address (A3), 1–127",
    "password_env": 'password_env = "COLLECTOR_Q1376_PW"  # 32 hex digits of PW for controls',
    "timeout": 'timeout = "30s"  # per request: GPRS round trips take seconds',
    "retries": "retries = 2",
    "poll_every": 'poll_every = "15m"  # how often online terminals are read',
    "offline_after": 'offline_after = "15m"  # no frame for this long: the link is dead',
    "login_within": 'login_within = "60s"  # a connection that never logs in is closed',
    "max_frame": "max_frame = 4096  # bytes a terminal may declare for one frame",
    "max_connections": "max_connections = 5000",
    "max_frames_per_minute": "max_frames_per_minute = 600  # unsolicited, per connection",
    "trace": "trace = false  # log every frame, both directions, as hex",
    "max_collecting": "max_collecting = 256  # terminals read at once",
    "curve_points": "curve_points = 96  # per curve request (a day of 15-minute points)",
    "curves": 'curves = ["forward", "reverse", "voltage", "current"]  # read per day',
}
CURVES = ("forward", "reverse", "voltage", "current")
CONCENTRATOR_KEYS = {
    "address": 'address = "4101-00001"  # area code (4 digits) and terminal number',
    "area": 'area = "T-0412"',
    "name": 'name = "dc-0412"  # optional; the address otherwise',
}


@dataclass(frozen=True, slots=True)
class Concentrator:
    address: str
    """Normalised text of the terminal address, e.g. 4101-00001."""
    area: str = ""
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.address


@dataclass(frozen=True, slots=True)
class Q1376Settings:
    listen: str = ""
    accept_unknown: bool = False
    master: int = 1
    password_env: str = ""
    timeout: timedelta = timedelta(seconds=30)
    retries: int = 2
    poll_every: timedelta = timedelta(minutes=15)
    offline_after: timedelta = timedelta(minutes=15)
    login_within: timedelta = timedelta(seconds=60)
    max_frame: int = 4096
    max_connections: int = 5000
    max_frames_per_minute: int = 600
    max_collecting: int = 256
    trace: bool = False
    curve_points: int = 96
    curves: tuple[str, ...] = CURVES
    concentrators: tuple[Concentrator, ...] = ()
    points: dict[str, tuple[str, int]] = field(default_factory=dict)
    """meter id → (concentrator address, pn)."""

    def terminal_ids(self) -> dict[str, str]:
        """Terminal address → the id its meters, attempts and events carry."""
        return {c.address: c.id for c in self.concentrators}


def normal_address(text: str) -> str:
    return Address.parse(text).text


def parse_concentrator(s: Section) -> Concentrator:
    raw = s.get("address", str, REQUIRED)
    try:
        address = normal_address(raw)
    except FrameError as exc:
        raise s.error("address", exc.message) from None
    return Concentrator(address, s.get("area", str, ""), s.get("name", str, ""))


def _duration(s: Section, key: str, default: timedelta) -> timedelta:
    raw = s.get(key, (str, int), None)
    if raw is None:
        return default
    value = parse_duration(raw)
    if value is None:
        raise s.error(key, f"{raw!r} is not a duration like 30s, 15m or 1h")
    return value


def parse_q1376(s: Section, concentrators: list[Concentrator]) -> Q1376Settings:
    listen = s.get("listen", str, "")
    if listen and not HOSTPORT.match(listen):
        raise s.error("listen", f"{listen!r} is not host:port")
    master = s.get("master", int, 1)
    if not 1 <= master <= 127:
        raise s.error("master", "must be 1–127 (A3 D1–D7)")
    d = Q1376Settings()
    curves = s.get("curves", list, list(CURVES))
    for c in curves:
        if c not in CURVES:
            raise s.error("curves", f"{c!r} is not one of {', '.join(CURVES)}")
    numbers: dict[str, Any] = {}
    for key, low, high in (("retries", 0, 10), ("max_frame", 64, 16392),
                           ("max_connections", 1, 100_000),
                           ("max_frames_per_minute", 1, 100_000), ("curve_points", 1, 255),
                           ("max_collecting", 1, 100_000)):
        value = s.get(key, int, getattr(d, key))
        if not low <= value <= high:
            raise s.error(key, f"must be between {low} and {high}")
        numbers[key] = value
    return Q1376Settings(
        listen=listen, accept_unknown=s.get("accept_unknown", bool, False), master=master,
        password_env=s.get("password_env", str, ""),
        timeout=_duration(s, "timeout", d.timeout),
        poll_every=_duration(s, "poll_every", d.poll_every),
        offline_after=_duration(s, "offline_after", d.offline_after),
        login_within=_duration(s, "login_within", d.login_within), curves=tuple(curves),
        trace=s.get("trace", bool, False),
        concentrators=tuple(concentrators), **numbers)


def meter_point(s: Section, terminals: dict[str, str]) -> tuple[str, int]:
    """A q1376 meter's (concentrator address, pn), checked against [[concentrator]].

    `terminals` maps each concentrator's address and its name to its address, built
    once for the file (a lookup per meter, not a scan of the concentrators)."""
    raw = s.get("concentrator", str, REQUIRED)
    try:
        address = normal_address(raw)
    except FrameError:
        address = raw
    found = terminals.get(address) or terminals.get(raw)
    if found is None:
        known = ", ".join(sorted(set(terminals.values()))) or "none defined"
        raise s.error("concentrator", f"{raw!r} is not a [[concentrator]] (known: {known})")
    pn = s.get("pn", int, REQUIRED)
    if not 1 <= pn <= 2040:
        raise s.error("pn", "must be a measuring point 1–2040")
    return found, pn


def check_points(file: str, points: dict[str, tuple[str, int]]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for meter, key in points.items():
        if key in seen:
            raise ConfigError(file, f"meter {meter}.pn",
                              f"pn {key[1]} of {key[0]} is already meter {seen[key]}")
        seen[key] = meter
