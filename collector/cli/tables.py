"""Rich tables shared by the CLI commands, so every view formats values the same way."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import tzinfo

from rich.table import Table

from collector.acquisition.scheduler import MeterStats
from model import Reading
from model.resolution import at_resolution, decimals_in
from protocols.dlt645 import data_ids
from storage.base import CollectionRow, DailyConsumption, FlagRow

_NAMES: dict[str, str] = {
    item.obis[0]: item.name for item in data_ids.ITEMS.values() if not item.is_block
}
_NAMES[data_ids.CLOCK_OFFSET_OBIS] = "clock offset (meter − server)"


def quantity_name(obis: str) -> str:
    return _NAMES.get(obis, "")


_USUAL_DECIMALS = {"kWh": 2, "kvarh": 2, "kW": 4, "kvar": 4, "A": 3, "V": 1, "°": 1, "s": 1,
                   "count": 0}
_GROUPED = frozenset({"kWh", "kvarh", "kW", "kvar"})


def fmt_value(value: float | str, unit: str, decimals: int | None = None) -> str:
    """At the resolution the meter gave (`decimals`, from its protocol) when known;
    otherwise at the unit's usual decimals, or more where the value holds more digits:
    a view never rounds away a digit the meter sent."""
    if isinstance(value, str):
        return value  # a meter's text field (a serial, a date, an error register)
    if decimals is None:
        decimals = max(_USUAL_DECIMALS.get(unit, 0), decimals_in([value]))
    return at_resolution(value, decimals, grouped=unit in _GROUPED)


def values_table(title: str, values: Iterable[tuple[str, float | str, str, int | None]]
                 ) -> Table:
    """(OBIS, value, unit, the meter's decimals or None) per row."""
    table = Table(title=title)
    table.add_column("OBIS")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for obis, value, unit, decimals in values:
        table.add_row(obis, quantity_name(obis), fmt_value(value, unit, decimals), unit)
    return table


def series_table(title: str, rows: Iterable[tuple[str, float, str, str]]) -> Table:
    """One resolution for the whole column: the fewest decimals that show every stored
    value, so the digits line up and none is rounded away."""
    listed = list(rows)
    decimals = decimals_in(value for _, value, _, _ in listed)
    table = Table(title=title)
    table.add_column("time (local)")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("quality")
    for when, value, unit, quality in listed:
        table.add_row(when, fmt_value(value, unit, max(decimals, _USUAL_DECIMALS.get(unit, 0))),
                      unit, quality)
    return table


def meter_summary_table(
    meters: Sequence[tuple[str, str]],
    stats: Mapping[str, MeterStats],
    latest: Sequence[Reading],
    injected: Mapping[str, str],
) -> Table:
    by_meter: dict[str, dict[str, Reading]] = {}
    for r in latest:
        by_meter.setdefault(r.meter_id, {})[r.quantity] = r
    table = Table(title="Collection per meter")
    for col, justify in (
        ("meter", "left"), ("bus", "left"), ("reads", "right"), ("success", "right"),
        ("timeouts", "right"), ("errors", "right"), ("forward kWh", "right"),
        ("reverse kWh", "right"), ("clock s", "right"), ("injected fault", "left"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for meter_id, bus in meters:
        s = stats.get(meter_id, MeterStats())
        latest_values = by_meter.get(meter_id, {})
        rate = s.ok / s.attempts if s.attempts else 0.0
        style = "green" if rate >= 0.99 else "yellow" if rate >= 0.8 else "red"

        def value(obis: str, unit: str, latest_values: dict[str, Reading] = latest_values) -> str:
            r = latest_values.get(obis)
            return fmt_value(r.value, unit) if r else "—"

        table.add_row(
            meter_id, bus, str(s.attempts), f"[{style}]{rate:.1%}[/]", str(s.timeouts),
            str(s.errors), value("1-0:1.8.0", "kWh"), value("1-0:2.8.0", "kWh"),
            value(data_ids.CLOCK_OFFSET_OBIS, "s"), injected.get(meter_id, ""),
        )
    return table


def flags_table(rows: Sequence[FlagRow], tz: tzinfo, title: str = "Open flags") -> Table:
    table = Table(title=title)
    for col in ("id", "subject", "kind", "severity", "since (local)", "evidence"):
        table.add_column(col)
    for r in rows:
        f = r.flag
        style = "red" if f.severity == "critical" else "yellow"
        table.add_row(str(r.id), f.subject, f"[{style}]{f.kind}[/]", f.severity,
                      f"{f.start.astimezone(tz):%Y-%m-%d %H:%M}", evidence_summary(f.evidence))
    return table


def evidence_summary(evidence: Mapping[str, object]) -> str:
    for key in ("diagnosis", "reasons", "phase", "loss_rate_recent", "max_offset_s",
                "missing_intervals", "hint"):
        if key in evidence:
            return f"{key}: {evidence[key]}"[:70]
    return json.dumps(evidence, default=str)[:70]


def collection_table(rows: Sequence[CollectionRow], by: str, *, latency: bool = True) -> Table:
    """`latency=False` leaves out the round-trip times: they are wall-clock figures of
    this machine, and a table meant to read the same on every run cannot hold them."""
    table = Table(title=f"Collection success per {by} and day")
    columns = (by, "day", "attempts", "ok", "timeouts", "errors", "success",
               *(("avg ms",) if latency else ()), "last error")
    for col in columns:
        table.add_column(col, justify="left" if col in (by, "day", "last error") else "right")
    for r in rows:
        table.add_row(
            r.group, r.day, str(r.attempts), str(r.ok), str(r.timeouts), str(r.errors),
            f"{r.success_rate:.1%}", *((f"{r.avg_latency_ms:.0f}",) if latency else ()),
            r.last_error[:60],
        )
    return table


def consumption_table(rows: Sequence[DailyConsumption], by: str) -> Table:
    table = Table(title=f"Daily consumption per {by}")
    table.add_column(by)
    table.add_column("day")
    table.add_column("kWh", justify="right")
    for r in rows:
        table.add_row(r.subject, r.day, f"{r.kwh:,.2f}")
    return table
