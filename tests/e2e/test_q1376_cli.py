"""`collector run` with a [q1376] front end: a simulated concentrator dials in over TCP
and its meters' day arrives in the store, read by the daemon, not by the test."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

from protocols.q1376 import frame as fr
from simulator.fleet import FleetSpec, build_fleet
from simulator.ports import free_port
from simulator.q1376_terminal import SimulatedTerminal
from tests.integration.conftest import TZ

ROOT = Path(__file__).resolve().parents[2]


def stored(db: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # the daemon has not created its tables yet


async def test_collector_run_takes_a_concentrators_day_into_the_store(tmp_path: Path) -> None:
    port, db = free_port(), tmp_path / "c.db"
    meters = "".join(textwrap.dedent(f"""
        [[meter]]
        id = "m{n}"
        protocol = "q1376"
        concentrator = "dc01"
        pn = {n}
        address = "{n:012d}"
        """) for n in range(1, 4))
    config = tmp_path / "collector.toml"
    config.write_text(textwrap.dedent(f"""
        [collector]
        timezone = "Asia/Shanghai"
        catch_up = "1d"
        [storage]
        url = "sqlite:///{db}"
        [flags]
        enabled = false
        [vee]
        enabled = false
        [q1376]
        listen = "127.0.0.1:{port}"
        [[concentrator]]
        address = "4101-00001"
        name = "dc01"
        area = "T01"
        """) + meters)
    daemon = subprocess.Popen([sys.executable, "-m", "collector.cli", "run", "--config",
                               str(config)], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    now = datetime.now(UTC)
    fleet = build_fleet(FleetSpec(meters=3, buses=1, tz=TZ), lambda: datetime.now(UTC),
                        now - timedelta(days=2))
    terminal = SimulatedTerminal(fr.Address("4101", 1), dict(fleet.meters),
                                 lambda: datetime.now(UTC), TZ)

    async def dial() -> None:
        # The daemon listens once it is up; until then the terminal redials, as one would.
        while True:
            try:
                await terminal.run("127.0.0.1", port)
                return
            except ConnectionRefusedError:
                await asyncio.sleep(0.2)

    link = asyncio.create_task(dial())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        day = (now.astimezone(TZ) - timedelta(days=1)).date().isoformat()
        query = ("SELECT meter_id, count(*) FROM reading_values WHERE quantity = '1-0:1.8.0' "
                 f"AND kind = 'interval' AND date(ts, 'unixepoch', '+8 hours', '-1 second') "
                 f"= '{day}' GROUP BY meter_id")
        while sorted(stored(db, query)) != [("m1", 96), ("m2", 96), ("m3", 96)]:
            assert loop.time() < deadline, stored(db, query)
            assert daemon.poll() is None
            await asyncio.sleep(0.2)
        attempts = "SELECT meter_id, gateway, outcome FROM collection_attempts"
        while len(stored(db, attempts)) < 3:  # written once the whole collection is done
            assert loop.time() < deadline and daemon.poll() is None
            await asyncio.sleep(0.2)
        assert sorted(stored(db, attempts)) == [("m1", "dc01", "ok"), ("m2", "dc01", "ok"),
                                                 ("m3", "dc01", "ok")]
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        daemon.send_signal(signal.SIGTERM)
        out, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, out
    assert "Traceback" not in out and "ERROR" not in out, out
