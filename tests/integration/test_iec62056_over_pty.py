"""The optical probe's protocol over a real pty: sign-on at 300 baud 7E1, the switch to
the meter's speed (the simulated meter answers only once the reader's side runs at the
agreed speed), the readout with its BCC, and each failure a clear error."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from protocols.errors import ResponseTimeout
from protocols.iec62056.client import open_probe, read_out
from protocols.iec62056.codec import Iec62056Error
from simulator.load import LoadModel
from simulator.optical_meter import SimulatedOpticalMeter
from simulator.registers import RegisterBank


@pytest.fixture
async def meter() -> AsyncIterator[SimulatedOpticalMeter]:
    load = LoadModel.for_meter(7)
    start = int((datetime.now(UTC) - timedelta(days=2)).timestamp())
    m = SimulatedOpticalMeter("000012345678", load, RegisterBank(load, start, forward0=4321.0),
                              lambda: datetime.now(UTC))
    await m.start()
    yield m
    await m.stop()


async def readout(path: str, max_baud: int | None = None) -> object:
    port = await open_probe(path)
    try:
        return await read_out(port, max_baud=max_baud, answer_s=1.0, readout_s=3.0)
    finally:
        await port.close()


async def test_a_readout_switches_to_the_meters_speed_and_parses_every_data_set(
        meter: SimulatedOpticalMeter) -> None:
    got = await readout(meter.path)
    assert got.baud == 9600 and got.identification.manufacturer == "SIM"  # type: ignore[attr-defined]
    values = {d.obis: d for d in got.data}  # type: ignore[attr-defined]
    assert values["0-0:0.0.0"].value == "000012345678"
    assert values["1-0:1.8.0"].unit == "kWh" and values["1-0:1.8.0"].number > 4321
    total = values["1-0:1.8.0"].number
    assert sum(values[f"1-0:1.8.{t}"].number for t in range(1, 5)) == pytest.approx(total,
                                                                                abs=0.01)
    assert values["1-0:32.7.0"].unit == "V" and 200 < values["1-0:32.7.0"].number < 240
    capped = await readout(meter.path, max_baud=2400)
    assert capped.baud == 2400 and meter.readouts == 2  # type: ignore[attr-defined]


async def test_a_silent_probe_and_a_corrupted_readout_say_what_failed(
        meter: SimulatedOpticalMeter) -> None:
    meter.corrupt_bcc = True
    with pytest.raises(Iec62056Error, match=r"block check character .* expected"):
        await readout(meter.path)
    meter.corrupt_bcc, meter.answer_sign_on = False, False
    with pytest.raises(ResponseTimeout, match="no answer to the sign-on"):
        await readout(meter.path)


async def test_collector_read_iec62056_reads_the_simulated_optical_meter(
        meter: SimulatedOpticalMeter) -> None:
    async def run(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector.cli", "read", "--iec62056", meter.path, *args,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode() + err.decode()

    code, out = await run("--json")
    assert code == 0, out
    doc = json.loads(out)
    assert "SIM MC-OPTICAL-1" in doc["meter"] and "9600 baud" in doc["meter"]
    assert {"1-0:1.8.0", "1-0:2.8.0", "0-0:0.9.1"} <= {v["obis"] for v in doc["values"]}
    # The table shows each value at the meter's own resolution: three decimals of kWh
    # (`001234.567`), two of amperes (`005.23`), not the usual two and three.
    code, out = await run()
    assert code == 0, out
    shown = {m[1]: m[2] for m in re.finditer(r"(1-0:\d+\.\d+\.\d+) .*?│ +([\d,]+\.\d+) │", out)}
    assert re.fullmatch(r"4,3\d\d\.\d{3}", shown["1-0:1.8.0"]), out
    assert re.fullmatch(r"\d+\.\d{2}", shown["1-0:31.7.0"]), out
    assert re.fullmatch(r"\d+\.\d{3}", shown["1-0:16.7.0"]), out
    meter.answer_sign_on = False
    code, out = await run()
    assert code == 3 and "no answer to the sign-on" in out and "Traceback" not in out
