"""`collector db …` and `collector report …`: schema management and read-only views."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
from rich.table import Table

from collector.cli.context import CONFIG_OPTION, console, with_store
from collector.cli.tables import collection_table, consumption_table, fmt_value, series_table
from collector.config import settings as config_mod
from storage import Store


@click.group()
def db() -> None:
    """Database schema management."""


@db.command("migrate")
@CONFIG_OPTION
def db_migrate(config_path: str) -> None:
    """Apply pending migrations (idempotent); enables TimescaleDB features when present."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        applied = await store.migrate()
        timescale = getattr(store, "timescale", False)
        if applied:
            console.print(f"applied: {', '.join(applied)}")
        else:
            console.print("schema is up to date")
        if settings.storage.url.startswith("postgres"):
            console.print(
                "TimescaleDB: " + ("hypertables, compression and continuous aggregates in use"
                                   if timescale else "not installed; plain PostgreSQL tables "
                                   "and views")
            )

    with_store(config_path, use)


@click.group()
def report() -> None:
    """Read-only reports from the store."""


def _window(days: int) -> tuple[datetime, datetime]:
    end = datetime.now(UTC) + timedelta(days=1)
    return end - timedelta(days=days + 1), end


@report.command("collection")
@CONFIG_OPTION
@click.option("--by", type=click.Choice(["meter", "bus", "gateway", "area"]), default="meter",
              show_default=True)
@click.option("--days", default=7, show_default=True)
@click.option("--worst", default=0, help="Show only the N groups with the lowest success rate.")
def report_collection(config_path: str, by: str, days: int, worst: int) -> None:
    """Collection success per meter, bus, gateway or area and day."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        start, end = _window(days)
        rows = await store.collection_summary(start, end, by=by, tz=settings.collector.timezone)
        if worst:
            rows = sorted(rows, key=lambda r: (r.success_rate, -r.attempts))[:worst]
        console.print(collection_table(rows, by))

    with_store(config_path, use)


@report.command("latest")
@CONFIG_OPTION
@click.option("--meter", "meters", multiple=True, help="Meter id (repeatable); default all.")
def report_latest(config_path: str, meters: tuple[str, ...]) -> None:
    """The latest value of every quantity of every meter."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        rows = await store.latest_readings(list(meters) or None)
        table = Table(title="Latest readings")
        for col in ("meter", "quantity", "time", "value", "unit", "quality"):
            table.add_column(col, justify="right" if col == "value" else "left")
        tz = settings.collector.tz
        for r in rows:
            table.add_row(r.meter_id, r.quantity, f"{r.ts.astimezone(tz):%Y-%m-%d %H:%M}",
                          fmt_value(r.value, r.unit), r.unit, r.quality.value)
        console.print(table)

    with_store(config_path, use)


@report.command("series")
@CONFIG_OPTION
@click.argument("meter")
@click.option("--quantity", default="1-0:1.8.0", show_default=True)
@click.option("--days", default=1, show_default=True)
def report_series(config_path: str, meter: str, quantity: str, days: int) -> None:
    """One meter's interval series for one quantity."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        start, end = _window(days)
        rows = await store.series(meter, quantity, start, end)
        tz = settings.collector.tz
        console.print(series_table(
            f"{meter} {quantity}",
            [(f"{r.ts.astimezone(tz):%Y-%m-%d %H:%M}", r.value, r.unit, r.quality.value)
             for r in rows]))

    with_store(config_path, use)


@report.command("daily")
@CONFIG_OPTION
@click.option("--by", type=click.Choice(["meter", "area"]), default="meter", show_default=True)
@click.option("--days", default=7, show_default=True)
def report_daily(config_path: str, by: str, days: int) -> None:
    """Daily forward active energy per meter or per transformer area (local days)."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        start, end = _window(days)
        rows = await store.daily_consumption(start, end, by=by, tz=settings.collector.timezone)
        console.print(consumption_table(rows, by))

    with_store(config_path, use)
