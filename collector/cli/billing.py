"""`collector bill …` (run, show, review, release, export) and `collector points import`."""

from __future__ import annotations

import csv
import math
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from collector.cli.context import config_group, console, with_store
from collector.config import settings as config_mod
from collector.exports.bills import BILL_COLUMNS, bill_row


@config_group
def bill() -> None:
    """Billing (抄核收): run a cycle, review held bills, release them, export."""


def _cycle(text: str) -> Any:
    from collector.billing.cycles import Cycle, CycleError

    try:
        return Cycle.parse(text)
    except CycleError as exc:
        raise click.BadParameter(str(exc), param_hint="--cycle") from None


@bill.command("run")
@click.option("--cycle", "cycle_text", required=True,
              help="Month of the reading day (2026-11) or one local day (2026-11-23).")
@click.option("--segment", default=None, help="Only this reading segment (抄表段).")
@click.option("--correct", "correction", default="",
              help="Reissue released bills whose inputs changed, with this reason.")
@click.pass_context
def bill_run(ctx: click.Context, cycle_text: str, segment: str | None,
             correction: str) -> None:
    """Compute the cycle's bills from validated reads; a rerun changes nothing."""
    from collector.billing.run import biller_for

    cycle = _cycle(cycle_text)

    async def use(store: Any, settings: config_mod.Settings) -> None:
        run = await biller_for(settings, store).run(cycle, segment, correction)
        console.print(run.summary())

    with_store(ctx.obj["config"], use)


@bill.command("show")
@click.argument("service_point")
@click.option("--cycle", "cycle_text", required=True)
@click.option("--versions", is_flag=True, help="Every version, not only the latest.")
@click.pass_context
def bill_show(ctx: click.Context, service_point: str, cycle_text: str, versions: bool) -> None:
    """A bill's determinants, charges and the reads each came from."""
    cycle = _cycle(cycle_text)

    async def use(store: Any, settings: config_mod.Settings) -> None:
        bills = await store.bills(cycle.name, service_point, all_versions=versions)
        if not bills:
            raise click.ClickException(f"no bill for {service_point} in {cycle.name}; "
                                       f"run `collector bill run --cycle {cycle.name}`")
        for b in bills:
            _print_bill(b)

    with_store(ctx.obj["config"], use)


def _print_bill(b: Any) -> None:
    d = b.determinants
    console.print(f"[bold]bill {b.id}[/] {b.service_point_id} cycle {b.cycle} v{b.version} "
                  f"[{'red' if b.status == 'held' else 'green'}]{b.status}[/]"
                  + (f" by {b.released_by}" if b.released_by else "")
                  + (f" — correction: {b.correction}" if b.correction else ""))
    console.print(f"  {d['from']} → {d['to']} ({d['timezone']}): "
                  f"{_num(b.kwh)} kWh, {_num(b.amount)} {b.currency}, quality {b.quality}")
    for h in b.holds:
        console.print(f"  [red]held[/] {h.code}: {h.detail}")
    for part in d["parts"]:
        console.print(f"  part {part['from']} → {part['to']} tariff {part['tariff']} "
                      f"({part['why']}): {_num(part.get('kwh'))} kWh, TOU from "
                      f"{part.get('tou_source', '-')}")
        for m in part.get("meters", []):
            for end in ("start", "end"):
                for q, r in sorted(m.get(end, {}).items()):
                    console.print(f"    {m['meter']} ×{m['multiplier']:g} {end} {q} = "
                                  f"{r['value']} ({r['quality']}, {r['source']}, v{r['version']},"
                                  f" {r['at']})")
        for line in part.get("charges", []):
            console.print(f"    {line['item']}: {line['quantity']} {line['unit']} × "
                          f"{line['price']} = {line['amount']}")
    q = d["quality"]
    console.print(f"  intervals {q['intervals']}, estimated {q['intervals_estimated']}"
                  + (f" (methods {q['methods']})" if q["methods"] else ""))
    if "max_demand" in d:
        console.print(f"  max demand {d['max_demand']['kw']} kW at {d['max_demand']['at']}")


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:,.2f}"


@bill.command("review")
@click.option("--cycle", "cycle_text", default=None)
@click.pass_context
def bill_review(ctx: click.Context, cycle_text: str | None) -> None:
    """Held bills, with why each is held."""
    from model import BillStatus

    cycle = _cycle(cycle_text).name if cycle_text else None

    async def use(store: Any, settings: config_mod.Settings) -> None:
        held = await store.bills(cycle, status=BillStatus.HELD)
        table = Table(title=f"held bills{' ' + cycle if cycle else ''}: {len(held)}")
        for col in ("id", "service point", "cycle", "kWh", "amount", "why"):
            table.add_column(col)
        for b in held:
            table.add_row(str(b.id), b.service_point_id, b.cycle, _num(b.kwh), _num(b.amount),
                          "; ".join(f"{h.code}: {h.detail}" for h in b.holds))
        console.print(table)

    with_store(ctx.obj["config"], use)


@bill.command("release")
@click.argument("bill_id", type=int)
@click.option("--by", "by", required=True, help="Who releases it.")
@click.option("--note", required=True, help="Why it may go out as it is.")
@click.pass_context
def bill_release(ctx: click.Context, bill_id: int, by: str, note: str) -> None:
    """Release a held bill after review; its holds stay on record."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        b = await store.release_bill(bill_id, by, note)
        console.print(f"bill {b.id} ({b.service_point_id} {b.cycle}) released by {by}")

    with_store(ctx.obj["config"], use)


@bill.command("export")
@click.option("--cycle", "cycle_text", required=True)
@click.option("--format", "fmt", type=click.Choice(["csv"]), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default="-", show_default=True)
@click.option("--all", "everything", is_flag=True, help="Held bills too (default: released).")
@click.pass_context
def bill_export(ctx: click.Context, cycle_text: str, fmt: str, out: str,
                everything: bool) -> None:
    """One row per service point, ready for a billing system."""
    from model import BillStatus

    cycle = _cycle(cycle_text)

    async def use(store: Any, settings: config_mod.Settings) -> list[Any]:
        status = None if everything else BillStatus.RELEASED
        return list(await store.bills(cycle.name, status=status))

    rows = with_store(ctx.obj["config"], use)
    handle = sys.stdout if out == "-" else Path(out).open("w", newline="")  # noqa: SIM115
    try:
        w = csv.writer(handle)
        w.writerow(BILL_COLUMNS)
        for b in rows:
            w.writerow(bill_row(b))
    finally:
        if handle is not sys.stdout:
            handle.close()
    if out != "-":
        console.print(f"{len(rows)} bills written to {out}")


@bill.command("tariff")
@click.argument("service_point")
@click.argument("tariff")
@click.option("--from", "effective", type=click.DateTime(["%Y-%m-%d"]), required=True,
              help="First local day on the new tariff.")
@click.pass_context
def bill_tariff(ctx: click.Context, service_point: str, tariff: str, effective: Any) -> None:
    """Change a service point's tariff from a date; a cycle spanning it is split."""
    from collector.billing.tariff import Tariffs
    from model import TariffChange

    async def use(store: Any, settings: config_mod.Settings) -> None:
        Tariffs(settings.billing.tariff_dirs).get(tariff)  # a typo fails here, not at billing
        await store.record_tariff_change(TariffChange(service_point, tariff, effective.date()))
        console.print(f"{service_point}: tariff {tariff} from {effective:%Y-%m-%d}")

    with_store(ctx.obj["config"], use)


@config_group
def points() -> None:
    """Service points: what billing bills, and the meter on each."""


@points.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def points_import(ctx: click.Context, file: str) -> None:
    """Load service points from CSV: id,account,tariff,segment,area,meter[,multiplier].

    A service point already known is updated; its meter is set only if it has none
    (later changes go through `collector meters replace`)."""
    from model import MeterAssignment, ServicePoint

    try:
        # utf-8-sig: a spreadsheet's UTF-8 export often starts with a byte-order mark.
        with open(file, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            lines = [(reader.line_num, line) for line in reader if line]
    except UnicodeDecodeError as exc:
        raise click.ClickException(
            f"{file}: byte {exc.start} is not UTF-8; save the file as UTF-8 (a GBK export "
            "from a spreadsheet needs converting) and import it again") from None
    except csv.Error as exc:
        raise click.ClickException(f"{file}: not a CSV file: {exc}") from None
    need = {"id", "account", "tariff", "segment", "meter"}
    missing = need - set(header)
    if missing:
        raise click.ClickException(f"{file}: missing column(s) {', '.join(sorted(missing))}")
    sps, assigned = [], []
    for n, line in lines:
        if len(line) != len(header):
            raise click.ClickException(f"{file}:{n}: the row has {len(line)} fields, the "
                                       f"header {len(header)}; nothing was imported")
        r = dict(zip(header, line, strict=True))
        for key in ("id", "meter"):
            if not r[key].strip():
                raise click.ClickException(f"{file}:{n}: {key} is empty; nothing was imported")
        try:
            mult = float(r.get("multiplier") or 1)
        except ValueError:
            raise click.ClickException(f"{file}:{n}: multiplier {r['multiplier']!r} is not "
                                       "a number; nothing was imported") from None
        if not math.isfinite(mult) or mult <= 0:
            raise click.ClickException(f"{file}:{n}: multiplier {r['multiplier']!r} must be "
                                       "positive (CT ratio × PT ratio); nothing was imported")
        sps.append(ServicePoint(r["id"], r["account"], r["tariff"], r["segment"],
                                r.get("area") or ""))
        assigned.append(MeterAssignment(r["id"], r["meter"], multiplier=mult))

    async def use(store: Any, settings: config_mod.Settings) -> None:
        from collector.billing.tariff import Tariffs

        known = Tariffs(settings.billing.tariff_dirs)
        for sp in sps:
            if sp.tariff:
                known.get(sp.tariff)
        await store.upsert_service_points(sps, assigned)
        console.print(f"{len(sps)} service points imported from {file}")

    with_store(ctx.obj["config"], use)


@config_group
def prepaid() -> None:
    """Prepaid accounts (远程费控): open, top up, update balances, see alerts."""


def _prepaid(store: Any, settings: config_mod.Settings) -> Any:
    from collector.billing.prepaid import Prepaid
    from collector.billing.tariff import Tariffs

    return Prepaid(store, settings.prepaid, settings.collector.tz,
                   Tariffs(settings.billing.tariff_dirs),
                   step=timedelta(minutes=settings.vee.interval_minutes))


@prepaid.command("open")
@click.argument("account")
@click.option("--service-point", required=True)
@click.pass_context
def prepaid_open(ctx: click.Context, account: str, service_point: str) -> None:
    """Open a prepaid account on a service point; consumption is charged from now."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        a = await store.open_prepaid(account, service_point, datetime.now(UTC))
        console.print(f"prepaid account {a.account} on {a.service_point_id}, charged from "
                      f"{a.charged_to.astimezone(settings.collector.tz):%Y-%m-%d %H:%M}")

    with_store(ctx.obj["config"], use)


@prepaid.command("topup")
@click.argument("account")
@click.argument("amount", type=float)
@click.option("--ref", "reference", required=True,
              help="The payment's reference: the same reference twice is one top-up.")
@click.option("--by", "by", default="cli", show_default=True)
@click.pass_context
def prepaid_topup(ctx: click.Context, account: str, amount: float, reference: str,
                  by: str) -> None:
    """Record a top-up; a tripped meter is reconnected at the next balance update."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        try:
            done = await _prepaid(store, settings).topup(account, amount, datetime.now(UTC),
                                                         reference, by)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        if done is None:
            console.print(f"top-up {reference} was already recorded; nothing changed")
        else:
            console.print(f"{account}: +{amount:.2f}, balance {done.balance:.2f}")

    with_store(ctx.obj["config"], use)


@prepaid.command("update")
@click.pass_context
def prepaid_update(ctx: click.Context) -> None:
    """Charge validated consumption since the last update; raise alerts (the daemon does
    this after each collection cycle)."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        run = await _prepaid(store, settings).update(datetime.now(UTC))
        console.print(run.summary())

    with_store(ctx.obj["config"], use)


@prepaid.command("status")
@click.argument("account", required=False)
@click.pass_context
def prepaid_status(ctx: click.Context, account: str | None) -> None:
    """Balances, relay state and the latest alerts and commands."""

    async def use(store: Any, settings: config_mod.Settings) -> None:
        tz = settings.collector.tz
        table = Table(title="prepaid accounts")
        for col in ("account", "service point", "balance", "relay", "charged to", "last event"):
            table.add_column(col)
        for a in await store.prepaid_accounts(account):
            events = [e for e in await store.prepaid_events(a.account) if e.kind != "charge"]
            last = events[-1] if events else None
            table.add_row(a.account, a.service_point_id, f"{a.balance:.2f}", a.relay,
                          a.charged_to.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
                          f"{last.kind} {last.ts.astimezone(tz):%Y-%m-%d %H:%M}" if last else "")
        console.print(table)

    with_store(ctx.obj["config"], use)
