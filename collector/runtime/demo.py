"""`collector demo`: simulated meters on real ptys, the real collector, an accelerated day.

Nothing here is mocked: the collector opens the pty paths with pyserial exactly as it
would open /dev/ttyUSB0, and stores into the same SQLite schema a gateway uses.

The day runs on a stepped clock: simulated time stands still while a read, a VEE pass
or a write is in hand, and jumps to the next wake-up once nothing is. On a clock that
merely runs fast, a busy machine turned its own stalls into bus overruns, missed reads
and "slow clock reads" blamed on healthy meters, and no two runs printed the same
summary. Here what the demo prints is what the simulator injected, and the same seed
prints the same tables.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from collector.acquisition.clock import Clock, SteppedClock
from collector.acquisition.scheduler import RunStats
from collector.config.settings import (
    BusConfig,
    CollectorSettings,
    FlagSettings,
    MqttSettings,
    Schedule,
    Settings,
    StorageSettings,
)
from collector.runtime.daemon import record_store, run_collector, store_for
from model import Meter
from simulator.bus import WireTiming
from simulator.dlt645_meter import MeterFaults
from simulator.fleet import Fleet, FleetSpec, build_fleet, meter_address
from storage.sqlite import SqliteStore

DEMO_TZ = "Asia/Shanghai"
INTERVAL_QUANTITIES = (
    "1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:1.8.3", "1-0:1.8.4",
    "1-0:2.8.0", "1-0:32.7.0", "1-0:31.7.0", "1-0:16.7.0",
)


def demo_schedules() -> tuple[Schedule, ...]:
    return (
        Schedule("interval", timedelta(minutes=15), INTERVAL_QUANTITIES),
        Schedule("hourly-checks", timedelta(hours=1), clock=True, events=True),
        Schedule("daily-frozen", timedelta(days=1), at=timedelta(minutes=5), frozen_days=2),
    )


def demo_faults(start: datetime, meters: int) -> dict[int, MeterFaults]:
    """A few of the failures a real bus shows, on fixed meters so the summary is stable."""
    faults = {
        5: MeterFaults(silent_between=(start + timedelta(hours=2), start + timedelta(hours=5))),
        9: MeterFaults(bad_checksum_every=7),
        14: MeterFaults(error_dis=frozenset({0x00020000})),
        17: MeterFaults(clock_offset_s=95.0),
        20: MeterFaults(silent=True),
    }
    return {n: f for n, f in faults.items() if n <= meters}


@dataclass
class DemoResult:
    stats: RunStats
    settings: Settings
    fleet: Fleet
    start: datetime
    end: datetime
    db_path: str
    mqtt_note: str = ""
    vee_note: str = ""
    billing_note: str = ""


AREAS = 2


def demo_area(n: int, spec: FleetSpec) -> str:
    """Customers alternate between the areas; a transformer meter is in its customers'."""
    first = spec.feeders[n][0] if n in spec.feeders else n
    return f"T{(first - 1) % AREAS + 1:02d}"


def demo_feeders(customers: int) -> dict[int, tuple[int, ...]]:
    """One transformer meter per area, numbered after the customers, so the area pages
    and the line-loss balance have the figure they exist for."""
    return {customers + a: tuple(range(a, customers + 1, AREAS)) for a in range(1, AREAS + 1)}


def demo_settings(fleet_paths: list[str], spec: FleetSpec, storage_url: str) -> Settings:
    buses = tuple(
        BusConfig(f"bus{i + 1}", path, baud=38400, parity="E", latency_ms=10, retries=1)
        for i, path in enumerate(fleet_paths)
    )
    meters = tuple(
        Meter(
            id=f"m{n:03d}",
            protocol="dlt645",
            bus=f"bus{(n - 1) % spec.buses + 1}",
            address=meter_address(n),
            area=demo_area(n, spec),
            exporter=n in spec.exporters,
            is_area_meter=n in spec.feeders,
            phases=3 if n in spec.three_phase or n in spec.feeders else 1,
        )
        for n in range(1, spec.meters + 1)
    )
    return Settings(
        source="(demo)",
        # At 2,000× a flag pass after every cycle would eat simulated minutes of bus
        # time; the demo runs one pass at the end of its day instead.
        flags=FlagSettings(enabled=False),
        collector=CollectorSettings(timezone=DEMO_TZ, gateway="demo-gw"),
        storage=StorageSettings(url=storage_url),
        buses=buses,
        meters=meters,
        schedules=demo_schedules(),
    )


async def run_demo(
    *, meters: int, buses: int, hours: float, db_path: Path, seed: int = 1,
    storage_url: str | None = None, mqtt: bool = False, day: date | None = None,
) -> DemoResult:
    """`day` is the local day the demo starts at (default: today)."""
    if mqtt:
        return await run_mqtt_demo(meters=meters, buses=buses, hours=hours, db_path=db_path,
                                   seed=seed, storage_url=storage_url, day=day)
    return await _run_local(meters=meters, buses=buses, hours=hours, db_path=db_path,
                            seed=seed, storage_url=storage_url, day=day)


async def run_mqtt_demo(
    *, meters: int, buses: int, hours: float, db_path: Path, seed: int,
    storage_url: str | None, day: date | None = None,
) -> DemoResult:
    """The same day, but as deployed: the collector runs as a gateway with an outbox,
    a throwaway mosquitto carries its batches, and a head-end stores them."""
    import asyncio
    import os

    from collector.acquisition.headend import HeadEnd
    from simulator.broker import Mosquitto

    os.environ.setdefault("COLLECTOR_DEMO_MQTT_PASSWORD", "demo")
    broker = Mosquitto({"collector": os.environ["COLLECTOR_DEMO_MQTT_PASSWORD"]})
    broker.start()
    mqtt = MqttSettings(port=broker.port, username="collector",
                        password_env="COLLECTOR_DEMO_MQTT_PASSWORD", batch_size=500)
    head_settings = Settings(
        source="(demo head-end)",
        collector=CollectorSettings(timezone=DEMO_TZ),
        storage=StorageSettings(url=storage_url or f"sqlite:///{db_path}",
                                spill_path=str(db_path.with_name("spill.db"))),
        mqtt=replace(mqtt, role="headend"),
    )
    head_store = store_for(head_settings)
    await head_store.migrate()
    head = HeadEnd(head_settings.mqtt, head_store, client_id="demo-headend")

    def judge_by(clock: Clock) -> None:
        """The head-end judges timestamps by the simulated days, as a daemon does by its
        clock: a demo of several days runs ahead of the wall clock."""
        head.now = clock.now

    head_task = asyncio.create_task(head.run())
    try:
        await asyncio.wait_for(head.ready.wait(), 10)
        gateway_db = db_path.with_name("gateway.db")
        result = await _run_local(
            meters=meters, buses=buses, hours=hours, db_path=gateway_db, seed=seed,
            storage_url=None, mqtt=replace(mqtt, role="gateway"), on_clock=judge_by, day=day)
        await head_store.upsert_meters(result.settings.meters)
        gateway_store = SqliteStore(str(gateway_db))
        gateway_rows = await gateway_store.count_readings()
        await gateway_store.close()
        head_rows = 0
        for _ in range(300):
            head_rows = await head_store.count_readings()
            if head_rows >= gateway_rows:
                break
            await asyncio.sleep(0.1)
    finally:
        head.stop()
        await asyncio.gather(head_task, return_exceptions=True)
        await head_store.close()
        broker.destroy()
    # The summary reads the head-end's store, about the gateway's meters.
    result.settings = replace(head_settings, meters=result.settings.meters)
    result.vee_note = await end_of_day_vee(result.settings, result.start, result.end)
    result.mqtt_note = (
        f"gateway → mosquitto → head-end: {head.stats.batches} batches; the gateway stored "
        f"{gateway_rows} rows and the head-end {head_rows} "
        f"({'all arrived' if head_rows == gateway_rows else 'MISSING ROWS'}); "
        f"{head.stats.dead_letters} dead letters")
    return result


async def end_of_day_flags(settings: Settings, end: datetime) -> None:
    from collector.flags.service import build_engine

    store = store_for(settings)
    try:
        engine = build_engine(settings, store)
        if engine is not None:
            await engine.run(end, full=True)
    finally:
        await store.close()


async def end_of_day_vee(settings: Settings, start: datetime, end: datetime) -> str:
    """Validate the demo's day as the daemon's VEE pass would when the day closes."""
    from collector.vee.build import build_vee

    opened = store_for(settings)
    try:
        tz = settings.collector.tz
        first = (start + timedelta(minutes=15)).astimezone(tz).date()
        last = (end - timedelta(seconds=1)).astimezone(tz).date()
        run = await build_vee(settings, record_store(opened)).run(first, last, end)
        return run.summary()
    finally:
        await opened.close()


DEMO_ACCOUNT = "P-m001"
DEMO_TOPUP = 5.0
"""Enough for a day or two of m001's use: the demo day takes it below a week's cost."""


async def end_of_day_billing(settings: Settings, start: datetime, end: datetime) -> str:
    """The demo day's bills (a one-day cycle) and its prepaid account's balance."""
    from collector.billing.cycles import Cycle
    from collector.billing.prepaid import Prepaid
    from collector.billing.run import Biller
    from collector.billing.tariff import Tariffs
    from model import MeterAssignment, ServicePoint

    opened = store_for(settings)
    try:
        store = record_store(opened)
        tz = settings.collector.tz
        customers = [m for m in settings.meters if not m.is_area_meter]  # no bill for a transformer
        await store.upsert_service_points(
            [ServicePoint(f"sp-{m.id}", f"acct-{m.id}",
                          "commercial-tou" if m.phases == 3 else "cn-residential", "S01",
                          m.area) for m in customers],
            [MeterAssignment(f"sp-{m.id}", m.id) for m in customers])
        tariffs = Tariffs()
        # The last local day that has ended: the demo's own day when it ran a full day.
        day = end.astimezone(tz).date() - timedelta(days=1)
        run = await Biller(store, settings.billing, settings.vee, tz, tariffs).run(
            Cycle.parse(day.isoformat()))
        first = (start + timedelta(minutes=15))
        prepaid = Prepaid(store, settings.prepaid, tz, tariffs)
        await store.open_prepaid(DEMO_ACCOUNT, "sp-m001", first)
        await prepaid.topup(DEMO_ACCOUNT, DEMO_TOPUP, first, "demo-topup", "demo")
        paid = await prepaid.update(end)
        return f"{run.summary()}\n{paid.summary()}"
    finally:
        await opened.close()


async def _run_local(
    *, meters: int, buses: int, hours: float, db_path: Path, seed: int,
    storage_url: str | None, mqtt: MqttSettings | None = None,
    on_clock: Callable[[Clock], None] | None = None, day: date | None = None,
) -> DemoResult:
    tz = ZoneInfo(DEMO_TZ)
    first_day = day or datetime.now(tz).date()
    local_midnight = datetime(first_day.year, first_day.month, first_day.day, tzinfo=tz)
    # Fifteen simulated minutes of lead, so start-up finishes before the first slot.
    start = local_midnight.astimezone(UTC) - timedelta(minutes=15)
    end = local_midnight.astimezone(UTC) + timedelta(hours=hours)
    clock = SteppedClock(start)
    if on_clock is not None:
        on_clock(clock)
    feeders = demo_feeders(meters)
    spec = FleetSpec(
        meters=meters + len(feeders),
        feeders=feeders,
        buses=buses,
        seed=seed,
        tz=tz,
        timing=WireTiming(),
        faults=demo_faults(start, meters),
        exporters=frozenset({3}),
        three_phase=frozenset({4}),
    )
    fleet = build_fleet(spec, clock.now, registers_from=start - timedelta(days=2))
    paths = await fleet.start()
    url = storage_url or f"sqlite:///{db_path}"
    settings = demo_settings(paths, spec, url)
    if mqtt is not None:
        settings = replace(settings, mqtt=mqtt)
    if storage_url:
        settings = replace(settings, storage=replace(
            settings.storage, spill_path=str(db_path.with_name("spill.db"))))
    try:
        stats = await run_collector(settings, clock=clock, until=end)
    finally:
        await fleet.stop()
    vee_note = billing_note = ""
    if mqtt is None:
        await end_of_day_flags(settings, end)
        vee_note = await end_of_day_vee(settings, start, end)
        billing_note = await end_of_day_billing(settings, start, end)
    return DemoResult(stats, settings, fleet, start, end, str(db_path), vee_note=vee_note,
                      billing_note=billing_note)
