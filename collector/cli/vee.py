"""`collector vee …` (run, status, history, edit, codes) and `collector meters replace`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click
from rich.table import Table

from collector.cli.context import config_group, console, with_store
from collector.config import settings as config_mod

TIME = click.DateTime(["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S",
                       "%Y-%m-%dT%H:%M:%S"])
DAY = click.DateTime(["%Y-%m-%d"])


def local(ts: datetime, settings: config_mod.Settings) -> datetime:
    """A time typed at the command line is local (the config's timezone)."""
    return ts.replace(tzinfo=settings.collector.tz).astimezone(UTC)


async def engine_for(store: Any, settings: config_mod.Settings) -> Any:
    from collector.vee.build import build_vee

    return build_vee(settings, store, settings.meters or await store.meters())


@config_group
def vee() -> None:
    """Validated reads: run VEE, see what is held and why, edit values, see their history."""


@vee.command("run")
@click.option("--from", "first", type=DAY, default=None, help="First local day (default: "
              "the day before --to).")
@click.option("--to", "last", type=DAY, default=None, help="Last local day (default: today).")
@click.pass_context
def vee_run(ctx: click.Context, first: datetime | None, last: datetime | None) -> None:
    """Estimate gaps and judge every meter-day in the span; a rerun changes nothing."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        engine = await engine_for(store, settings)
        now = datetime.now(UTC)
        end = last.date() if last else now.astimezone(settings.collector.tz).date()
        start = first.date() if first else end - timedelta(days=1)
        run = await engine.run(start, end, now)
        console.print(run.summary())
        console.print(f"{run.versions} new versions written, {run.flags} flags raised")

    with_store(ctx.obj["config"], use)


@vee.command("status")
@click.option("--area", default=None, help="Only this transformer area.")
@click.option("--day", type=DAY, default=None, help="Local day (default: yesterday).")
@click.option("--days", type=click.IntRange(1, 366), default=1, show_default=True,
              help="How many days up to --day.")
@click.pass_context
def vee_status(ctx: click.Context, area: str | None, day: datetime | None, days: int) -> None:
    """Per service point and day: ready for billing, or held and by which rule."""
    from collector.vee.status import readiness

    async def use(store: Any, settings: config_mod.Settings) -> None:
        tz = settings.collector.tz
        last = day.date() if day else datetime.now(tz).date() - timedelta(days=1)
        first = last - timedelta(days=days - 1)
        meters = settings.meters or await store.meters()
        r = await readiness(store, first, last, tz, meters, area)
        console.print(f"{first} … {last}{' area ' + area if area else ''}: {r.points} "
                      f"service point-days: {r.validated} validated ({r.estimated} with "
                      f"estimates), {r.held} held")
        if r.held_by:
            console.print("held by: " + ", ".join(f"{k} {n}" for k, n in
                                                  r.held_by.most_common()))
        if r.worst:
            table = Table(title="Most held service points")
            for col in ("service point", "held days", "rules"):
                table.add_column(col)
            for point, n, rules in r.worst:
                table.add_row(point, str(n), ", ".join(rules))
            console.print(table)

    with_store(ctx.obj["config"], use)


@vee.command("history")
@click.argument("meter_id")
@click.option("--quantity", default="1-0:1.8.0", show_default=True)
@click.option("--at", "at", type=TIME, default=None, help="One local time.")
@click.option("--from", "start", type=TIME, default=None)
@click.option("--to", "end", type=TIME, default=None)
@click.pass_context
def vee_history(ctx: click.Context, meter_id: str, quantity: str, at: datetime | None,
                start: datetime | None, end: datetime | None) -> None:
    """Every version of the values: raw read, estimates and edits, with who, when and why."""
    if at is None and (start is None or end is None):
        raise click.UsageError("give --at, or both --from and --to")

    async def use(store: Any, settings: config_mod.Settings) -> None:
        lo = local(at or start, settings)  # type: ignore[arg-type]
        hi = local(at or end, settings)  # type: ignore[arg-type]
        rows = await store.value_history(meter_id, quantity, lo, hi)
        table = Table(title=f"{meter_id} {quantity}")
        for col in ("time", "v", "value", "quality", "method", "reason", "by", "when",
                    "note"):
            table.add_column(col)
        tz = settings.collector.tz
        for v in rows:
            table.add_row(v.ts.astimezone(tz).strftime("%Y-%m-%d %H:%M"), str(v.version),
                          "null" if v.value is None else f"{v.value:.3f}", str(v.quality),
                          v.method, v.reason, v.actor or "meter",
                          v.created_at.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                          if v.created_at else "", v.note)
        console.print(table)
        if not rows:
            console.print("no values in that span")

    with_store(ctx.obj["config"], use)


@vee.command("edit")
@click.argument("meter_id")
@click.option("--quantity", default="1-0:1.8.0", show_default=True)
@click.option("--from", "start", type=TIME, required=True, help="First local time edited.")
@click.option("--to", "end", type=TIME, required=True, help="Last local time edited.")
@click.option("--value", type=float, default=None, help="Set this value at each time.")
@click.option("--method", type=click.Choice(["linear", "like-day"]), default=None,
              help="Re-estimate the span from the actual reads around it.")
@click.option("--reason", default="", help="Reason code (see `collector vee codes`).")
@click.option("--note", default="", help="Free text kept with the edit.")
@click.option("--by", "by", default="", help="Who makes the edit.")
@click.pass_context
def vee_edit(ctx: click.Context, meter_id: str, quantity: str, start: datetime,
             end: datetime, value: float | None, method: str | None, reason: str,
             note: str, by: str) -> None:
    """Substitute values by hand; refused without a reason code and an author."""
    from collector.vee.edit import edit

    async def use(store: Any, settings: config_mod.Settings) -> None:
        engine = await engine_for(store, settings)
        written = await edit(engine, meter_id, quantity, local(start, settings),
                             local(end, settings), value=value, method=method,
                             reason=reason, note=note, by=by, now=datetime.now(UTC))
        console.print(f"{written} value(s) edited by {by} (reason {reason})")

    with_store(ctx.obj["config"], use)


@vee.command("codes")
def vee_codes() -> None:
    """The method and reason codes VEE and edits use (NEM12 numbering)."""
    from collector.vee import codes

    for title, table in (("methods", codes.METHODS), ("reasons", codes.REASONS)):
        console.print(f"[bold]{title}[/]")
        for code, text in table.items():
            console.print(f"  {code:>3}  {text}")


@config_group
def meters() -> None:
    """Meters and the service points they serve: replacements and CT changes."""


@meters.command("replace")
@click.argument("old_id")
@click.argument("new_id")
@click.option("--at", "at", type=TIME, required=True, help="Local time of the swap.")
@click.option("--old-final", type=float, required=True, help="Old meter's final register.")
@click.option("--new-start", type=float, required=True, help="New meter's start register.")
@click.option("--multiplier", type=float, default=None,
              help="New CT × VT ratio (default: unchanged). With OLD_ID = NEW_ID this "
                   "records a ratio change on the same meter.")
@click.pass_context
def meters_replace(ctx: click.Context, old_id: str, new_id: str, at: datetime,
                   old_final: float, new_start: float, multiplier: float | None) -> None:
    """Record a meter replacement (换表) on the old meter's service point."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        made = await store.record_replacement(old_id, new_id, local(at, settings), old_final,
                                              new_start, multiplier)
        console.print(f"service point {made.service_point_id}: {old_id} → {new_id} at "
                      f"{at:%Y-%m-%d %H:%M}, old final {old_final}, new start {new_start}, "
                      f"multiplier {made.multiplier:g}")

    with_store(ctx.obj["config"], use)


@meters.command("history")
@click.argument("service_point")
@click.pass_context
def meters_history(ctx: click.Context, service_point: str) -> None:
    """The meters a service point has had, with their swap reads and multipliers."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        tz = settings.collector.tz
        rows = await store.assignments(service_point) or await store.assignments(
            meter_id=service_point)
        table = Table(title=f"service point {service_point}")
        for col in ("meter", "from", "to", "start read", "final read", "multiplier"):
            table.add_column(col)
        for a in rows:
            table.add_row(a.meter_id, a.start.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                          if a.start else "", a.end.astimezone(tz).strftime("%Y-%m-%d %H:%M")
                          if a.end else "", "" if a.start_read is None else str(a.start_read),
                          "" if a.final_read is None else str(a.final_read), f"{a.multiplier:g}")
        console.print(table)

    with_store(ctx.obj["config"], use)


