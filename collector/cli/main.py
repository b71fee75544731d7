"""The `collector` command group: each command lives in the module for its group."""

from __future__ import annotations

import click

from collector.cli.api import api, export, token
from collector.cli.billing import bill, points, prepaid
from collector.cli.concentrators import concentrators, frame
from collector.cli.field import clock, read, scan
from collector.cli.flags import flags, plot, screen
from collector.cli.reports import db, report
from collector.cli.run import demo, run, simulate
from collector.cli.service import service
from collector.cli.vee import meters, vee
from collector.cli.watch import history, watch
from collector.cli.wiring import wiring


@click.group()
@click.version_option(package_name="meter-collector")
def main() -> None:
    """meter-collector: a head-end for electricity meters."""


for command in (run, demo, read, scan, clock, simulate, db, report, flags, screen, plot,
                service, vee, meters, bill, points, prepaid, api, token, export, wiring, watch,
                history, concentrators, frame):
    main.add_command(command)

if __name__ == "__main__":
    main()
