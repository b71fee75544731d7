"""`collector wiring`: is this meter wired right, and if not, what to change."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from collector.cli.context import console, run_async
from collector.cli.field import (
    _dlt645,
    _dlt645_meter,
    _line_options,
    _meter_options,
    _modbus_target,
    modbus_profile,
)


@click.command()
@_line_options
@_meter_options
@click.option("--connection", type=click.Choice(["3P4W", "3P3W", "1P"]), default="3P4W",
              show_default=True, help="How the meter is connected.")
@click.option("--exporter", is_flag=True, help="A PV customer: reverse power is expected.")
@click.option("--samples", type=click.IntRange(1, 20), default=3, show_default=True,
              help="Readings taken, to check they are steady.")
@click.option("--every", "every_s", type=float, default=1.0, show_default=True,
              help="Seconds between readings.")
@click.option("--nominal", "nominal_v", type=float, default=220.0, show_default=True,
              help="Nominal phase voltage (line voltage for 3P3W).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False),
              help="Draw the phasor diagram to this PNG.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def wiring(port: str | None, modbus_url: str | None, baud: int, parity: str,
           latency_ms: float, address: str | None, unit: int | None,
           profile_name: str | None, profile_dirs: tuple[str, ...], connection: str,
           exporter: bool, samples: int, every_s: float, nominal_v: float,
           plot_path: str | None, as_json: bool) -> None:
    """Check a meter's wiring from its phase voltages, currents and angles. Exits 0 when
    the wiring is right, 1 when it is not or cannot be checked now."""
    from collector.field.phasor_plot import ascii_diagram, plot_png
    from collector.field.wiring import QUANTITIES, SINGLE, diagnose

    wanted = SINGLE if connection == "1P" else QUANTITIES

    async def take(read_once: Any) -> list[dict[str, float]]:
        out = []
        for n in range(samples):
            if n:
                await asyncio.sleep(every_s)
            out.append(await read_once())
        return out

    if modbus_url:
        readings = run_async(_modbus_samples(modbus_url, unit, profile_name, profile_dirs,
                                             wanted, latency_ms, take))
        where = f"unit {unit} at {modbus_url}"
    else:
        port, addr = _dlt645_meter(port, address, "a DL/T 645 wiring check")
        readings = run_async(_dlt645_samples(port, addr, baud, parity, latency_ms, wanted,
                                             take))
        where = f"meter {addr} on {port}"
    if not readings or not any(readings):
        console.print(f"[red]error:[/] {where} gave none of the phase quantities")
        sys.exit(1)
    report = diagnose(readings, connection, exporter, nominal_v)
    if plot_path:
        plot_png(report, plot_path, f"{where}: {report.verdict}")
    if as_json:
        click.echo(json.dumps({"meter": where, **report.as_json()}, indent=2))
    else:
        _print(report, where, ascii_diagram(report) if not plot_path else "")
        if plot_path:
            console.print(f"phasor diagram written to {plot_path}")
    sys.exit(0 if report.ok else 1)


async def _dlt645_samples(port: str, address: str, baud: int, parity: str, latency_ms: float,
                          wanted: tuple[str, ...], take: Any) -> list[dict[str, float]]:
    from collector.field.tools import read_meter

    async with _dlt645(port, baud, parity, latency_ms) as client:
        async def once() -> dict[str, float]:
            got = await read_meter(client, address, wanted)
            return {v.obis: v.value for v in got.values}

        samples: list[dict[str, float]] = await take(once)
        return samples


async def _modbus_samples(url: str, unit: int | None, profile_name: str | None,
                          profile_dirs: tuple[str, ...], wanted: tuple[str, ...],
                          latency_ms: float, take: Any) -> list[dict[str, float]]:
    from collector.field.tools import modbus_session, read_modbus

    target = _modbus_target(url)
    profile = modbus_profile(unit, profile_name, profile_dirs, "a Modbus wiring check")
    assert unit is not None
    async with modbus_session(target, timeout_s=latency_ms / 1000) as reader:
        async def once() -> dict[str, float]:
            got = await read_modbus(reader, unit, profile, wanted)
            return {v.obis: v.value for v in got.values}

        samples: list[dict[str, float]] = await take(once)
        return samples


def _print(report: Any, where: str, diagram: str) -> None:
    from collector.field.wiring import AMPS, ANGLES, PFS, VARS, VOLTS, WATTS

    table = Table(title=f"{where}: {report.connection}, {report.samples} readings"
                        + ("" if report.steady else " (not steady)"))
    table.add_column("phase")
    for head in ("U V", "I A", "U→I °", "P kW", "Q kvar", "PF"):
        table.add_column(head, justify="right")
    for k, phase in enumerate("ABC"):
        row = [report.values.get(q[k]) for q in (VOLTS, AMPS, ANGLES, WATTS, VARS, PFS)]
        if all(v is None for v in row):
            continue
        table.add_row(phase, *("–" if v is None else f"{v:.3f}" if abs(v) < 10 else
                               f"{v:.1f}" for v in row))
    console.print(table)
    if diagram:
        console.print(escape(diagram), highlight=False)
    colour = {True: "green", False: "red", None: "yellow"}[report.ok]
    sure = f" (confidence {report.confidence})" if report.confidence else ""
    console.print(f"[bold {colour}]{escape(report.verdict)}[/]{sure}")
    for fix in report.fixes:
        console.print(f"  fix: {escape(fix)}")
    for note in report.notes:
        console.print(f"  note: {escape(note)}")
