"""`collector wiring` against simulated meters miswired on the wire: every 3P4W current
permutation × sign, read over a real pty (DL/T 645) and from a pymodbus server (Modbus
TCP, the SDM630 profile), is named as it was made; a missing voltage and a single-phase
meter are told apart; the CLI exits 0 or 1 and draws its phasor PNG."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from collector.field.tools import ModbusTarget, modbus_session, read_meter, read_modbus
from collector.field.wiring import ANGLES, QUANTITIES, SINGLE, VARS, WiringReport, diagnose
from collector.phasors.fit import HYPOTHESES, describe_wiring
from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.modbus.profile import find_profile
from protocols.serial import LineSettings, SerialBus
from simulator.fleet import FleetSpec, build_fleet, meter_address
from simulator.modbus_tcp import ModbusTcpSimulator, modbus_meters
from simulator.wiring import Miswiring
from tests.integration.conftest import TZ

N = len(HYPOTHESES)  # 48, the correct wiring among them
MISSING_V, SINGLE_PHASE = N + 1, N + 2


@pytest.fixture
async def bus() -> object:
    wiring = {n + 1: Miswiring(perm, signs) for n, (perm, signs) in enumerate(HYPOTHESES)}
    wiring[MISSING_V] = Miswiring(missing_voltage=2)
    spec = FleetSpec(meters=SINGLE_PHASE, buses=1, tz=TZ,
                     three_phase=frozenset(range(1, MISSING_V + 1)), wiring=wiring)
    fleet = build_fleet(spec, lambda: datetime.now(UTC), datetime.now(UTC) - timedelta(days=1))
    (path,) = await fleet.start()
    yield fleet, path
    await fleet.stop()


@asynccontextmanager
async def opened(path: str) -> AsyncIterator[Dlt645Client]:
    """The test's own client, closed before a command opens the same port."""
    serial = await SerialBus.open("bus1", path, LineSettings(9600, "E"))
    try:
        yield Dlt645Client(serial, ClientSettings(latency_s=0.05, retries=1, backoff_s=0.01))
    finally:
        await serial.close()


async def samples(client: Dlt645Client, n: int, quantities: tuple[str, ...] = QUANTITIES,
                  times: int = 2) -> list[dict[str, float]]:
    out = []
    for _ in range(times):
        got = await read_meter(client, meter_address(n), quantities)
        out.append({v.obis: v.value for v in got.values})
    return out


async def test_every_3p4w_miswiring_made_on_the_wire_is_named(bus: object) -> None:
    _, path = bus  # type: ignore[misc]
    async with opened(path) as client:
        reports = [diagnose(await samples(client, n)) for n in range(1, N + 1)]
    for report, (perm, signs) in zip(reports, HYPOTHESES, strict=True):
        want = describe_wiring(perm, signs)
        assert report.verdict == ("wiring correct" if want == "correct" else want), (perm,
                                                                                     signs)
        assert report.ok is (want == "correct")
        assert report.confidence in ("high", "medium")
        assert bool(report.fixes) is (want != "correct")


async def test_a_missing_voltage_and_a_single_phase_meter_are_told_as_such(
        bus: object) -> None:
    fleet, path = bus  # type: ignore[misc]
    async with opened(path) as client:
        missing = diagnose(await samples(client, MISSING_V))
        single = diagnose(await samples(client, SINGLE_PHASE, SINGLE), "1P")
    assert missing.ok is False and missing.verdict == "phase C voltage missing"
    assert single.ok is True and "only the direction" in single.notes[0]
    reversed_ct = fleet.meters[2].registers  # element C reversed: the registers feel it
    assert reversed_ct.registered is not None and reversed_ct.registered(0.0) < 1.0


async def test_the_command_exits_by_verdict_and_draws_the_phasor_diagram(
        bus: object, tmp_path: Path) -> None:
    _, path = bus  # type: ignore[misc]
    wrong = HYPOTHESES.index(((1, 0, 2), (1, 1, 1))) + 1  # A and B currents swapped
    right = HYPOTHESES.index(((0, 1, 2), (1, 1, 1))) + 1
    png = tmp_path / "phasors.png"

    async def run(n: int, *extra: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector.cli", "wiring", "--port", path, "--baud", "9600",
            "--address", meter_address(n), "--samples", "2", "--every", "0", *extra,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode() + err.decode()

    code, out = await run(wrong, "--plot", str(png))
    assert code == 1, out
    assert "phase A and B currents swapped" in out and "swap the current leads" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    code, out = await run(right, "--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ok"] is True and doc["verdict"] == "wiring correct"
    assert doc["fit"]["perm"] == ["A", "B", "C"]


@pytest.fixture
async def modbus_port() -> AsyncIterator[int]:
    """One pymodbus server, a unit id per miswiring (1..48) and one with phase C's
    voltage lead off."""
    wiring = {n + 1: Miswiring(perm, signs) for n, (perm, signs) in enumerate(HYPOTHESES)}
    wiring[MISSING_V] = Miswiring(missing_voltage=2)
    meters = modbus_meters(find_profile("sdm630"), range(1, MISSING_V + 1), wiring=wiring)
    sim = ModbusTcpSimulator(meters, lambda: datetime.now(UTC))
    port = await sim.start()
    yield port
    await sim.stop()


async def test_every_3p4w_miswiring_served_over_modbus_is_named(modbus_port: int) -> None:
    profile = find_profile("sdm630")
    reports = {}
    async with modbus_session(ModbusTarget("tcp", "127.0.0.1", modbus_port)) as reader:
        for unit in range(1, MISSING_V + 1):
            readings = []
            for _ in range(2):
                got = await read_modbus(reader, unit, profile, QUANTITIES)
                assert got.problems == []
                readings.append({v.obis: v.value for v in got.values})
            reports[unit] = diagnose(readings)
    for unit, (perm, signs) in enumerate(HYPOTHESES, start=1):
        want = describe_wiring(perm, signs)
        assert reports[unit].verdict == ("wiring correct" if want == "correct" else want), (
            perm, signs)
        assert reports[unit].confidence in ("high", "medium")
    assert reports[MISSING_V].verdict == "phase C voltage missing"


async def test_the_command_checks_a_modbus_meter_and_exits_by_verdict(modbus_port: int) -> None:
    reversed_b = HYPOTHESES.index(((0, 1, 2), (1, -1, 1))) + 1
    right = HYPOTHESES.index(((0, 1, 2), (1, 1, 1))) + 1

    async def run(unit: int) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "collector.cli", "wiring",
            "--modbus", f"tcp://127.0.0.1:{modbus_port}", "--unit", str(unit),
            "--profile", "sdm630", "--samples", "2", "--every", "0",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        return proc.returncode or 0, out.decode() + err.decode()

    code, out = await run(reversed_b)
    assert code == 1, out
    assert "phase B current reversed" in out
    code, out = await run(right)
    assert code == 0, out
    assert "wiring correct" in out


async def served(profile_name: str, wiring: dict[int, Miswiring], drop: tuple[str, ...] = (),
                 ) -> dict[int, WiringReport]:
    """Each unit's diagnosis, read from a pymodbus server serving `profile_name` without
    the registers in `drop`."""
    full = find_profile(profile_name)
    profile = dataclasses.replace(full, registers=tuple(
        r for r in full.registers if r.obis not in drop))
    meters = modbus_meters(profile, sorted(wiring), wiring=wiring)
    sim = ModbusTcpSimulator(meters, lambda: datetime.now(UTC))
    port = await sim.start()
    try:
        async with modbus_session(ModbusTarget("tcp", "127.0.0.1", port)) as reader:
            out: dict[int, WiringReport] = {}
            for unit in sorted(wiring):
                got = await read_modbus(reader, unit, profile, QUANTITIES)
                out[unit] = diagnose([{v.obis: v.value for v in got.values}])
            return out
    finally:
        await sim.stop()


async def test_without_angle_registers_the_angles_come_from_each_phases_p_and_q() -> None:
    wiring = {n + 1: Miswiring(perm, signs) for n, (perm, signs) in enumerate(HYPOTHESES)}
    reports = await served("sdm630", wiring, drop=ANGLES)
    for unit, (perm, signs) in enumerate(HYPOTHESES, start=1):
        want = describe_wiring(perm, signs)
        report = reports[unit]
        assert report.verdict == ("wiring correct" if want == "correct" else want)
        assert "worked out from its phase's active and reactive power" in report.notes[0]


async def test_with_power_only_a_backward_phase_is_named_and_phase_order_is_not_claimed(
        ) -> None:
    right, reversed_b = Miswiring((0, 1, 2), (1, 1, 1)), Miswiring((0, 1, 2), (1, -1, 1))
    reports = await served("sdm630", {1: right, 2: reversed_b}, drop=(*ANGLES, *VARS))
    good, bad = reports[1], reports[2]
    assert good.ok is None and "phase order not checked" in good.verdict
    assert bad.ok is False and bad.verdict == "phase B power runs backward"
