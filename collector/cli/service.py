"""`collector service install`: the daemon as a systemd service."""

from __future__ import annotations

from pathlib import Path

import click

from collector.ops import units


@click.group()
def service() -> None:
    """Run the gateway or the head-end as a systemd service."""


@service.command("install")
@click.argument("role", type=click.Choice(units.ROLES))
@click.option("--dest", type=click.Path(file_okay=False), default="/etc/systemd/system",
              show_default=True, help="Where systemd looks for unit files.")
@click.option("--config", "config_path", default="/etc/meter-collector/collector.toml",
              show_default=True, help="The collector.toml the service runs with.")
def service_install(role: str, dest: str, config_path: str) -> None:
    """Write the unit for ROLE and print the commands that finish the job."""
    path = units.install(role, Path(dest), config_path)
    click.echo(f"wrote {path}")
    click.echo("then, as root:")
    click.echo("  useradd --system --home /var/lib/meter-collector --shell /usr/sbin/nologin "
               "meter-collector")
    click.echo(f"  install -d -m 0750 -o root -g meter-collector {Path(config_path).parent}")
    click.echo(f"  # put collector.toml at {config_path}, secrets in "
               "/etc/meter-collector/environment (mode 0640)")
    click.echo(f"  systemctl daemon-reload && systemctl enable --now {units.unit_name(role)}")
