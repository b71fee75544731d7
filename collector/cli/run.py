"""`collector run`, `collector demo` and `collector simulate`: the long-running commands."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from collector.cli.context import CONFIG_OPTION, console, load_settings, run_async, setup_logging


@click.command()
@CONFIG_OPTION
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="One event per line as text or JSON (default: [ops] log_format).")
def run(config_path: str, log_format: str | None) -> None:
    """Run the collector daemon until SIGTERM or Ctrl-C."""
    from collector.runtime.daemon import run_collector

    settings = load_settings(config_path)
    setup_logging(settings.collector.log_level, log_format or settings.ops.log_format)
    stats = run_async(run_collector(settings))
    console.print(
        f"stopped: {stats.readings} readings collected, {stats.new} new rows, "
        f"{stats.overruns} bus overruns"
    )


@click.command()
@click.option("--meters", default=20, show_default=True, help="Simulated meters.")
@click.option("--buses", default=2, show_default=True, help="Simulated RS-485 buses (ptys).")
@click.option("--hours", default=24.0, show_default=True, help="Simulated hours to run.")
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="Local day the demo starts at (default: today).")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite file to keep (default: a temporary one).")
@click.option("--seed", default=1, show_default=True)
@click.option("--storage-url", default=None,
              help="Store into this database instead (e.g. postgresql://user@host/db).")
@click.option("--mqtt", "use_mqtt", is_flag=True,
              help="Run as deployed: gateway with outbox → mosquitto → head-end.")
def demo(meters: int, buses: int, hours: float, day: datetime | None, db_path: str | None,
         seed: int, storage_url: str | None, use_mqtt: bool) -> None:
    """Simulated meters on pty buses, the real collector, an accelerated day, a summary."""
    from collector.cli.context import plain_store
    from collector.cli.tables import meter_summary_table
    from collector.runtime.demo import run_demo

    setup_logging("ERROR")
    with tempfile.TemporaryDirectory(prefix="collector-demo-") as tmp:
        path = Path(db_path) if db_path else Path(tmp) / "demo.db"
        console.print(
            f"[bold]meter-collector demo[/]: {meters} DL/T 645 meters and a transformer "
            f"meter per area on {buses} pty buses, "
            f"{hours:g} simulated hours, storing into {storage_url or path}"
        )
        with console.status("collecting…"):
            result = run_async(run_demo(meters=meters, buses=buses, hours=hours,
                                        db_path=path, seed=seed, storage_url=storage_url,
                                        mqtt=use_mqtt, day=day.date() if day else None))

        async def summarise() -> tuple[Any, ...]:
            store = plain_store(result.settings)
            try:
                latest = await store.latest_readings()
                count = await store.count_readings()
                rows = await store.collection_summary(
                    result.start, result.end, by="bus", tz=result.settings.collector.timezone
                )
                daily = await store.daily_consumption(
                    result.start, result.end + timedelta(days=1), by="area",
                    tz=result.settings.collector.timezone,
                )
                open_flags = await store.list_flags(open_only=True)
            finally:
                await store.close()
            return latest, count, rows, daily, open_flags

        latest, count, bus_rows, daily, open_flags = asyncio.run(summarise())
        injected = {
            f"m{n:03d}": ", ".join(m.faults.describe())
            for n, m in result.fleet.meters.items()
            if m.faults.describe()
        }
        meters_list = [(m.id, m.bus) for m in result.settings.meters]
        console.print(meter_summary_table(meters_list, result.stats.meters, latest, injected))
        from collector.cli.tables import collection_table, consumption_table, flags_table

        console.print(collection_table(bus_rows, "bus", latency=False))
        if daily:
            console.print(consumption_table(daily, "area"))
        if open_flags:
            console.print(flags_table(open_flags, result.settings.collector.tz))
        stats = result.stats
        total = sum(s.attempts for s in stats.meters.values())
        ok = sum(s.ok for s in stats.meters.values())
        console.print(
            f"{total} collection attempts, {ok} ok ({ok / max(total, 1):.1%}); "
            f"{stats.readings} readings taken, {count} rows stored; "
            f"{stats.overruns} bus overruns; storage errors: {sum(stats.storage_errors.values())}"
        )
        if result.mqtt_note:
            console.print(result.mqtt_note)
        if result.vee_note:
            console.print(result.vee_note)
        if result.billing_note:
            console.print(result.billing_note)
        if db_path:
            console.print(f"database kept at {path}")


@click.command()
@click.option("--meters", default=10, show_default=True)
@click.option("--buses", default=1, show_default=True)
@click.option("--baud", default=0, show_default=True, help="Emulate wire time at this baud.")
@click.option("--latency-ms", default=0.0, show_default=True)
@click.option("--speed", default=1.0, show_default=True, help="Simulated time runs N× faster.")
@click.option("--seed", default=1, show_default=True)
@click.option("--three-phase", "three_phase", multiple=True, type=int,
              help="Meter number that is three-phase (repeatable).")
@click.option("--miswire", "miswire", multiple=True, metavar="N:PERM:SIGNS",
              help="Miswire three-phase meter N, e.g. 2:BAC:++- (element A gets B's "
                   "current, B gets A's, C reversed) or 2:ABC:+++:C (phase C voltage off).")
@click.option("--optical", is_flag=True, help="Also an IEC 62056-21 optical port.")
@click.option("--modbus-tcp", "modbus_profile", metavar="PROFILE",
              help="Also serve meters 1..N as Modbus units 1..N on a loopback pymodbus "
                   "server with this profile (sdm630 has what the wiring check needs).")
@click.option("--q1376", "q1376", metavar="HOST:PORT",
              help="Instead: concentrators (Q/GDW 1376.1) that dial this front end.")
@click.option("--concentrators", default=1, show_default=True,
              help="With --q1376: how many terminals (addresses 4101-00001 on).")
@click.option("--points", default=8, show_default=True,
              help="With --q1376: meters per terminal (pn 1..M, addresses as the buses').")
def simulate(meters: int, buses: int, baud: int, latency_ms: float, speed: float,
             seed: int, three_phase: tuple[int, ...], miswire: tuple[str, ...],
             optical: bool, modbus_profile: str | None, q1376: str | None,
             concentrators: int, points: int) -> None:
    """Run simulated DL/T 645 meters on pty buses and print the paths to open."""
    if q1376:
        from simulator.q1376_terminal import run_concentrators

        host, _, port = q1376.rpartition(":")
        if not host or not port.isdigit():
            raise click.BadParameter(f"{q1376!r} is not HOST:PORT", param_hint="--q1376")
        console.print(f"{concentrators} concentrators × {points} points dialling {q1376} "
                      f"(GPRS latency {latency_ms:g} ms); Ctrl-C to stop")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run_concentrators(host, int(port), concentrators, points, seed=seed,
                                          latency_s=latency_ms / 1000))
        return
    from collector.acquisition.clock import SimulatedClock
    from simulator.bus import WireTiming
    from simulator.fleet import FleetSpec, build_fleet
    from simulator.wiring import Miswiring

    wiring: dict[int, Miswiring] = {}
    for text in miswire:
        try:
            n, perm, signs, *volts = text.split(":")
            wiring[int(n)] = Miswiring(
                tuple("ABC".index(p) for p in perm.upper()),  # type: ignore[arg-type]
                tuple(-1 if s == "-" else 1 for s in signs),  # type: ignore[arg-type]
                "ABC".index(volts[0].upper()) if volts else None)
        except (ValueError, IndexError):
            raise click.BadParameter(f"{text!r}: use N:PERM:SIGNS[:MISSING], e.g. "
                                     "2:BAC:++- or 2:ABC:+++:C", param_hint="--miswire") from None
        if len(wiring[int(n)].perm) != 3 or sorted(wiring[int(n)].perm) != [0, 1, 2] or len(
                wiring[int(n)].signs) != 3:
            raise click.BadParameter(f"{text!r}: PERM is A, B, C in some order; SIGNS three "
                                     "of + or -", param_hint="--miswire")

    profile = None
    if modbus_profile:
        from protocols.modbus.profile import ProfileError, find_profile

        try:
            profile = find_profile(modbus_profile)
        except ProfileError as exc:
            raise click.BadParameter(str(exc), param_hint="--modbus-tcp") from None

    async def go() -> None:
        clock = SimulatedClock(datetime.now(UTC), speed)
        spec = FleetSpec(meters=meters, buses=buses, seed=seed, tz=ZoneInfo("Asia/Shanghai"),
                         timing=WireTiming(baud=baud, latency_s=latency_ms / 1000),
                         three_phase=frozenset(three_phase) | frozenset(wiring),
                         wiring=wiring)
        fleet = build_fleet(spec, clock.now, clock.now() - timedelta(days=2))
        paths = await fleet.start()
        for i, path in enumerate(paths):
            addrs = [m.address for n, m in fleet.meters.items() if fleet.bus_of[n] == i]
            console.print(f"bus{i + 1}: {path}  meters {addrs[0]}…{addrs[-1]} ({len(addrs)})")
        for n, w in sorted(wiring.items()):
            console.print(f"  meter {n} is miswired: element A gets phase "
                          f"{'ABC'[w.perm[0]]}, B gets {'ABC'[w.perm[1]]}, C gets "
                          f"{'ABC'[w.perm[2]]}; signs {w.signs}"
                          + (f"; phase {'ABC'[w.missing_voltage]} voltage off"
                             if w.missing_voltage is not None else ""))
        probe = None
        if optical:
            from simulator.optical_meter import SimulatedOpticalMeter

            first = fleet.meters[1]
            probe = SimulatedOpticalMeter(first.address, first.load, first.registers, clock.now)
            console.print(f"optical port of meter 1 (IEC 62056-21): {await probe.start()}")
        server = None
        if profile is not None:
            from simulator.modbus_tcp import ModbusTcpSimulator, modbus_meters

            server = ModbusTcpSimulator(modbus_meters(profile, range(1, meters + 1), seed=seed,
                                                      wiring=wiring), clock.now)
            console.print(f"modbus: tcp://127.0.0.1:{await server.start()}  units "
                          f"1…{meters} ({profile.name}, wired as the meters above)")
        console.print("Ctrl-C to stop", style="dim")
        sys.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await fleet.stop()
            if probe is not None:
                await probe.stop()
            if server is not None:
                await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())
