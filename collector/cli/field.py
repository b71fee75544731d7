"""`collector read`, `scan` and `clock`: one meter or one bus, in front of a technician."""

from __future__ import annotations

import json
import sys
from contextlib import AbstractAsyncContextManager
from typing import Any
from zoneinfo import ZoneInfo

import click
from rich.markup import escape
from rich.progress import Progress

from collector.cli.context import EXIT_CONFIG, console, run_async
from collector.cli.tables import values_table
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.serial import LineSettings


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


def _meter_options(f: Any) -> Any:
    """Which meter: a DL/T 645 address, or a Modbus unit id with its profile."""
    f = click.option("--profile-dir", "profile_dirs", multiple=True,
                     help="Extra profile directory.")(f)
    f = click.option("--profile", "profile_name", help="Modbus profile, e.g. sdm630.")(f)
    f = click.option("--unit", type=click.IntRange(1, 247), help="Modbus unit id.")(f)
    f = click.option("--address", help="DL/T 645 address as printed, e.g. 000000000001.")(f)
    return f


def _address(value: str) -> str:
    text = value.strip().zfill(12)
    if len(text) != 12 or not text.isdigit():
        raise click.BadParameter(f"{value!r} is not a 12-digit meter address")
    return text


def _modbus_target(url: str) -> Any:
    from collector.field.tools import ModbusTarget

    try:
        return ModbusTarget.parse(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--modbus") from None


def _need_port(port: str | None) -> str:
    if not port:
        raise click.UsageError("give --port for a DL/T 645 bus, or --modbus URL")
    return port


def _dlt645_meter(port: str | None, address: str | None, what: str) -> tuple[str, str]:
    """The bus and the meter's address, which `what` (e.g. "a DL/T 645 read") needs."""
    path = _need_port(port)
    if not address:
        raise click.UsageError(f"{what} needs --address")
    return path, _address(address)


def _dlt645(port: str, baud: int, parity: str, latency_ms: float,
            **settings: Any) -> AbstractAsyncContextManager[Dlt645Client]:
    """A DL/T 645 client on the port as every field command opens it; `settings` are
    further ClientSettings (a scan asks for no retries)."""
    from collector.field.tools import dlt645_session

    return dlt645_session(port, LineSettings(baud, parity),
                          ClientSettings(latency_s=latency_ms / 1000, **settings))


@click.command()
@_line_options
@_meter_options
@click.option("--quantity", "quantities", multiple=True,
              help="OBIS code to read (repeatable); default: energy, V, I, P, PF, Hz.")
@click.option("--iec62056", "optical", metavar="PORT",
              help="An optical probe (IEC 62056-21 mode C) on this port instead.")
@click.option("--max-baud", type=int, default=None,
              help="With --iec62056: never switch above this speed.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def read(port: str | None, modbus_url: str | None, baud: int, parity: str, latency_ms: float,
         address: str | None, unit: int | None, profile_name: str | None,
         profile_dirs: tuple[str, ...], quantities: tuple[str, ...], optical: str | None,
         max_baud: int | None, as_json: bool) -> None:
    """Read one meter once and show its values with units."""
    from collector.field.tools import DEFAULT_READ, read_meter

    if optical:
        _read_optical(optical, address or "", max_baud, quantities, as_json)
        return
    if modbus_url:
        _read_modbus(modbus_url, unit, profile_name, profile_dirs, quantities, latency_ms)
        return
    port, addr = _dlt645_meter(port, address, "a DL/T 645 read")

    async def go() -> None:
        async with _dlt645(port, baud, parity, latency_ms) as client:
            outcome = await read_meter(client, addr, quantities or DEFAULT_READ)
        if as_json:
            click.echo(json.dumps({"meter": addr, "port": port, "values": [
                {"obis": v.obis, "value": v.value, "unit": v.unit} for v in outcome.values],
                "problems": outcome.problems}, indent=2))
            sys.exit(1 if outcome.problems else 0)
        console.print(values_table(f"meter {addr} on {port}",
                                   [(v.obis, v.value, v.unit, v.decimals)
                                    for v in outcome.values]))
        for problem in outcome.problems:
            console.print(f"[yellow]meter {addr}: {problem}[/]")
        if outcome.problems:
            sys.exit(1)  # what was read is shown; a script still learns something is missing

    run_async(go())


def _read_optical(path: str, address: str, max_baud: int | None,
                  quantities: tuple[str, ...], as_json: bool) -> None:
    from protocols.iec62056.client import open_probe, read_out

    async def go() -> None:
        port = await open_probe(path)
        try:
            got = await read_out(port, address, max_baud)
        finally:
            await port.close()
        rows = [d for d in got.data if not quantities or d.obis in quantities]
        who = (f"{got.identification.manufacturer} {got.identification.identification} "
               f"via {path} at {got.baud} baud")
        if as_json:
            click.echo(json.dumps({"meter": who, "values": [
                {"obis": d.obis, "address": d.address, "value": d.number
                 if d.number is not None else d.value, "unit": d.unit, "extra": list(d.extra)}
                for d in rows]}, indent=2))
            return
        # Numbers with a unit are quantities; the rest (a serial, a time, an error
        # register) are shown as the meter wrote them.
        console.print(values_table(who, [
            (d.obis, d.number, d.unit, d.decimals) if d.number is not None and d.unit
            else (d.obis, d.value, d.unit, None) for d in rows]))

    run_async(go())


def modbus_profile(unit: int | None, profile_name: str | None,
                   profile_dirs: tuple[str, ...], what: str) -> Any:
    """The profile a Modbus command names; a usage error without --unit and --profile,
    and a profile mistake as one line with the config exit code."""
    from protocols.modbus.profile import ProfileError, find_profile

    if unit is None or not profile_name:
        raise click.UsageError(f"{what} needs --unit and --profile")
    try:
        return find_profile(profile_name, profile_dirs)
    except ProfileError as exc:
        console.print(f"[red]profile error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)


def _read_modbus(url: str, unit: int | None, profile_name: str | None,
                 profile_dirs: tuple[str, ...], quantities: tuple[str, ...],
                 latency_ms: float) -> None:
    from collector.field.tools import modbus_session, read_modbus

    target = _modbus_target(url)
    profile = modbus_profile(unit, profile_name, profile_dirs, "a Modbus read")
    assert unit is not None

    async def go() -> None:
        async with modbus_session(target, timeout_s=latency_ms / 1000) as reader:
            outcome = await read_modbus(reader, unit, profile, quantities)
        console.print(values_table(f"{profile.manufacturer} {profile.model} unit {unit} at {url}",
                                   [(v.obis, v.value, v.unit, v.decimals)
                                    for v in outcome.values]))
        for problem in outcome.problems:
            console.print(f"[yellow]{problem}[/]")

    run_async(go())


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


def _scan_modbus(url: str, latency_ms: float, units: range, as_json: bool = False) -> None:
    from collector.field.tools import modbus_session, scan_modbus

    target = _modbus_target(url)

    async def go() -> list[int]:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("probing unit ids", total=len(units))
            async with modbus_session(target, timeout_s=latency_ms / 1000, retries=0) as reader:
                return await scan_modbus(
                    reader, units, on_probe=lambda u: progress.update(
                        task, completed=u - units.start + 1, description=f"probing unit {u}"))

    found = run_async(go())
    if as_json:
        click.echo(json.dumps({"url": url, "units": found}))
        sys.exit(0 if found else 1)
    if not found:
        console.print(f"no Modbus device answered at {url}")
        sys.exit(1)
    console.print("responding unit ids: " + ", ".join(map(str, found)))
    console.print(f"{len(found)} device(s) at {url}")


@click.command()
@_line_options
@click.option("--units", "unit_text", default="1-247", show_default=True,
              help="Modbus unit ids to probe, e.g. 1-32.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def scan(port: str | None, modbus_url: str | None, baud: int, parity: str,
         latency_ms: float, unit_text: str, as_json: bool) -> None:
    """Find the meters on a bus: DL/T 645 addresses, or Modbus unit ids 1-247."""
    from collector.field.tools import scan_bus

    if modbus_url:
        _scan_modbus(modbus_url, latency_ms, _unit_range(unit_text), as_json)
        return
    port = _need_port(port)

    async def go() -> list[str]:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("probing", total=None)

            def on_probe(pattern: str, n: int, total: int) -> None:
                progress.update(task, description=f"probing {pattern}", total=total,
                                completed=n + 1)

            async with _dlt645(port, baud, parity, latency_ms, retries=0) as client:
                return await scan_bus(client, on_probe)

    found = run_async(go())
    if as_json:
        click.echo(json.dumps({"port": port, "addresses": found}))
        sys.exit(0 if found else 1)
    if not found:
        console.print(f"no meter answered on {port}")
        sys.exit(1)
    for address in found:
        console.print(address)
    console.print(f"{len(found)} meter(s) on {port}")


@click.command()
@_line_options
@click.option("--address", required=True)
@click.option("--timezone", "tz_name", default="Asia/Shanghai", show_default=True,
              help="The meter's local time zone.")
@click.option("--sync", is_flag=True, help="Broadcast a time sync, then check again.")
@click.option("--force", is_flag=True,
              help="Sync even when the offset is whole hours (a likely time-zone mistake).")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def clock(port: str | None, modbus_url: str | None, baud: int, parity: str,
          latency_ms: float, address: str, tz_name: str, sync: bool, force: bool,
          as_json: bool) -> None:
    """Show a DL/T 645 meter clock's offset from this machine, and optionally sync it."""
    from collector.acquisition.clock import looks_like_zone_error
    from collector.field.tools import check_clock, sync_clock

    if modbus_url:
        raise click.UsageError("clock checks are for DL/T 645 meters (--port)")
    port = _need_port(port)
    addr = _address(address)
    tz = ZoneInfo(tz_name)

    async def go() -> None:
        async with _dlt645(port, baud, parity, latency_ms) as client:
            before = await check_clock(client, addr, tz)
            if as_json and not sync:
                click.echo(json.dumps({"meter": addr, "meter_time": before.meter_time.isoformat(),
                                       "server_time": before.server_time.isoformat(),
                                       "offset_s": round(before.offset_s, 1)}))
                return
            console.print(
                f"meter {addr}: {before.meter_time:%Y-%m-%d %H:%M:%S %Z}, "
                f"server {before.server_time.astimezone(tz):%Y-%m-%d %H:%M:%S %Z}, "
                f"offset {round(before.offset_s):+d} s"
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
                console.print(f"after sync: offset {round(after.offset_s):+d} s")

    run_async(go())
