"""`collector watch`: a meter's live values, refreshed in place, the last change
highlighted, until Ctrl-C; over DL/T 645, Modbus or the optical probe."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime

import click
from rich.live import Live
from rich.table import Table

from collector.cli.context import console, run_async
from collector.cli.field import (
    _address,
    _dlt645,
    _dlt645_meter,
    _line_options,
    _meter_options,
    _modbus_target,
    _need_port,
    modbus_profile,
)
from collector.cli.tables import fmt_value, quantity_name

Values = dict[str, tuple[float | str, str, int | None]]
"""OBIS → (value, unit, the decimals the meter gave it at)."""
LIVE = ("1-0:1.8.0", "1-0:2.8.0", "1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0", "1-0:31.7.0",
        "1-0:51.7.0", "1-0:71.7.0", "1-0:16.7.0", "1-0:131.7.0", "1-0:13.7.0", "1-0:14.7.0")


def live_table(title: str, now: Values, before: Values, changed_at: dict[str, datetime],
               when: datetime) -> Table:
    table = Table(title=f"{title}  ({when:%H:%M:%S})")
    for col in ("OBIS", "quantity", "value", "unit", "changed"):
        table.add_column(col, justify="right" if col == "value" else "left")
    for obis, (value, unit, decimals) in now.items():
        fresh = obis in before and before[obis][0] != value
        shown = fmt_value(value, unit, decimals)
        table.add_row(obis, quantity_name(obis), f"[bold yellow]{shown}[/]" if fresh else shown,
                      unit, f"{changed_at[obis]:%H:%M:%S}" if obis in changed_at else "")
    return table


async def watching(title: str, read: Callable[[], Awaitable[Values]], every_s: float,
                   count: int) -> int:
    before: Values = {}
    changed_at: dict[str, datetime] = {}
    n = 0
    # Piped to a file or a logger, a Live would show only its last frame, and nothing at
    # all if the watch is killed: there every refresh is printed in turn.
    live = Live(Table(title=title), console=console, refresh_per_second=4) \
        if console.is_terminal else None
    with live or contextlib.nullcontext():
        while count == 0 or n < count:
            now = await read()
            when = datetime.now().astimezone()
            for obis, (value, _, _) in now.items():
                if obis in before and before[obis][0] != value:
                    changed_at[obis] = when
            table = live_table(title, now, before, changed_at, when)
            if live is not None:
                live.update(table)
            else:
                console.print(table)
                console.file.flush()
            before = now
            n += 1
            if count == 0 or n < count:
                await asyncio.sleep(every_s)
    return n


@click.command()
@_line_options
@_meter_options
@click.option("--iec62056", "optical", metavar="PORT", help="An optical probe on this port.")
@click.option("--quantity", "quantities", multiple=True, help="OBIS code (repeatable).")
@click.option("--every", "every_s", type=float, default=2.0, show_default=True)
@click.option("--count", type=int, default=0, help="Stop after N refreshes (0: Ctrl-C).")
def watch(port: str | None, modbus_url: str | None, baud: int, parity: str,
          latency_ms: float, address: str | None, unit: int | None, profile_name: str | None,
          profile_dirs: tuple[str, ...], optical: str | None, quantities: tuple[str, ...],
          every_s: float, count: int) -> None:
    """Live values of one meter, refreshing in place, the last change in bold."""
    wanted = quantities or LIVE

    async def go() -> None:
        if optical:
            from protocols.iec62056.client import open_probe, read_out

            async def read_optical() -> Values:
                probe = await open_probe(optical)
                try:
                    got = await read_out(probe)
                finally:
                    await probe.close()
                return {d.obis: (d.number, d.unit, d.decimals)
                        if d.number is not None and d.unit else (d.value, d.unit, None)
                        for d in got.data if not quantities or d.obis in quantities}

            await watching(f"optical port {optical}", read_optical, every_s, count)
            return
        if modbus_url:
            from collector.field.tools import modbus_session, read_modbus

            profile = modbus_profile(unit, profile_name, profile_dirs,
                                     "watching a Modbus meter")
            assert unit is not None
            async with modbus_session(_modbus_target(modbus_url),
                                      timeout_s=latency_ms / 1000) as reader:
                async def read_modbus_once() -> Values:
                    got = await read_modbus(reader, unit, profile, quantities)
                    return {v.obis: (v.value, v.unit, v.decimals) for v in got.values}

                await watching(f"unit {unit} at {modbus_url}", read_modbus_once, every_s,
                               count)
            return
        from collector.field.tools import read_meter

        path, addr = _dlt645_meter(port, address, "watching a DL/T 645 meter")
        async with _dlt645(path, baud, parity, latency_ms) as client:
            async def read_dlt645() -> Values:
                got = await read_meter(client, addr, wanted)
                return {v.obis: (v.value, v.unit, v.decimals) for v in got.values}

            await watching(f"meter {addr} on {path}", read_dlt645, every_s, count)

    with contextlib.suppress(KeyboardInterrupt):
        run_async(go())


@click.command()
@_line_options
@click.option("--address", required=True, help="DL/T 645 address as printed.")
@click.option("--days", type=click.IntRange(1, 62), default=7, show_default=True)
@click.option("--timezone", "tz_name", default="Asia/Shanghai", show_default=True,
              help="The meter's local time zone.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document, for scripts.")
def history(port: str | None, modbus_url: str | None, baud: int, parity: str,
            latency_ms: float, address: str, days: int, tz_name: str, as_json: bool) -> None:
    """The meter's own memory: load-profile records, daily frozen values, events."""
    import json
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from rich.progress import Progress

    from collector.field.history import read_history

    if modbus_url:
        raise click.UsageError("meter memory is read from DL/T 645 meters (--port)")
    path = _need_port(port)
    addr = _address(address)
    tz = ZoneInfo(tz_name)

    async def go() -> object:
        async with _dlt645(path, baud, parity, latency_ms) as client:
            with Progress(console=console, transient=True, disable=as_json) as bar:
                task = bar.add_task("reading the meter's memory", total=None)
                return await read_history(
                    client, addr, days, tz, datetime.now(UTC),
                    lambda what, n, total: bar.update(task, description=f"reading {what}",
                                                      completed=n, total=total))

    got = run_async(go())
    from collector.field.history import MeterHistory

    assert isinstance(got, MeterHistory)
    if as_json:
        click.echo(json.dumps({
            "meter": addr, "profile": [{"ts": r.ts.isoformat(), "forward_kwh": r.forward_kwh,
                                        "reverse_kwh": r.reverse_kwh} for r in got.profile],
            "frozen": [{"at": a.isoformat(), "forward_kwh": f, "reverse_kwh": r}
                       for a, f, r in got.frozen],
            "events": got.events, "unsupported": got.unsupported}, indent=2))
        return
    frozen = Table(title=f"meter {addr}: daily frozen values (newest first)")
    for col in ("frozen at", "forward kWh", "reverse kWh", "day's kWh"):
        frozen.add_column(col, justify="right")
    def kwh(value: float) -> str:
        return fmt_value(value, "kWh", got.decimals)

    for (at, fwd, rev), older in zip(got.frozen, [*got.frozen[1:], None], strict=True):
        day = kwh(fwd - older[1]) if older else ""
        frozen.add_row(f"{at:%Y-%m-%d %H:%M}", kwh(fwd), kwh(rev), day)
    console.print(frozen)
    if got.profile:
        console.print(f"load profile: {len(got.profile)} records, "
                      f"{got.profile[0].ts:%Y-%m-%d %H:%M} to {got.profile[-1].ts:%Y-%m-%d %H:%M}"
                      f" (forward {kwh(got.profile[0].forward_kwh)} → "
                      f"{kwh(got.profile[-1].forward_kwh)} kWh)")
    words = {"cover_open": ("cover opening", "cover opened {start}, closed {end}"),
             "power_down": ("power failure", "power failed {start}, restored {end}"),
             "clock_set": ("clock setting", "clock set from {before} to {after} by operator "
                                            "{operator}")}
    for e in got.events:
        none, text = words[str(e["kind"])]
        console.print(f"events: no {none} on record" if e.get("none") else
                      "event: " + text.format(**{k: v if v is not None else "not yet"
                                                 for k, v in e.items()}))
    for what in got.unsupported:
        console.print(f"[yellow]the meter does not keep {what}[/]")
