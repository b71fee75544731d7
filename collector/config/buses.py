"""[[bus]], [[meter]], [[schedule]] and [modbus] of collector.toml: what is read, on
which line, and when."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import timedelta

from collector.config.sections import HHMM, HOSTPORT, OBIS, REQUIRED, Section, parse_duration
from collector.errors import ConfigError
from model import Meter

PROTOCOLS = ("dlt645", "modbus-rtu", "modbus-tcp", "q1376")
PARITIES = ("N", "E", "O")
BAUDS = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)


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


BUS_KEYS = {
    "name": 'name = "bus1"',
    "port": 'port = "/dev/ttyUSB0"',
    "baud": "baud = 2400",
    "parity": 'parity = "E"',
    "latency_ms": "latency_ms = 500",
    "retries": "retries = 2",
}
METER_KEYS = {
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
    "concentrator": 'concentrator = "4101-00001"  # protocol = "q1376": its terminal',
    "pn": "pn = 1  # protocol = \"q1376\": its measuring point on the terminal",
}
SCHEDULE_KEYS = {
    "name": 'name = "interval"',
    "every": 'every = "15m"',
    "at": 'at = "00:05"  # local time, for daily schedules',
    "quantities": 'quantities = ["1-0:1.8.0", "1-0:2.8.0", "1-0:32.7.0"]',
    "frozen_days": "frozen_days = 3",
    "clock": "clock = true",
    "events": "events = true",
    "meters": 'meters = ["*"]',
}
MODBUS_KEYS = {
    "profile_dirs": 'profile_dirs = ["/etc/meter-collector/profiles"]',
    "host_concurrency": "host_concurrency = 4",
    "timeout_ms": "timeout_ms = 1000",
    "retries": "retries = 1",
}


def parse_modbus(s: Section) -> ModbusSettings:
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


def parse_bus(s: Section) -> BusConfig:
    name = s.get("name", str, REQUIRED)
    port = s.get("port", str, REQUIRED)
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


def parse_meter(s: Section, buses: set[str], modbus: ModbusSettings,
                concentrators: dict[str, str] | None = None) -> Meter:
    """`concentrators` maps a q1376 meter's id to its terminal, which is its bus."""
    meter_id = s.get("id", str, REQUIRED)
    if not meter_id.strip():
        raise s.error("id", "must not be empty")
    protocol = s.get("protocol", str, "dlt645")
    if protocol not in PROTOCOLS:
        raise s.error("protocol", f"{protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if protocol == "q1376":
        # Behind a concentrator: no bus of ours, and the address (the meter's own, to
        # check the terminal's point table against) is optional.
        bus = (concentrators or {}).get(meter_id, "")
        address = str(s.get("address", (str, int), ""))
        if address:
            address = _meter_address(s, address)
    else:
        for key in ("concentrator", "pn"):
            if key in s.table:
                raise s.error(key, 'only applies to protocol = "q1376"')
        bus, address = _line(s, protocol, buses, modbus)
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


def _meter_address(s: Section, address: str) -> str:
    address = address.zfill(12)
    if len(address) != 12 or not address.isdigit():
        raise s.error("address", f"{address!r} must be 12 decimal digits")
    return address


def _line(s: Section, protocol: str, buses: set[str],
          modbus: ModbusSettings) -> tuple[str, str]:
    """The bus (or TCP host) and address of a meter we reach ourselves."""
    bus = s.get("bus", str, REQUIRED)
    if protocol == "modbus-tcp":
        if not HOSTPORT.match(bus):
            raise ConfigError(s.file, f"{s.path}.bus",
                              f"{bus!r}: a modbus-tcp meter's bus is its host:port",
                              'bus = "10.20.0.7:502"')
    elif bus not in buses:
        known = ", ".join(sorted(buses)) or "none defined"
        raise s.error("bus", f"{bus!r} is not a [[bus]] name (known: {known})")
    address = str(s.get("address", (str, int), REQUIRED))
    if protocol == "dlt645":
        return bus, _meter_address(s, address)
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
    return bus, address


def parse_schedule(s: Section) -> Schedule:
    name = s.get("name", str, REQUIRED)
    every_raw = s.get("every", (str, int), "15m")
    every = parse_duration(every_raw)
    if every is None:
        raise s.error("every", f"{every_raw!r} is not a duration like 15m, 1h or 1d")
    at = None
    at_raw = s.get("at", str, None)
    if at_raw is not None:
        m = HHMM.match(at_raw)
        if not m:
            raise s.error("at", f"{at_raw!r} is not a local time HH:MM")
        at = timedelta(hours=int(m.group(1)), minutes=int(m.group(2)))
        if every != timedelta(days=1):
            raise s.error("at", 'only applies to daily schedules (every = "1d")')
    quantities = tuple(s.get("quantities", list, []))
    for q in quantities:
        if not isinstance(q, str) or not OBIS.match(q):
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
