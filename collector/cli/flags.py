"""`collector flags …`, `collector screen` and `collector plot`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.table import Table

from collector.cli.context import CONFIG_OPTION, console, with_store
from collector.cli.tables import flags_table

if TYPE_CHECKING:
    from collector.flags.screening import ScreenResult
from collector.config import settings as config_mod
from storage import Store


@click.group(invoke_without_command=True)
@CONFIG_OPTION
@click.option("--kind", help="Only this kind (stopped, theft, high_line_loss, …).")
@click.option("--area", help="Only this transformer area.")
@click.option("--open", "open_only", is_flag=True, help="Only flags not yet cleared.")
@click.pass_context
def flags(ctx: click.Context, config_path: str, kind: str | None, area: str | None,
          open_only: bool) -> None:
    """Flags raised about meters and areas: list them, show one, clear one, run a pass."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    if ctx.invoked_subcommand is not None:
        return

    async def use(store: Store, settings: config_mod.Settings) -> None:
        rows = await store.list_flags(kind, area, open_only)
        console.print(flags_table(rows, settings.collector.tz, title="Flags"))
        console.print(f"{len(rows)} flag(s)")

    with_store(config_path, use)


@flags.command("show")
@click.argument("flag_id", type=int)
@click.pass_context
def flags_show(ctx: click.Context, flag_id: int) -> None:
    """Everything a flag carries, evidence included."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        row = next((r for r in await store.list_flags() if r.id == flag_id), None)
        if row is None:
            raise click.ClickException(f"no flag {flag_id}")
        f = row.flag
        console.print(f"[bold]flag {row.id}[/]: {f.kind} ({f.severity}) on {f.subject}"
                        f"{' in area ' + f.area if f.area else ''}, {row.status}")
        console.print(f"window: {f.start.isoformat()} → {f.end.isoformat()}; "
                        f"raised {row.raised_at.isoformat()}")
        console.print_json(json.dumps(f.evidence))

    with_store(ctx.obj["config"], use)


@flags.command("clear")
@click.argument("flag_id", type=int)
@click.pass_context
def flags_clear(ctx: click.Context, flag_id: int) -> None:
    """Close a flag after inspection; the rule may raise it again if the cause persists."""

    async def use(store: Store, settings: config_mod.Settings) -> None:
        if not await store.clear_flag(flag_id):
            raise click.ClickException(f"flag {flag_id} is not open")
        console.print(f"flag {flag_id} cleared")

    with_store(ctx.obj["config"], use)


@flags.command("run")
@click.option("--full/--fast", default=True,
              help="Full daily pass (theft, line loss) or the last day's fast pass.")
@click.option("--at", "at", type=click.DateTime(), default=None,
              help="Judge as of this local time (default: now), e.g. to re-run a past day.")
@click.pass_context
def flags_run(ctx: click.Context, full: bool, at: datetime | None) -> None:
    """Run a flag pass over what storage holds."""
    from collector.flags.service import build_engine

    async def use(store: Store, settings: config_mod.Settings) -> None:
        engine = build_engine(settings, store, settings.meters or await store.meters())
        if engine is None:
            raise click.ClickException("no schedule reads 1-0:1.8.0: nothing to judge")
        now = at.replace(tzinfo=settings.collector.tz) if at else datetime.now(UTC)
        run = await engine.run(now, full=full)
        console.print(f"{len(run.findings)} findings, {run.raised} new flags raised")

    with_store(ctx.obj["config"], use)


def _figures(result: ScreenResult, loaded: bool) -> None:
    """The figures a utility plans inspections by, the screen beside what a plain model
    and the rules get on the same labels."""
    table = Table(title="on the inspected customers" + ("" if loaded else ", out of fold"))
    for col in ("model", "AUC", "thieves in top 5 %", "thieves in top 10 %"):
        table.add_column(col)
    rows = [(f"screen ({result.chosen})" if result.chosen else "screen", result.screen),
            ("naive: boosting on the raw columns" + (" + attributes" if result.attributes
                                                     else ""), result.naive),
            ("rules alone", result.rules)]
    for name, fig in rows:
        if fig is not None:
            table.add_row(name, f"{fig.auc:.3f}", f"{fig.top5:.1%}", f"{fig.top10:.1%}")
    console.print(table)
    if result.naive is not None and result.screen is not None:
        console.print(f"screen / naive: AUC {result.screen.auc / result.naive.auc:.2f}×, "
                      f"top 5 % {result.screen.top5 / max(result.naive.top5, 1e-9):.2f}×")
    if result.per_fold:
        console.print("chosen by nested cross-validation: "
                      + ", ".join(f"{k} in {v} folds" for k, v in result.per_fold.items()))


@click.command()
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None,
              help="Write id,score,reasons here (default: print the top 20).")
@click.option("--encoding", default=None,
              help="The file's text encoding, e.g. gbk or utf-16 (default: detected).")
@click.option("--labels", "labels_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Inspections, id,label (1 theft confirmed, 0 clean): learn "
                                 "from them instead of the rules.")
@click.option("--save-model", "save_path", type=click.Path(dir_okay=False), default=None,
              help="Keep the model trained from --labels, to score later files.")
@click.option("--model", "model_path", type=click.Path(exists=True, dir_okay=False),
              default=None, help="Score with a model saved earlier by --save-model.")
@click.option("--attributes", "attributes_path",
              type=click.Path(exists=True, dir_okay=False), default=None,
              help="Per-customer attributes (CSV or Parquet: id, then e.g. tariff, zone, "
                   "activity): used as features, categorical where they are not numbers.")
@click.option("--as-of", "as_of", default=None, metavar="COLUMN",
              help="The column (in --attributes or the consumption file) holding each "
                   "customer's reference date, e.g. the inspection date: only periods "
                   "before it are used.")
@click.option("--seed", default=0, show_default=True)
def screen(csv_path: str, out_path: str | None, encoding: str | None,
           labels_path: str | None, save_path: str | None, model_path: str | None,
           attributes_path: str | None, as_of: str | None, seed: int) -> None:
    """Screen consumption history for theft and faults: a wide CSV (id, then one column
    per day or month), long id,date,kwh rows, or Parquet of either."""
    import codecs

    from rich.progress import Progress

    from collector.flags.learned import LabelError
    from collector.flags.screening import ScreenError, screen_file

    if save_path and not labels_path:
        raise click.UsageError("--save-model keeps a model trained from --labels: give both")

    if encoding is not None:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise click.BadParameter(f"{encoding!r} is not a known encoding",
                                     param_hint="--encoding") from None
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("screening", total=None)
            result = screen_file(Path(csv_path), Path(out_path) if out_path else None,
                                 on_progress=lambda done, total: progress.update(
                                     task, completed=done, total=total), encoding=encoding,
                                 labels=Path(labels_path) if labels_path else None,
                                 model_in=Path(model_path) if model_path else None,
                                 model_out=Path(save_path) if save_path else None, seed=seed,
                                 attributes=Path(attributes_path) if attributes_path
                                 else None, as_of=as_of)
    except (ScreenError, LabelError) as exc:
        console.print(f"[red]cannot screen:[/] {escape(str(exc))}", highlight=False)
        sys.exit(2)
    if result.encoding not in ("utf-8", "utf-8-sig"):
        console.print(f"read as {result.encoding}; if the ids look wrong, give --encoding")
    if result.bad_cells:
        console.print(f"[yellow]{result.bad_cells} cells were not numbers and count as "
                        "missing days[/]")
    if result.long_rows:
        console.print(f"[yellow]{result.long_rows} rows had more cells than the header; "
                        "the extra cells were ignored[/]")
    if result.duplicates:
        console.print(f"[yellow]{result.duplicates} rows repeated a customer and period; "
                        "the last of each was kept[/]")
    console.print(f"{result.rows} customers × {result.days} {result.unit}s "
                    f"({result.first_day} … {result.last_day}); "
                    f"{result.flagged} scored at or above the flag threshold")
    if result.ignored_columns:
        console.print(f"ignored non-date columns: {', '.join(result.ignored_columns[:10])}")
    if result.learned:
        how = "a saved model" if model_path else "a model trained on the inspections"
        console.print(f"scored by {how}: {result.labelled} inspected customers, "
                      f"{result.thieves} confirmed thefts")
        if result.cv_auc is not None:
            kind = "on the labels" if model_path else "cross-validated (out of fold)"
            console.print(f"{kind}: AUC {result.cv_auc:.3f}, MAP@{result.map_n} "
                          f"{result.cv_map:.3f}; the rules alone: AUC {result.rules_auc:.3f}")
        if result.as_of:
            console.print(f"{result.as_of} customers' histories cut at their {as_of}")
        if result.attributes:
            console.print(f"attributes used: {', '.join(result.attributes)}")
        if result.screen is not None:
            _figures(result, bool(model_path))
        for warning in result.warnings:
            console.print(f"[yellow]warning:[/] {escape(warning)}")
        if save_path:
            console.print(f"model saved to {save_path} (load only files you made: "
                          "it is a pickle)")
    if out_path:
        console.print(f"written to {out_path}, highest score first")
    else:
        table = Table(title="Highest scores")
        for col in ("id", "score", "reasons"):
            table.add_column(col)
        for row_id, score, reasons in result.top:
            table.add_row(row_id, f"{score:.3f}", reasons)
        console.print(table)


@click.command()
@CONFIG_OPTION
@click.argument("meter")
@click.option("--from", "start", type=click.DateTime(), default=None, help="Local start.")
@click.option("--to", "end", type=click.DateTime(), default=None, help="Local end.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False), default=None)
def plot(config_path: str, meter: str, start: datetime | None, end: datetime | None,
         out_path: str | None) -> None:
    """A PNG of a meter's load profile with its flag windows shaded."""
    from collector.flags.plot import plot_meter

    async def use(store: Store, settings: config_mod.Settings) -> None:
        tz = settings.collector.tz
        hi = end.replace(tzinfo=tz) if end else datetime.now(tz)
        lo = start.replace(tzinfo=tz) if start else hi - timedelta(days=7)
        path = Path(out_path or f"{meter}.png")
        count = await plot_meter(store, meter, lo, hi, path, tz)
        console.print(f"{path}: {count} intervals, flags shaded")

    with_store(config_path, use)
