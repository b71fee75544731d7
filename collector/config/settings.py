"""collector.toml → typed settings, with errors that name the file, the key and the fix.

Each section is read in a module of its own (service, buses, mqtt, flags, vee, billing);
this one puts them together and checks what spans sections. The section types are
importable from here, where the rest of the collector has always found them."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from collector.config.billing import (
    BILLING_KEYS,
    PREPAID_KEYS,
    BillingSettings,
    PrepaidSettings,
    parse_billing,
    parse_prepaid,
)
from collector.config.buses import (
    BUS_KEYS,
    METER_KEYS,
    MODBUS_KEYS,
    SCHEDULE_KEYS,
    BusConfig,
    ModbusSettings,
    Schedule,
    parse_bus,
    parse_meter,
    parse_modbus,
    parse_schedule,
)
from collector.config.flags import FLAG_KEYS, FlagSettings, parse_flags
from collector.config.mqtt import MQTT_KEYS, MqttSettings, parse_mqtt
from collector.config.q1376 import (
    CONCENTRATOR_KEYS,
    Q1376_KEYS,
    Q1376Settings,
    check_points,
    meter_point,
    parse_concentrator,
    parse_q1376,
)
from collector.config.sections import Section, array_of, unique_names
from collector.config.service import (
    API_KEYS,
    COLLECTOR_KEYS,
    OPS_KEYS,
    STORAGE_KEYS,
    ApiSettings,
    CollectorSettings,
    OpsSettings,
    StorageSettings,
    parse_api,
    parse_collector,
    parse_ops,
    parse_storage,
)
from collector.config.vee import VEE_KEYS, VeeSettings, parse_vee
from collector.errors import ConfigError
from model import Meter


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
    q1376: Q1376Settings = field(default_factory=Q1376Settings)

    def bus(self, name: str) -> BusConfig:
        return next(b for b in self.buses if b.name == name)


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
    "q1376": "[q1376]",
    "concentrator": "[[concentrator]]",
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
    top = Section(file, "(top level)", data, _TOP_KEYS)
    collector = parse_collector(Section(file, "collector", data.get("collector", {}),
                                          COLLECTOR_KEYS))
    storage = parse_storage(Section(file, "storage", data.get("storage", {}), STORAGE_KEYS))
    modbus = parse_modbus(Section(file, "modbus", data.get("modbus", {}), MODBUS_KEYS))
    mqtt = parse_mqtt(Section(file, "mqtt", data.get("mqtt", {}), MQTT_KEYS))
    flags = parse_flags(Section(file, "flags", data.get("flags", {}), FLAG_KEYS))
    ops = parse_ops(Section(file, "ops", data.get("ops", {}), OPS_KEYS))
    api = parse_api(Section(file, "api", data.get("api", {}), API_KEYS))
    vee = parse_vee(Section(file, "vee", data.get("vee", {}), VEE_KEYS))
    billing = parse_billing(Section(file, "billing", data.get("billing", {}), BILLING_KEYS))
    prepaid = parse_prepaid(Section(file, "prepaid", data.get("prepaid", {}), PREPAID_KEYS))
    buses = [
        parse_bus(Section(file, f"bus[{i}]", b, BUS_KEYS))
        for i, b in enumerate(array_of(top, "bus"))
    ]
    unique_names(file, "bus", [b.name for b in buses])
    bus_names = {b.name for b in buses}
    concentrators = [
        parse_concentrator(Section(file, f"concentrator[{i}]", c, CONCENTRATOR_KEYS))
        for i, c in enumerate(array_of(top, "concentrator"))
    ]
    unique_names(file, "concentrator", [c.address for c in concentrators])
    by_address = {c.address: c for c in concentrators}
    terminals = {**{c.name: c.address for c in concentrators if c.name},
                 **{c.address: c.address for c in concentrators}}
    points: dict[str, tuple[str, int]] = {}
    terminal_of: dict[str, str] = {}
    meters = []
    for i, m in enumerate(array_of(top, "meter")):
        section = Section(file, f"meter[{i}]", m, METER_KEYS)
        if isinstance(m, dict) and m.get("protocol") == "q1376":
            point = points[str(m.get("id"))] = meter_point(section, terminals)
            terminal_of[str(m.get("id"))] = by_address[point[0]].id
        meter = parse_meter(section, bus_names, modbus, terminal_of)
        if meter.id in points:
            # Behind a concentrator: its terminal is the meter's bus and gateway, and
            # the terminal's area is the meter's unless the meter says otherwise.
            home = by_address[points[meter.id][0]]
            meter = replace(meter, gateway=home.id, area=meter.area or home.area)
        meters.append(meter)
    unique_names(file, "meter", [m.id for m in meters])
    check_points(file, points)
    q1376 = parse_q1376(Section(file, "q1376", data.get("q1376", {}), Q1376_KEYS),
                        concentrators)
    q1376 = replace(q1376, points=points)
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
        parse_schedule(Section(file, f"schedule[{i}]", s, SCHEDULE_KEYS))
        for i, s in enumerate(array_of(top, "schedule"))
    ]
    unique_names(file, "schedule", [s.name for s in schedules])
    if mqtt.role == "gateway" and not collector.gateway:
        raise ConfigError(file, "collector.gateway", "a gateway needs an id for its topics",
                          'gateway = "gw-001"')
    if mqtt.role == "gateway" and not storage.url.startswith("sqlite://"):
        raise ConfigError(file, "storage.url", "a gateway keeps its outbox in SQLite",
                          'url = "sqlite:///var/lib/meter-collector/collector.db"')
    return Settings(file, collector, storage, tuple(buses), tuple(meters), tuple(schedules),
                    modbus, mqtt, flags, ops, vee, billing, prepaid, api, q1376)


__all__ = [
    "ApiSettings",
    "BillingSettings",
    "BusConfig",
    "CollectorSettings",
    "FlagSettings",
    "ModbusSettings",
    "MqttSettings",
    "OpsSettings",
    "PrepaidSettings",
    "Q1376Settings",
    "Schedule",
    "Settings",
    "StorageSettings",
    "VeeSettings",
    "load",
    "parse",
]
