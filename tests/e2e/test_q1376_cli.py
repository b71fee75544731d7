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


def test_frame_decode_tells_the_protocols_apart_and_decodes_the_data() -> None:
    import json

    from click.testing import CliRunner

    from collector.cli.main import main
    from protocols.dlt645 import codec, data_ids

    # ksy capture rafn12f129.3761 (liangminhua/qgdw376.1.ksy): a real terminal's reply.
    reply = ("68c600c600688871012208020ca2010101101816280818040001000000" + "ee" * 20
             + "0239191628008c16")
    out = CliRunner().invoke(main, ["frame", "decode", reply, "--json"])
    assert out.exit_code == 0, out.output
    fields = json.loads(out.output)
    assert fields["protocol"] == "Q/GDW 1376.1" and fields["address"]["text"] == "0171-02082"
    [unit] = fields["units"]
    assert (unit["pn"], unit["fn"]) == (1, 129)
    assert unit["value"]["values"] == [0.01, None, None, None, None]
    di = 0x00010000
    raw = codec.encode(codec.read_reply("000000000001", di, data_ids.encode_values(
        data_ids.lookup(di), [1234.56])))
    out = CliRunner().invoke(main, ["frame", "decode", raw.hex(" "), "--json"])
    assert out.exit_code == 0, out.output
    fields = json.loads(out.output)
    assert fields["protocol"] == "DL/T 645-2007" and fields["item"]["di"] == "00010000"
    assert fields["item"]["values"][0]["value"] == 1234.56
    bad = CliRunner().invoke(main, ["frame", "decode", reply[:-4] + "0016"])
    assert bad.exit_code == 3 and "checksum" in bad.output


def test_concentrators_lists_each_terminal_state_points_and_how_far_it_is_collected(
        tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from collector.cli.main import main
    from model import Event, Reading
    from storage.sqlite import SqliteStore

    db = tmp_path / "c.db"
    config = tmp_path / "collector.toml"
    config.write_text(textwrap.dedent(f"""
        [storage]
        url = "sqlite:///{db}"
        [[concentrator]]
        address = "4101-00001"
        name = "dc01"
        [[concentrator]]
        address = "4101-00002"
        name = "dc02"
        [[meter]]
        id = "m1"
        protocol = "q1376"
        concentrator = "dc01"
        pn = 1
        """))
    now = datetime.now(UTC).replace(microsecond=0)

    async def fill() -> None:
        store = SqliteStore(str(db))
        await store.migrate()
        await store.write_events([
            Event("dc01", now - timedelta(hours=2), "terminal_online", {}),
            Event("dc01", now - timedelta(minutes=5), "terminal_heartbeat", {})])
        await store.write_readings([Reading("m1", "1-0:1.8.0", now - timedelta(minutes=15),
                                            12.5, "kWh")])
        await store.close()

    asyncio.run(fill())
    out = CliRunner().invoke(main, ["concentrators", "--config", str(config), "--json"])
    assert out.exit_code == 0, out.output
    one, two = json.loads(out.output)
    assert (one["terminal"], one["state"], one["points"]) == ("dc01", "online", 1)
    assert one["last_heard"] == (now - timedelta(minutes=5)).isoformat()
    assert one["collected_through"] == (now - timedelta(minutes=15)).isoformat()
    assert (two["terminal"], two["state"], two["points"]) == ("dc02", "never seen", 0)
