"""Wire settings into a running collector: store, buses, protocol readers, scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from collector.acquisition.catch_up import backfill as read_back
from collector.acquisition.catch_up import catch_up
from collector.acquisition.clock import Clock, RealClock, looks_like_zone_error
from collector.acquisition.pipeline import (
    CollectionResult,
    Dlt645Reader,
    MeterReader,
    ModbusReader,
    ProtocolRouter,
)
from collector.acquisition.q1376.service import Q1376Service
from collector.acquisition.scheduler import RunStats, Scheduler
from collector.config.intervals import register_interval
from collector.config.settings import BusConfig, Schedule, Settings
from collector.errors import CollectorError, ConfigError
from collector.field.tools import check_clock, sync_clock
from collector.flags.service import FlagService, build_engine
from collector.ops.endpoint import Check, OpsEndpoint
from collector.ops.metrics import Metrics
from collector.ops.supervise import Supervisor
from collector.runtime.commands import CommandQueue
from collector.vee.build import build_vee
from collector.vee.service import VeeService
from model import Meter, Outcome, Reading, ReadKind
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.errors import ProtocolError, TransportError
from protocols.modbus.client import ModbusRtuClient, ModbusTcpHost
from protocols.modbus.profile import find_profile
from protocols.mqtt import schema
from protocols.serial import LineSettings, SerialBus
from storage import Store, open_store
from storage.base import StorageError
from storage.sqlite import SqliteStore

if TYPE_CHECKING:
    from collector.billing.switch import Dlt645Switch

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0


def store_for(settings: Settings) -> Store:
    """SQLite (with an outbox on a gateway), or PostgreSQL behind the write buffer.

    A head-end acknowledges broker messages once stored, so its buffer keeps nothing in
    memory: whatever waits for the database waits in the spill file, on disk."""
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
        if settings.mqtt.role == "gateway":
            from storage.sqlite import path_from_url

            return SqliteStore(path_from_url(url), outbox=True,
                               outbox_max_rows=settings.mqtt.outbox_max_rows)
        return open_store(url)
    from storage.buffered import BufferedStore
    from storage.postgres import PostgresStore

    inner = PostgresStore(
        url,
        password=password,
        timezone=settings.collector.timezone,
        attempts_retention_days=settings.storage.attempts_retention_days,
    )
    memory = 0 if settings.mqtt.role == "headend" else settings.storage.memory_rows
    return BufferedStore(inner, settings.storage.spill_path, max_memory_rows=memory)


def record_store(store: Store) -> Any:
    """The store of record behind the write buffer, if there is one: VEE reads and writes
    versions there directly, as nothing it writes may wait in a spill file."""
    return getattr(store, "inner", store)


def vee_services(settings: Settings, store: Store, clock: Clock,
                 readers: Mapping[str, MeterReader],
                 concentrators: Q1376Service | None = None) -> list[VeeService]:
    target = record_store(store)
    found = register_interval(settings)
    if found is None or not hasattr(target, "verdicts"):
        return []
    after = ([prepaid_update(settings, target, clock, readers, concentrators)]
             if settings.prepaid.enabled else [])
    return [VeeService(build_vee(settings, target), clock, found[0], after)]


def local_switch(settings: Settings, readers: Mapping[str, MeterReader],
                 clock: Clock) -> Dlt645Switch:
    """Trips and reconnects over this process's own DL/T 645 buses."""
    from collector.billing.switch import Dlt645Switch

    clients = {bus: c for bus in readers if (c := dlt645_client(readers, bus)) is not None}
    return Dlt645Switch(clients, {m.id: m for m in settings.meters}, settings.prepaid,
                        settings.collector.tz, now=clock.now)


def prepaid_update(settings: Settings, store: Any, clock: Clock,
                   readers: Mapping[str, MeterReader],
                   concentrators: Q1376Service | None = None,
                   ) -> Callable[[datetime], Awaitable[object]]:
    """Prepaid balances after each VEE pass: charges from validated reads, alerts on MQTT
    (on a head-end), and trips through the DL/T 645 buses this process drives or the
    concentrators that dial into it (the protected windows are Prepaid's, before any)."""
    from collector.billing.prepaid import Prepaid
    from collector.billing.switch import MqttPublisher, MqttSwitch
    from collector.billing.tariff import Tariffs

    tz = settings.collector.tz
    local = local_switch(settings, readers, clock)
    publish = MqttPublisher(settings.mqtt) if settings.mqtt.role == "headend" else None
    remote = MqttSwitch(settings.mqtt, {m.id: m.gateway for m in settings.meters
                                        if m.gateway}) if publish else None

    async def switch(meter_id: str, action: str, reason: str) -> bool:
        if concentrators is not None and meter_id in settings.q1376.points:
            return await concentrators.prepaid_switch(meter_id, action, reason)
        if remote is not None and meter_id in remote.gateway_of and not local.reaches(meter_id):
            return await remote(meter_id, action, reason)
        return await local(meter_id, action, reason)

    prepaid = Prepaid(store, settings.prepaid, tz, Tariffs(settings.billing.tariff_dirs),
                      switch, publish, step=timedelta(minutes=settings.vee.interval_minutes),
                      register_max=settings.vee.register_max,
                      resolution=settings.vee.register_resolution)

    async def update(when: datetime) -> object:
        run = await prepaid.update(when)
        if run.alerts or run.commands:
            log.info("%s", run.summary())
        return run

    return update


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


class Service(Protocol):
    async def run(self) -> None: ...

    def stop(self) -> None: ...


def mqtt_services(
    settings: Settings, store: Store, readers: dict[str, MeterReader], clock: Clock,
    metrics: Metrics | None = None,
) -> list[Service]:

    role = settings.mqtt.role
    if role == "gateway":
        from collector.acquisition.uplink import Uplink

        if not isinstance(store, SqliteStore) or not store.outbox:
            raise ConfigError(settings.source, "storage.url",
                              "gateway mode needs the SQLite store with its outbox")
        handler = CommandHandler(settings, readers, store, clock)
        return [Uplink(settings.mqtt, settings.collector.gateway, store, handler)]
    if role == "headend":
        from collector.acquisition.headend import HeadEnd

        return [HeadEnd(settings.mqtt, store, metrics=metrics, now=clock.now)]
    return []


async def drain_outbox(store: Store, services: list[Service], within_s: float = 30.0) -> None:
    """A bounded run (demo, tests) ends only once the gateway has forwarded what it read."""

    if not services or not isinstance(store, SqliteStore) or not store.outbox:
        return
    for _ in range(int(within_s / 0.1)):  # the outbox is on disk: poll it
        if not await store.outbox_size():
            return
        await asyncio.sleep(0.1)


def dlt645_client(readers: Mapping[str, MeterReader], bus: str) -> Dlt645Client | None:
    """The DL/T 645 client of a serial bus, if the bus has one (TCP lanes do not)."""
    router = readers.get(bus)
    if not isinstance(router, ProtocolRouter):
        return None
    dlt = router.readers.get("dlt645")
    return dlt.client if isinstance(dlt, Dlt645Reader) else None


class ClockSync:
    """Time syncs for drifting DL/T 645 meters, at most once an hour per bus: a broadcast
    sets every meter on the bus, so one is enough, and a meter that will not keep time
    should stay flagged rather than be synced every cycle."""

    def __init__(self, settings: Settings, readers: dict[str, MeterReader], clock: Clock,
                 every: timedelta = timedelta(hours=1)) -> None:
        self.settings = settings
        self.readers = readers
        self.clock = clock
        self.every = every
        self.last: dict[str, datetime] = {}

    async def __call__(self, meter: Meter, offset_s: float) -> bool:
        if looks_like_zone_error(offset_s):
            log.error("meter %s's clock is %+.1f h off: a time-zone mismatch is likelier than "
                      "drift, so no time sync was sent; check [collector] timezone",
                      meter.id, offset_s / 3600)
            return False
        client = dlt645_client(self.readers, meter.bus)
        now = self.clock.now()
        last = self.last.get(meter.bus)
        if meter.protocol != "dlt645" or client is None or (
                last is not None and now - last < self.every):
            return False
        self.last[meter.bus] = now
        await sync_clock(client, self.settings.collector.tz, now)
        return True


class CommandHandler:
    """The head-end's commands, run on this gateway's buses: on-demand reads, time syncs,
    and prepaid trips and reconnects (the meter password stays on the gateway)."""

    def __init__(self, settings: Settings, readers: dict[str, MeterReader], store: Store,
                 clock: Clock) -> None:
        self.settings = settings
        self.readers = readers
        self.store = store
        self.clock = clock
        self.switch = local_switch(settings, readers, clock)

    async def __call__(self, command: schema.Command) -> tuple[bool, str, list[Reading]]:
        if command.command == "time_sync":
            return await self._time_sync(command.force)
        meter = next((m for m in self.settings.meters if m.id == command.meter), None)
        if meter is None or meter.bus not in self.readers:
            return False, f"meter {command.meter!r} is not on this gateway", []
        if command.command in ("trip", "reconnect"):
            log.info("head-end asks: %s meter %s (%s)", command.command, meter.id,
                     command.reason, extra={"meter": meter.id, "bus": meter.bus})
            done = await self.switch(meter.id, command.command, command.reason)
            return done, (f"{command.command} confirmed by the meter" if done else
                          f"{command.command} not confirmed: see the gateway's log"), []
        quantities = command.quantities or tuple(
            dict.fromkeys(q for s in self.settings.schedules for q in s.quantities))
        schedule = Schedule("on-demand", timedelta(minutes=1), quantities)
        result = await self.readers[meter.bus].collect(meter, schedule, self.clock.now())
        # Read off the schedule's grid: a one-off, not a point of the interval series.
        readings = [replace(r, kind=ReadKind.INSTANT) for r in result.readings]
        if readings:
            await self.store.write_readings(readings)
        ok = result.attempt is not None and result.attempt.outcome is Outcome.OK
        return ok, "; ".join(result.errors) or "read", readings

    async def _time_sync(self, force: bool) -> tuple[bool, str, list[Reading]]:
        """A broadcast per bus; a bus whose first meter is off by whole hours is left
        alone unless forced, since that is a time-zone mistake more often than drift."""
        synced, refused = [], []
        tz = self.settings.collector.tz
        for name in self.readers:
            client = dlt645_client(self.readers, name)
            if client is None:
                continue
            probe = next((m for m in self.settings.meters
                          if m.bus == name and m.protocol == "dlt645"), None)
            if probe is not None and not force:
                try:
                    offset = (await check_clock(client, probe.address, tz,
                                                self.clock.now)).offset_s
                except ProtocolError as exc:
                    refused.append(f"{name} (clock of {probe.id} unreadable: {exc})")
                    continue
                if looks_like_zone_error(offset):
                    refused.append(f"{name} ({probe.id} is {offset / 3600:+.1f} h off: a "
                                   "time-zone mismatch is likelier than drift; send with "
                                   "force to sync anyway)")
                    continue
            await sync_clock(client, tz, self.clock.now())
            synced.append(name)
        detail = f"time sync broadcast on {', '.join(synced) or 'no bus'}"
        if refused:
            detail += "; not sent on " + "; ".join(refused)
        return bool(synced), detail, []


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


async def _logged(work: Awaitable[object]) -> None:
    try:
        await work
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("catch-up after downtime failed; the schedule goes on")


def readiness_checks(store: Store, services: list[Service], supervisor: Supervisor
                     ) -> dict[str, Check]:
    async def store_ok() -> tuple[bool, str]:
        await store.ping()
        return True, "reachable"

    async def tasks_ok() -> tuple[bool, str]:
        loops = supervisor.restart_loops()
        if loops:
            return False, "; ".join(f"{name} keeps failing: {err}" for name, err in loops.items())
        return True, "no task in a restart loop"

    checks: dict[str, Check] = {"store": store_ok, "tasks": tasks_ok}
    for service in services:
        ready = getattr(service, "ready", None)
        if isinstance(ready, asyncio.Event):
            async def broker_ok(ready: asyncio.Event = ready) -> tuple[bool, str]:
                return ready.is_set(), "connected" if ready.is_set() else "not connected"

            checks["broker"] = broker_ok
    return checks


async def gauges(store: SqliteStore, metrics: Metrics, every_s: float = 5.0) -> None:
    """Refresh the gauges that need a query: the outbox's depth and the age of its head."""
    while True:
        metrics.outbox_rows.set(await store.outbox_size())
        metrics.outbox_oldest.set(await store.outbox_oldest_age())
        await asyncio.sleep(every_s)


async def open_store_checked(settings: Settings, store: Store | None) -> Store:
    """The configured store, migrated; a store that cannot be opened is a clear error."""
    url = settings.storage.url
    try:
        store = store or store_for(settings)
        await store.migrate()
    except StorageError as exc:
        raise CollectorError(f"{settings.source}: [storage] url = {url!r}: {exc}\n  fix: check "
                             "the path is writable or the database reachable, then start "
                             "again") from None
    return store


async def run_collector(
    settings: Settings,
    *,
    clock: Clock | None = None,
    until: datetime | None = None,
    store: Store | None = None,
    on_result: Callable[[CollectionResult], None] | None = None,
    handle_signals: bool = True,
    metrics: Metrics | None = None,
) -> RunStats:
    clock = clock or RealClock()
    metrics = metrics or Metrics()
    own_store = store is None
    store = await open_store_checked(settings, store)
    insecure = settings.mqtt.insecure_reasons() if settings.mqtt.role else []
    if insecure:
        log.warning("MQTT to %s %s (allow_insecure = true): anyone on that network can read "
                    "or forge meter data", settings.mqtt.host, " and ".join(insecure))
    await store.upsert_meters(settings.meters)
    buses = await open_buses(settings)
    readers, workers, tcp_hosts = build_readers(settings, buses, clock)
    scheduler = Scheduler(
        gateway=settings.collector.gateway,
        meters=settings.meters,
        schedules=settings.schedules,
        readers=readers,
        store=store,
        clock=clock,
        tz=settings.collector.tz,
        on_result=on_result,
        workers=workers,
        metrics=metrics,
        backfill=lambda meter, since, until: read_back(
            settings, meter, since, until, dlt645_client(readers, meter.bus),
            scheduler.persist, metrics),
    )
    services = mqtt_services(settings, store, readers, clock, metrics)
    concentrators = None
    if settings.q1376.listen:
        # Concentrators dial in: the front end is a service beside the buses.
        concentrators = Q1376Service(settings, store, clock, metrics)
        services.append(concentrators)
    if settings.flags.enabled and settings.mqtt.role != "gateway":
        # Flags belong where the data is whole: the head-end, or a standalone collector.
        engine = build_engine(settings, store)
        if engine is not None:
            fixer = ClockSync(settings, readers, clock) if settings.flags.auto_time_sync else None
            services.append(FlagService(settings, engine, clock, fixer, metrics))
    if settings.vee.enabled and settings.mqtt.role != "gateway":
        services += vee_services(settings, store, clock, readers, concentrators)
    elif settings.prepaid.enabled and settings.mqtt.role != "gateway":
        log.info("[vee] is off, so prepaid balances move only with `collector prepaid update`")
    local = [m.id for m in settings.meters if m.bus in readers]
    if local and settings.mqtt.role != "gateway" and hasattr(store, "meter_commands"):
        # Operators' commands from the web view or the API, for the meters on our buses.
        services.append(CommandQueue(store, CommandHandler(settings, readers, store, clock),
                                     clock, local))
    supervisor = Supervisor(metrics)
    stoppers: list[Callable[[], object]] = [scheduler.stop, supervisor.stop,
                                            *(s.stop for s in services)]

    def stop_all() -> None:
        for stop in stoppers:
            stop()

    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_all)
    service_tasks = [supervisor.start(type(s).__name__, s.run) for s in services]
    gauge_task = (supervisor.start("gauges", lambda: gauges(store, metrics))
                  if isinstance(store, SqliteStore) and store.outbox else None)
    endpoint = None
    if settings.ops.listen:
        host, _, port = settings.ops.listen.rpartition(":")
        endpoint = OpsEndpoint(metrics, readiness_checks(store, services, supervisor))
        try:
            await endpoint.start(host.strip("[]"), int(port))
        except OSError as exc:
            log.error("[ops] listen = %r: cannot listen (%s); running without metrics",
                      settings.ops.listen, exc)
            endpoint = None
    recovery: asyncio.Task[None] | None = None
    try:
        log.info(
            "collecting %d meters on %d buses into %s",
            len(settings.meters), len(buses), settings.storage.url,
        )
        if settings.collector.catch_up > timedelta(0):
            # Beside the schedule, not before it: the bus lock interleaves their requests,
            # so days of backlog never hold up the current slot.
            recovery = asyncio.create_task(_logged(catch_up(
                settings, [m for m in settings.meters if m.bus in readers], store, clock,
                lambda m: dlt645_client(readers, m.bus), scheduler.persist, metrics)))
            stoppers.append(functools.partial(recovery.cancel, "stopping"))
        stats = await scheduler.run(until)
        if until is not None:
            await drain_outbox(store, services)
        return stats
    finally:
        stop_all()
        if recovery is not None:
            # Cancelled between slots, or after the write in hand: see Scheduler.persist.
            await asyncio.gather(recovery, return_exceptions=True)
        if endpoint is not None:
            await endpoint.close()
        if gauge_task is not None:
            gauge_task.cancel()
        # Services finish what is in flight (a head-end its write and acks, an uplink its
        # goodbye); whatever has not finished within the bound is cancelled, unacknowledged.
        if service_tasks:
            _, late = await asyncio.wait(service_tasks, timeout=STOP_GRACE_S)
            for task in late:
                log.warning("%s did not stop within %.0f s; cancelled", task.get_name(),
                            STOP_GRACE_S)
                task.cancel()
        await asyncio.gather(*filter(None, [gauge_task, *service_tasks]),
                             return_exceptions=True)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        for bus in buses.values():
            await bus.close()
        for lane in tcp_hosts.values():
            await lane.close()
        if own_store:
            with contextlib.suppress(Exception):
                await store.close()
