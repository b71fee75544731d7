"""The technician's commands against simulated meters on a real pty."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from collector.cli.main import main
from simulator.dlt645_meter import MeterFaults
from simulator.fleet import FleetSpec, build_fleet
from tests.integration.conftest import TZ


@asynccontextmanager
async def meters_on_a_pty(meters: int, faults: dict[int, MeterFaults] | None = None
                          ) -> AsyncIterator[str]:
    """Only the simulated meters: the command under test opens the port itself."""
    fleet = build_fleet(FleetSpec(meters=meters, buses=1, tz=TZ, faults=faults or {}),
                        lambda: datetime.now(UTC), datetime.now(UTC) - timedelta(days=1))
    (path,) = await fleet.start()
    try:
        yield path
    finally:
        await fleet.stop()


async def invoke(*args: str) -> Any:
    return await asyncio.to_thread(CliRunner().invoke, main, list(args))


async def test_read_prints_the_meters_values_with_units() -> None:
    async with meters_on_a_pty(2) as path:
        result = await invoke("read", "--port", path, "--baud", "9600", "--address", "2",
                              "--latency-ms", "100")
    assert result.exit_code == 0, result.output
    for text in ("meter 000000000002", "1-0:1.8.0", "kWh", "1-0:32.7.0", "V", "Hz"):
        assert text in result.output


async def test_scan_lists_every_address_on_the_bus() -> None:
    async with meters_on_a_pty(3) as path:
        result = await invoke("scan", "--port", path, "--baud", "9600", "--latency-ms", "20")
    assert result.exit_code == 0, result.output
    assert "3 meter(s)" in result.output and "000000000003" in result.output


async def test_clock_shows_the_offset_and_sync_fixes_it() -> None:
    async with meters_on_a_pty(1, {1: MeterFaults(clock_offset_s=-400.0)}) as path:
        result = await invoke("clock", "--port", path, "--baud", "9600", "--address", "1",
                              "--latency-ms", "100", "--sync")
    assert result.exit_code == 0, result.output
    before, after = (int(line.rsplit("offset ", 1)[1].split(" s")[0])
                     for line in result.output.splitlines() if "offset" in line)
    assert abs(before + 400) <= 1   # whole-second meter clocks: ±1 s is the resolution
    assert abs(after) <= 1


async def test_a_silent_meter_is_reported_as_a_device_error_not_a_traceback() -> None:
    async with meters_on_a_pty(1, {1: MeterFaults(silent=True)}) as path:
        result = await invoke("read", "--port", path, "--baud", "9600", "--address", "1",
                              "--latency-ms", "20")
    assert result.exit_code == 3
    assert "device error: no reply within" in result.output
    assert "Traceback" not in result.output


async def test_history_reads_the_meters_memory_and_json_is_for_scripts() -> None:
    import json

    async with meters_on_a_pty(1) as path:
        synced = await invoke("clock", "--port", path, "--baud", "9600", "--address", "1",
                              "--sync")
        result = await invoke("history", "--port", path, "--baud", "9600", "--address", "1",
                              "--days", "1", "--json")
        table = await invoke("history", "--port", path, "--baud", "9600", "--address", "1",
                             "--days", "1")
    assert synced.exit_code == 0, synced.output
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert len(doc["profile"]) >= 90  # a day of 15-minute records from the meter's memory
    forward = [r["forward_kwh"] for r in doc["profile"]]
    assert forward == sorted(forward)
    assert doc["frozen"]
    events = {e["kind"]: e for e in doc["events"]}
    assert events["cover_open"] == {"kind": "cover_open", "none": True}
    assert events["power_down"] == {"kind": "power_down", "none": True}
    assert events["clock_set"]["operator"] == "00000001"  # the sync just sent, recorded
    assert "daily frozen values" in table.output and "load profile:" in table.output
    assert "clock set from" in table.output and "no power failure on record" in table.output


async def test_watch_refreshes_the_values_in_place_until_told_to_stop() -> None:
    async with meters_on_a_pty(1) as path:
        result = await invoke("watch", "--port", path, "--baud", "9600", "--address", "1",
                              "--every", "0", "--count", "2", "--quantity", "1-0:1.8.0",
                              "--quantity", "1-0:32.7.0")
    assert result.exit_code == 0, result.output
    assert "forward active energy" in result.output and "voltage, phase A" in result.output


async def test_watch_piped_to_a_file_prints_every_refresh_as_it_comes() -> None:
    async with meters_on_a_pty(1) as path:
        result = await invoke("watch", "--port", path, "--baud", "9600", "--address", "1",
                              "--every", "0", "--count", "3", "--quantity", "1-0:1.8.0")
    assert result.exit_code == 0, result.output
    # Not a terminal: three frames one after another, not only the last one redrawn.
    assert result.output.count("meter 000000000001 on") == 3


async def test_read_scan_and_clock_answer_in_json() -> None:
    import json

    async with meters_on_a_pty(2) as path:
        read = await invoke("read", "--port", path, "--baud", "9600", "--address", "2",
                            "--json", "--quantity", "1-0:1.8.0")
        scan = await invoke("scan", "--port", path, "--baud", "9600", "--latency-ms", "20",
                            "--json")
        clock = await invoke("clock", "--port", path, "--baud", "9600", "--address", "1",
                             "--json")
    assert json.loads(read.output)["values"][0]["obis"] == "1-0:1.8.0"
    assert json.loads(scan.output)["addresses"] == ["000000000001", "000000000002"]
    assert abs(json.loads(clock.output)["offset_s"]) < 5


async def test_an_unsupported_data_id_is_named_and_the_read_exits_non_zero() -> None:
    from protocols.dlt645 import data_ids

    missing = frozenset({data_ids.plan_reads(["1-0:2.8.0"])[0]})
    async with meters_on_a_pty(1, {1: MeterFaults(error_dis=missing)}) as path:
        result = await invoke("read", "--port", path, "--baud", "9600", "--address", "1",
                              "--quantity", "1-0:1.8.0", "--quantity", "1-0:2.8.0")
    assert result.exit_code == 1, result.output
    assert "1-0:1.8.0" in result.output  # what could be read is still shown
    assert "meter 000000000001: DI" in result.output and "Traceback" not in result.output
