"""Wire settings into a running collector: store, buses, protocol readers, scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Callable
from datetime import datetime

from collector.clock import Clock, RealClock
from collector.config import BusConfig, Settings
from collector.errors import ConfigError
from collector.pipeline import (
    CollectionResult,
    Dlt645Reader,
    MeterReader,
    ModbusReader,
    ProtocolRouter,
)
from collector.scheduler import RunStats, Scheduler
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.errors import TransportError
from protocols.modbus.client import ModbusRtuClient, ModbusTcpHost
from protocols.modbus.profile import find_profile
from protocols.serial import LineSettings, SerialBus
from storage import Store, open_store

log = logging.getLogger(__name__)


def store_for(settings: Settings) -> Store:
    password = None
    env = settings.storage.password_env
    if env:
        password = os.environ.get(env)
        if password is None:
            raise ConfigError(
                settings.source, "storage.password_env",
                f"environment variable {env} is not set", f"export {env}=...",
            )
    url = settings.storage.url
    if url.startswith("sqlite://"):
        return open_store(url)
    from storage.buffered import BufferedStore
    from storage.postgres import PostgresStore

    inner = PostgresStore(
        url,
        password=password,
        timezone=settings.collector.timezone,
        attempts_retention_days=settings.storage.attempts_retention_days,
    )
    return BufferedStore(inner, settings.storage.spill_path,
                         max_memory_rows=settings.storage.memory_rows)


def client_settings(bus: BusConfig) -> ClientSettings:
    return ClientSettings(
        latency_s=bus.latency_ms / 1000,
        retries=bus.retries,
        backoff_s=max(0.02, bus.latency_ms / 1000 / 2),
    )


async def open_buses(settings: Settings) -> dict[str, SerialBus]:
    """Open every bus a meter uses; a port that fails is logged and left out, not fatal."""
    used = {m.bus for m in settings.meters if m.protocol in ("dlt645", "modbus-rtu")}
    buses: dict[str, SerialBus] = {}
    for cfg in settings.buses:
        if cfg.name not in used:
            continue
        try:
            buses[cfg.name] = await SerialBus.open(
                cfg.name, cfg.port, LineSettings(cfg.baud, cfg.parity)
            )
        except TransportError as exc:
            log.error("bus %s: %s; its meters will not be read", cfg.name, exc)
    return buses


def build_readers(
    settings: Settings, buses: dict[str, SerialBus], clock: Clock
) -> tuple[dict[str, MeterReader], dict[str, int], dict[str, ModbusTcpHost]]:
    """A reader per lane: serial buses route by protocol, TCP hosts get a connection pool."""
    gateway = settings.collector.gateway
    profiles = functools.cache(
        lambda name: find_profile(name, settings.modbus.profile_dirs))
    rtu: dict[str, ModbusRtuClient] = {}
    readers: dict[str, MeterReader] = {}
    for name, bus in buses.items():
        cfg = settings.bus(name)
        rtu[name] = ModbusRtuClient(bus, latency_s=cfg.latency_ms / 1000, retries=cfg.retries)
        readers[name] = ProtocolRouter({
            "dlt645": Dlt645Reader(Dlt645Client(bus, client_settings(cfg)), clock,
                                   settings.collector.tz, gateway),
            "modbus-rtu": ModbusReader(lambda m: rtu[m.bus], profiles, gateway),
        })
    mb = settings.modbus
    tcp_hosts: dict[str, ModbusTcpHost] = {}
    for meter in settings.meters:
        if meter.protocol == "modbus-tcp" and meter.bus not in tcp_hosts:
            host, _, port = meter.bus.rpartition(":")
            tcp_hosts[meter.bus] = ModbusTcpHost(host.strip("[]"), int(port),
                                                 mb.host_concurrency, mb.timeout_ms / 1000)
    for lane in tcp_hosts:
        readers[lane] = ModbusReader(lambda m: tcp_hosts[m.bus], profiles, gateway)
    return readers, {lane: mb.host_concurrency for lane in tcp_hosts}, tcp_hosts


async def run_collector(
    settings: Settings,
    *,
    clock: Clock | None = None,
    until: datetime | None = None,
    store: Store | None = None,
    on_result: Callable[[CollectionResult], None] | None = None,
    handle_signals: bool = True,
) -> RunStats:
    clock = clock or RealClock()
    own_store = store is None
    store = store or store_for(settings)
    await store.migrate()
    await store.upsert_meters(settings.meters)
    buses = await open_buses(settings)
    readers, workers, tcp_hosts = build_readers(settings, buses, clock)
    scheduler = Scheduler(
        meters=settings.meters,
        schedules=settings.schedules,
        readers=readers,
        store=store,
        clock=clock,
        tz=settings.collector.tz,
        on_result=on_result,
        workers=workers,
    )
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, scheduler.stop)
    try:
        log.info(
            "collecting %d meters on %d buses into %s",
            len(settings.meters), len(buses), settings.storage.url,
        )
        return await scheduler.run(until)
    finally:
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        for bus in buses.values():
            await bus.close()
        for host in tcp_hosts.values():
            await host.close()
        if own_store:
            with contextlib.suppress(Exception):
                await store.close()
