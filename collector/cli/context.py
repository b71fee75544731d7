"""What every command shares: the console, settings loading, the store, exit codes.

Kept in one place so that every command reports a config, device or storage error the
same way, with the same exit code, and none of them prints a traceback.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from collector.config import settings as config_mod
from collector.errors import CollectorError, ConfigError
from protocols.errors import ProtocolError
from storage import Store, open_store
from storage.base import StorageError

T = TypeVar("T")
EXIT_CONFIG = 2
EXIT_DEVICE = 3
EXIT_STORAGE = 4
CONFIG_OPTION = click.option("-c", "--config", "config_path", default="collector.toml",
                             show_default=True, help="Path to collector.toml.")


def _config_here(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.ensure_object(dict)
        ctx.obj["config"] = value


class ConfigGroup(click.Group):
    """Takes -c/--config before the subcommand (`collector bill -c F run`) or after it
    (`collector bill run -c F`): newcomers try the second first."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        cmd.params.append(click.Option(["-c", "--config"], default=None, expose_value=False,
                                       is_eager=True, callback=_config_here,
                                       help="Path to collector.toml (also before the "
                                            "subcommand)."))
        super().add_command(cmd, name)


def config_group(doc: Callable[[], None]) -> click.Group:
    """A command group named and documented by `doc`, whose subcommands share
    -c/--config (kept in ctx.obj['config'])."""

    @CONFIG_OPTION
    @click.pass_context
    def remember(ctx: click.Context, config_path: str) -> None:
        ctx.ensure_object(dict)
        ctx.obj["config"] = config_path

    return click.group(name=doc.__name__, help=doc.__doc__, cls=ConfigGroup)(remember)


console = Console(width=None if sys.stdout.isatty() else 140)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a command's coroutine; our errors become one red line and an exit code."""
    try:
        return asyncio.run(coro)
    except ConfigError as exc:
        console.print(f"[red]config error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)
    except ProtocolError as exc:
        console.print(f"[red]device error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_DEVICE)
    except CollectorError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(1)
    except StorageError as exc:
        console.print(f"[red]storage error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_STORAGE)


def setup_logging(level: str, fmt: str = "text") -> None:
    from collector.ops import logs

    logs.setup(level, fmt)


def load_settings(path: str) -> config_mod.Settings:
    try:
        return config_mod.load(path)
    except ConfigError as exc:
        console.print(f"[red]config error:[/] {escape(str(exc))}", highlight=False)
        sys.exit(EXIT_CONFIG)


def plain_store(settings: config_mod.Settings) -> Store:
    """The store itself, without the write buffer: reports only read."""
    password = None
    if settings.storage.password_env:
        password = os.environ.get(settings.storage.password_env)
        if password is None:
            raise ConfigError(settings.source, "storage.password_env",
                              f"environment variable {settings.storage.password_env} is not set")
    return open_store(settings.storage.url, password=password,
                      timezone=settings.collector.timezone)


def with_store(config_path: str, use: Callable[[Store, config_mod.Settings], Awaitable[T]]) -> T:
    """Load the settings, open the store, run `use`, close the store: a report's lifecycle."""
    settings = load_settings(config_path)

    async def go() -> T:
        store = plain_store(settings)
        try:
            return await use(store, settings)
        finally:
            await store.close()

    return run_async(go())
