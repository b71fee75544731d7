"""`collector api`, `collector token …` and `collector export …`: the interfaces billing
systems and integrators use."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import click
from rich.table import Table

from collector.cli.context import (
    CONFIG_OPTION,
    EXIT_CONFIG,
    config_group,
    console,
    load_settings,
    plain_store,
    run_async,
    with_store,
)
from collector.config import settings as config_mod
from storage.tokens import SCOPES
from storage.versions import Refused


@click.command()
@CONFIG_OPTION
@click.option("--host", default=None, help="Listen address (default: [api] listen).")
@click.option("--port", type=int, default=None, help="Port (default: [api] listen).")
@click.option("--log-level", default="info", show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="API processes on the port (default: [api] workers).")
def api(config_path: str, host: str | None, port: int | None, log_level: str,
        workers: int | None) -> None:
    """Serve the HTTP API (/v1, /openapi.json, /docs) and the web view."""
    import os

    import uvicorn

    from collector.cli import api_worker as worker

    settings = load_settings(config_path)
    listen_host, _, listen_port = settings.api.listen.rpartition(":")
    async def migrate() -> None:
        """Once, here, before any worker opens the store; in one loop, as a pool must."""
        store = plain_store(settings)
        try:
            await store.migrate()
        finally:
            await store.close()

    run_async(migrate())
    bind = (host or listen_host.strip("[]"), port or int(listen_port))
    count = workers or settings.api.workers
    console.print(f"API on http://{bind[0]}:{bind[1]}/ (docs at /docs), store "
                  f"{settings.storage.url}" + (f", {count} workers" if count > 1 else ""))
    os.environ[worker.CONFIG_ENV] = str(Path(config_path).resolve())
    uvicorn.run(worker.FACTORY, factory=True, host=bind[0], port=bind[1], workers=count,
                log_level=log_level, access_log=settings.api.access_log)


@config_group
def token() -> None:
    """API tokens: create (printed once), list, revoke."""


def _migrated(use: Any) -> Any:
    async def go(store: Any, settings: config_mod.Settings) -> Any:
        await store.migrate()
        try:
            return await use(store, settings)
        except Refused as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False)
            sys.exit(EXIT_CONFIG)

    return go


@token.command("create")
@click.option("--name", required=True, help="Who uses it (billing-system, ops-alice).")
@click.option("--scope", "scopes", multiple=True, required=True,
              type=click.Choice(SCOPES), help="Repeat for several scopes.")
@click.pass_context
def token_create(ctx: click.Context, name: str, scopes: tuple[str, ...]) -> None:
    """Make a token and print it, alone on the last line: it is not shown again."""

    async def use(store: Any, settings: config_mod.Settings) -> str:
        secret: str = await store.create_token(name, scopes)
        return secret

    secret = with_store(ctx.obj["config"], _migrated(use))
    click.echo(f"token {name} ({', '.join(scopes)}); keep it, it is not shown again:",
               err=True)
    click.echo(secret)


@token.command("list")
@click.pass_context
def token_list(ctx: click.Context) -> None:
    """Every token by name, with its scopes and whether it is revoked."""

    async def use(store: Any, settings: config_mod.Settings) -> list[Any]:
        return list(await store.tokens())

    table = Table(title="API tokens")
    for col in ("name", "scopes", "created", "revoked"):
        table.add_column(col)
    for t in with_store(ctx.obj["config"], _migrated(use)):
        table.add_row(t.name, ", ".join(t.scopes), f"{t.created_at:%Y-%m-%d %H:%M}Z",
                      f"{t.revoked_at:%Y-%m-%d %H:%M}Z" if t.revoked_at else "")
    console.print(table)


@token.command("revoke")
@click.argument("name")
@click.pass_context
def token_revoke(ctx: click.Context, name: str) -> None:
    """Revoke a token: every request and web session using it stops at once."""

    async def use(store: Any, settings: config_mod.Settings) -> bool:
        done: bool = await store.revoke_token(name)
        return done

    if not with_store(ctx.obj["config"], _migrated(use)):
        console.print(f"[red]error:[/] no active token named {name!r}", highlight=False)
        sys.exit(1)
    console.print(f"token {name} revoked")


@config_group
def export() -> None:
    """Exports for billing systems: NEM12 and CSV, streamed to a file."""


def _meter_ids(store_meters: list[Any], meters: str | None, area: str | None) -> list[str]:
    from collector.exports.selection import SelectionError, export_meters

    try:
        return export_meters(store_meters, meters, area)
    except SelectionError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{exc.param}") from None


def _created(path: str) -> IO[str]:
    """The export file, opened only once its meters are known: a mistyped id or area
    leaves no empty file behind (a one-shot command, so the blocking open is fine)."""
    return Path(path).open("w", newline="")


DATE = click.DateTime(["%Y-%m-%d"])


@export.command("nem12")
@click.option("--from", "first", type=DATE, required=True, help="First local day.")
@click.option("--to", "last", type=DATE, required=True, help="Last local day (included).")
@click.option("--meters", default=None, help="Comma-separated meter ids (default: all).")
@click.option("--area", default=None, help="Only the meters of this transformer area.")
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.pass_context
def export_nem12(ctx: click.Context, first: datetime, last: datetime, meters: str | None,
                 area: str | None, out: str) -> None:
    """NEM12 of validated intervals with their quality and method flags."""
    from collector.exports.nem12 import nem12_lines
    from collector.exports.streams import stream_days

    async def use(store: Any, settings: config_mod.Settings) -> int:
        ids = _meter_ids(await store.meters(), meters, area)  # before the file is touched
        step = settings.vee.interval_minutes
        days = stream_days(store, ids, first.date(), last.date(), settings.collector.tz,
                           timedelta(minutes=step))
        lines = 0
        with _created(out) as f:
            async for line in nem12_lines(days, step, datetime.now(UTC)):
                f.write(line + "\n")
                lines += 1
        return lines

    done = with_store(ctx.obj["config"], use)
    console.print(f"{done} NEM12 lines written to {out}")


@export.command("readings")
@click.option("--from", "first", type=DATE, required=True, help="First local day.")
@click.option("--to", "last", type=DATE, required=True, help="Last local day (included).")
@click.option("--meters", default=None, help="Comma-separated meter ids (default: all).")
@click.option("--area", default=None)
@click.option("--out", type=click.Path(dir_okay=False), required=True)
@click.pass_context
def export_readings(ctx: click.Context, first: datetime, last: datetime, meters: str | None,
                    area: str | None, out: str) -> None:
    """Current interval values in long format: service point, meter, quantity, interval
    end, value, unit, quality, method, reason, version."""
    from collector.acquisition.clock import local_midnight
    from collector.exports.csv_rows import READING_COLUMNS, csv_line, reading_row

    async def use(store: Any, settings: config_mod.Settings) -> int:
        tz = settings.collector.tz
        lo = local_midnight(first.date(), tz)
        hi = local_midnight(last.date() + timedelta(days=1), tz)
        ids = _meter_ids(await store.meters(), meters, area)  # before the file is touched
        points = {a.meter_id: a.service_point_id for a in await store.assignments()}
        rows = 0
        with _created(out) as f:
            f.write(csv_line(READING_COLUMNS))
            for meter in ids:
                for v in await store.current_values("1-0:1.8.0", lo, hi, [meter]):
                    f.write(csv_line(reading_row(points.get(meter, ""), v)))
                    rows += 1
        return rows

    done = with_store(ctx.obj["config"], use)
    console.print(f"{done} readings written to {out}")

