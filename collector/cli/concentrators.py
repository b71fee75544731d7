"""`collector concentrators` and `collector frame decode`: the front end seen by people.

Both read what is stored or what is pasted, never a live link: the daemon owns the
links, and an operator's question must not disturb a terminal mid-collection.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from collector.acquisition.q1376.states import terminal_states
from collector.cli.context import CONFIG_OPTION, EXIT_DEVICE, console, with_store
from collector.config import settings as config_mod
from protocols.errors import ProtocolError
from storage import Store


@click.command()
@CONFIG_OPTION
@click.option("--days", default=30, show_default=True, help="How far back to look.")
@click.option("--json", "as_json", is_flag=True, help="One object per terminal.")
def concentrators(config_path: str, days: int, as_json: bool) -> None:
    """Each concentrator: online or offline, last heard, its points, collected through."""

    async def use(store: Store, settings: config_mod.Settings) -> list[dict[str, Any]]:
        states = await terminal_states(store, settings.q1376, datetime.now(UTC), days)
        return [s.as_json() for s in states]

    rows = with_store(config_path, use)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    table = Table(title="Concentrators (Q/GDW 1376.1)")
    for col in ("terminal", "address", "area", "state", "since", "last heard", "points",
                "collected through"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(escape(str(r[k] if r[k] is not None else "—")) for k in (
            "terminal", "address", "area", "state", "since", "last_heard", "points",
            "collected_through")))
    console.print(table)


@click.group()
def frame() -> None:
    """Frame tools: decode a DL/T 645 or Q/GDW 1376.1 frame field by field."""


@frame.command("decode")
@click.argument("hex_bytes", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="The fields as JSON.")
def frame_decode(hex_bytes: tuple[str, ...], as_json: bool) -> None:
    """Decode one frame (hex, spaces allowed); the protocol is told from the bytes."""
    from collector.field.frames import decode_any, parse_hex

    try:
        fields = decode_any(parse_hex(" ".join(hex_bytes)))
    except ProtocolError as exc:
        console.print(f"[red]not a valid frame:[/] {escape(exc.message)}", highlight=False)
        raise SystemExit(EXIT_DEVICE) from None
    if as_json:
        click.echo(json.dumps(fields, indent=1, ensure_ascii=False))
        return
    table = Table(title=str(fields.pop("protocol")), show_header=False)
    table.add_column("field")
    table.add_column("value")
    units = fields.pop("units", None)
    for key, value in fields.items():
        table.add_row(key, escape(json.dumps(value, ensure_ascii=False)
                                  if isinstance(value, dict | list) else str(value)))
    for i, unit in enumerate(units or []):
        table.add_row(f"unit {i + 1}", escape(f"p{unit['pn']} F{unit['fn']}"))
        if "value" in unit:
            table.add_row("", escape(json.dumps(unit["value"], ensure_ascii=False)))
        elif unit["data"]:
            table.add_row("", escape(unit["data"]))
    console.print(table)
