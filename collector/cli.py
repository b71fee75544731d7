"""The `collector` command: daemon, demo, field tools and reports."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from collector import config as config_mod
from collector.errors import CollectorError, ConfigError
from collector.tables import values_table
from protocols.dlt645.client import ClientSettings
from protocols.errors import ProtocolError
from protocols.serial import LineSettings
from storage.base import StorageError

T = TypeVar("T")
console = Console(width=None if sys.stdout.isatty() else 140)
EXIT_CONFIG = 2
EXIT_DEVICE = 3
EXIT_STORAGE = 4


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        console.print(f"[red]config error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)
    except ProtocolError as exc:
        console.print(f"[red]device error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_DEVICE)
    except CollectorError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except StorageError as exc:
        console.print(f"[red]storage error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_STORAGE)


def _setup_logging(level: str, fmt: str = "text") -> None:
    from collector.ops import logs

    logs.setup(level, fmt)


def _load_settings(path: str) -> config_mod.Settings:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        console.print(f"[red]config error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)


@click.group()
@click.version_option(package_name="meter-collector")
def main() -> None:
    """meter-collector: a head-end for electricity meters."""


# --- daemon ----------------------------------------------------------------------------


@main.command()
@click.option("-c", "--config", "config_path", default="collector.toml", show_default=True,
              help="Path to collector.toml.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default=None,
              help="One event per line as text or JSON (default: [ops] log_format).")
def run(config_path: str, log_format: str | None) -> None:
    """Run the collector daemon until SIGTERM or Ctrl-C."""
    from collector.daemon import run_collector

    settings = _load_settings(config_path)
    _setup_logging(settings.collector.log_level, log_format or settings.ops.log_format)
    stats = _run(run_collector(settings))
    console.print(
        f"stopped: {stats.readings} readings collected, {stats.new} new rows, "
        f"{stats.overruns} bus overruns"
    )


@main.command()
@click.option("--meters", default=20, show_default=True, help="Simulated meters.")
@click.option("--buses", default=2, show_default=True, help="Simulated RS-485 buses (ptys).")
@click.option("--hours", default=24.0, show_default=True, help="Simulated hours to run.")
@click.option("--seconds", default=40.0, show_default=True,
              help="Wall-clock seconds the simulated period should take.")
@click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
              help="SQLite file to keep (default: a temporary one).")
@click.option("--seed", default=1, show_default=True)
@click.option("--storage-url", default=None,
              help="Store into this database instead (e.g. postgresql://user@host/db).")
@click.option("--mqtt", "use_mqtt", is_flag=True,
              help="Run as deployed: gateway with outbox → mosquitto → head-end.")
def demo(meters: int, buses: int, hours: float, seconds: float, db_path: str | None,
         seed: int, storage_url: str | None, use_mqtt: bool) -> None:
    """Simulated meters on pty buses, the real collector, an accelerated day, a summary."""
    from collector.cli_reports import plain_store
    from collector.demo import run_demo
    from collector.tables import meter_summary_table

    _setup_logging("ERROR")
    with tempfile.TemporaryDirectory(prefix="collector-demo-") as tmp:
        path = Path(db_path) if db_path else Path(tmp) / "demo.db"
        console.print(
            f"[bold]meter-collector demo[/]: {meters} DL/T 645 meters on {buses} pty buses, "
            f"{hours:g} simulated hours in ~{seconds:g} s, storing into {storage_url or path}"
        )
        with console.status("collecting…"):
            result = _run(run_demo(meters=meters, buses=buses, hours=hours, seconds=seconds,
                                   db_path=path, seed=seed, storage_url=storage_url,
                                   mqtt=use_mqtt))

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
        from collector.tables import collection_table, consumption_table, flags_table

        console.print(collection_table(bus_rows, "bus"))
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
        if db_path:
            console.print(f"database kept at {path}")


# --- field tools -----------------------------------------------------------------------


def _line_options(f: Any) -> Any:
    f = click.option("--port", help="Serial port of a DL/T 645 bus, e.g. /dev/ttyUSB0.")(f)
    f = click.option("--modbus", "modbus_url", metavar="URL",
                     help="Modbus instead: tcp://HOST:502 or rtu:///dev/ttyUSB0?baud=9600.")(f)
    f = click.option("--baud", default=2400, show_default=True)(f)
    f = click.option("--parity", default="E", show_default=True,
                     type=click.Choice(["N", "E", "O"]))(f)
    f = click.option("--latency-ms", default=500.0, show_default=True,
                     help="Allowance for the meter's answer.")(f)
    return f


def _address(value: str) -> str:
    text = value.strip().zfill(12)
    if len(text) != 12 or not text.isdigit():
        raise click.BadParameter(f"{value!r} is not a 12-digit meter address")
    return text


def _modbus_target(url: str) -> Any:
    from collector.fieldtools import ModbusTarget

    try:
        return ModbusTarget.parse(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--modbus") from None


def _need_port(port: str | None) -> str:
    if not port:
        raise click.UsageError("give --port for a DL/T 645 bus, or --modbus URL")
    return port


@main.command()
@_line_options
@click.option("--address", help="DL/T 645 address as printed, e.g. 000000000001.")
@click.option("--unit", type=click.IntRange(1, 247), help="Modbus unit id.")
@click.option("--profile", "profile_name", help="Modbus profile, e.g. sdm630.")
@click.option("--profile-dir", "profile_dirs", multiple=True, help="Extra profile directory.")
@click.option("--quantity", "quantities", multiple=True,
              help="OBIS code to read (repeatable); default: energy, V, I, P, PF, Hz.")
def read(port: str | None, modbus_url: str | None, baud: int, parity: str, latency_ms: float,
         address: str | None, unit: int | None, profile_name: str | None,
         profile_dirs: tuple[str, ...], quantities: tuple[str, ...]) -> None:
    """Read one meter once and show its values with units."""
    from collector.fieldtools import DEFAULT_READ, dlt645_session, read_meter

    if modbus_url:
        _read_modbus(modbus_url, unit, profile_name, profile_dirs, quantities, latency_ms)
        return
    port = _need_port(port)
    if not address:
        raise click.UsageError("a DL/T 645 read needs --address")
    addr = _address(address)

    async def go() -> None:
        async with dlt645_session(
            port, LineSettings(baud, parity), ClientSettings(latency_s=latency_ms / 1000)
        ) as client:
            outcome = await read_meter(client, addr, quantities or DEFAULT_READ)
        console.print(values_table(f"meter {addr} on {port}",
                                   [(v.obis, v.value, v.unit) for v in outcome.values]))
        for problem in outcome.problems:
            console.print(f"[yellow]{problem}[/]")

    _run(go())


def _read_modbus(url: str, unit: int | None, profile_name: str | None,
                 profile_dirs: tuple[str, ...], quantities: tuple[str, ...],
                 latency_ms: float) -> None:
    from collector.fieldtools import modbus_session, read_modbus
    from protocols.modbus.profile import ProfileError, find_profile

    target = _modbus_target(url)
    if unit is None or not profile_name:
        raise click.UsageError("a Modbus read needs --unit and --profile")
    try:
        profile = find_profile(profile_name, profile_dirs)
    except ProfileError as exc:
        console.print(f"[red]profile error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)

    async def go() -> None:
        async with modbus_session(target, timeout_s=latency_ms / 1000) as reader:
            outcome = await read_modbus(reader, unit, profile, quantities)
        console.print(values_table(f"{profile.manufacturer} {profile.model} unit {unit} at {url}",
                                   [(v.obis, v.value, v.unit) for v in outcome.values]))
        for problem in outcome.problems:
            console.print(f"[yellow]{problem}[/]")

    _run(go())


def _unit_range(text: str) -> range:
    try:
        first, _, last = text.partition("-")
        units = range(int(first), int(last or first) + 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a range like 1-247",
                                 param_hint="--units") from None
    if not units or units.start < 1 or units.stop > 248:
        raise click.BadParameter("unit ids run from 1 to 247", param_hint="--units")
    return units


def _scan_modbus(url: str, latency_ms: float, units: range) -> None:
    from collector.fieldtools import modbus_session, scan_modbus

    target = _modbus_target(url)

    async def go() -> list[int]:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("probing unit ids", total=len(units))
            async with modbus_session(target, timeout_s=latency_ms / 1000, retries=0) as reader:
                return await scan_modbus(
                    reader, units, on_probe=lambda u: progress.update(
                        task, completed=u - units.start + 1, description=f"probing unit {u}"))

    found = _run(go())
    if not found:
        console.print(f"no Modbus device answered at {url}")
        sys.exit(1)
    console.print("responding unit ids: " + ", ".join(map(str, found)))
    console.print(f"{len(found)} device(s) at {url}")


@main.command()
@_line_options
@click.option("--units", "unit_text", default="1-247", show_default=True,
              help="Modbus unit ids to probe, e.g. 1-32.")
def scan(port: str | None, modbus_url: str | None, baud: int, parity: str,
         latency_ms: float, unit_text: str) -> None:
    """Find the meters on a bus: DL/T 645 addresses, or Modbus unit ids 1-247."""
    from collector.fieldtools import dlt645_session, scan_bus

    if modbus_url:
        _scan_modbus(modbus_url, latency_ms, _unit_range(unit_text))
        return
    port = _need_port(port)

    async def go() -> list[str]:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("probing", total=None)

            def on_probe(pattern: str, n: int, total: int) -> None:
                progress.update(task, description=f"probing {pattern}", total=total,
                                completed=n + 1)

            async with dlt645_session(
                port, LineSettings(baud, parity),
                ClientSettings(latency_s=latency_ms / 1000, retries=0),
            ) as client:
                return await scan_bus(client, on_probe)

    found = _run(go())
    if not found:
        console.print(f"no meter answered on {port}")
        sys.exit(1)
    for address in found:
        console.print(address)
    console.print(f"{len(found)} meter(s) on {port}")


@main.command()
@_line_options
@click.option("--address", required=True)
@click.option("--timezone", "tz_name", default="Asia/Shanghai", show_default=True,
              help="The meter's local time zone.")
@click.option("--sync", is_flag=True, help="Broadcast a time sync, then check again.")
@click.option("--force", is_flag=True,
              help="Sync even when the offset is whole hours (a likely time-zone mistake).")
def clock(port: str | None, modbus_url: str | None, baud: int, parity: str,
          latency_ms: float, address: str, tz_name: str, sync: bool, force: bool) -> None:
    """Show a DL/T 645 meter clock's offset from this machine, and optionally sync it."""
    from collector.fieldtools import (
        check_clock,
        dlt645_session,
        looks_like_zone_error,
        sync_clock,
    )

    if modbus_url:
        raise click.UsageError("clock checks are for DL/T 645 meters (--port)")
    port = _need_port(port)
    addr = _address(address)
    tz = ZoneInfo(tz_name)

    async def go() -> None:
        async with dlt645_session(
            port, LineSettings(baud, parity), ClientSettings(latency_s=latency_ms / 1000)
        ) as client:
            before = await check_clock(client, addr, tz)
            console.print(
                f"meter {addr}: {before.meter_time:%Y-%m-%d %H:%M:%S %Z}, "
                f"server {before.server_time.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}, "
                f"offset {before.offset_s:+.0f} s"
            )
            if sync and looks_like_zone_error(before.offset_s) and not force:
                console.print(
                    f"[yellow]not synced:[/] the offset is {before.offset_s / 3600:+.1f} h, "
                    f"a whole number of hours: a time-zone mismatch (is the meter on "
                    f"{tz_name}?) is likelier than drift, and a sync would set the meter "
                    "wrong for time-of-use billing. Check --timezone, or add --force.",
                    highlight=False)
                sys.exit(1)
            if sync:
                await sync_clock(client, tz)
                after = await check_clock(client, addr, tz)
                console.print(f"after sync: offset {after.offset_s:+.0f} s")

    _run(go())


@main.command()
@click.option("--meters", default=10, show_default=True)
@click.option("--buses", default=1, show_default=True)
@click.option("--baud", default=0, show_default=True, help="Emulate wire time at this baud.")
@click.option("--latency-ms", default=0.0, show_default=True)
@click.option("--speed", default=1.0, show_default=True, help="Simulated time runs N× faster.")
@click.option("--seed", default=1, show_default=True)
def simulate(meters: int, buses: int, baud: int, latency_ms: float, speed: float,
             seed: int) -> None:
    """Run simulated DL/T 645 meters on pty buses and print the paths to open."""
    from collector.clock import SimulatedClock
    from simulator.bus import WireTiming
    from simulator.fleet import FleetSpec, build_fleet

    async def go() -> None:
        clock = SimulatedClock(datetime.now(UTC), speed)
        spec = FleetSpec(meters=meters, buses=buses, seed=seed, tz=ZoneInfo("Asia/Shanghai"),
                         timing=WireTiming(baud=baud, latency_s=latency_ms / 1000))
        fleet = build_fleet(spec, clock.now, clock.now() - timedelta(days=2))
        paths = await fleet.start()
        for i, path in enumerate(paths):
            addrs = [m.address for n, m in fleet.meters.items() if fleet.bus_of[n] == i]
            console.print(f"bus{i + 1}: {path}  meters {addrs[0]}…{addrs[-1]} ({len(addrs)})")
        console.print("Ctrl-C to stop", style="dim")
        sys.stdout.flush()
        try:
            await asyncio.Event().wait()
        finally:
            await fleet.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(go())


def _register() -> None:
    from collector.cli_flags import flags, plot, screen
    from collector.cli_ops import service
    from collector.cli_reports import db, report

    for command in (db, report, flags, screen, plot, service):
        main.add_command(command)


_register()

if __name__ == "__main__":
    main()
