"""Modbus against real pymodbus TCP servers and a mixed RS-485 pty bus: no mocks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from collector.acquisition.clock import SteppedClock
from collector.cli.main import main
from collector.config.settings import (
    BusConfig,
    CollectorSettings,
    ModbusSettings,
    Schedule,
    Settings,
    StorageSettings,
)
from collector.field.tools import ModbusTarget, modbus_session, read_modbus
from collector.runtime.daemon import run_collector
from model import Meter
from protocols.errors import ProtocolError, ResponseTimeout
from protocols.modbus.client import ModbusTcpHost
from protocols.modbus.frames import ModbusFrameError, ReadRequest
from protocols.modbus.profile import builtin_profiles, find_profile
from simulator.bus import SimulatedBus
from simulator.fleet import FleetSpec, build_fleet
from simulator.modbus_meter import ModbusFaults
from simulator.modbus_tcp import ModbusTcpSimulator, modbus_meters
from storage.sqlite import SqliteStore
from tests.integration.conftest import TZ

FIXED = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize("name", ["sdm120", "sdm630", "dtsu666", "generic"])
async def test_each_shipped_profile_decodes_the_values_the_simulator_serves(name: str) -> None:
    profile = builtin_profiles()[name]
    meters = modbus_meters(profile, [1, 7], start=FIXED - timedelta(days=1))
    sim = ModbusTcpSimulator(meters, lambda: FIXED)
    port = await sim.start()
    try:
        async with modbus_session(ModbusTarget("tcp", "127.0.0.1", port)) as reader:
            outcome = await read_modbus(reader, 7, profile)
    finally:
        await sim.stop()
    truth = meters[7].values(FIXED)
    assert outcome.problems == []
    assert {v.obis for v in outcome.values} == {s.obis for s in profile.registers}
    for v in outcome.values:
        spec = profile.spec(v.obis)
        assert spec is not None
        resolution = abs(spec.scale) if not spec.type.startswith("float") else 0
        assert v.value == pytest.approx(truth.get(v.obis, 0.0), rel=1e-5, abs=resolution + 1e-6)


async def test_modbus_exceptions_timeouts_and_short_replies_are_clear_per_meter_errors() -> None:
    profile = find_profile("sdm630")
    faults = {2: ModbusFaults(exception_at=frozenset({0x48})), 3: ModbusFaults(silent=True),
              4: ModbusFaults(wrong_length=True)}
    sim = ModbusTcpSimulator(modbus_meters(profile, [1, 2, 3, 4], faults=faults),
                             lambda: datetime.now(UTC))
    port = await sim.start()
    host = ModbusTcpHost("127.0.0.1", port, concurrency=2, timeout_s=0.3)
    try:
        outcome = await read_modbus(host, 2, profile, ["1-0:32.7.0", "1-0:1.8.0"])
        assert [v.obis for v in outcome.values] == ["1-0:32.7.0"]
        assert outcome.problems == ["registers 72+2: modbus exception 2 (illegal data address) "
                                    "to function 04H"]
        with pytest.raises(ResponseTimeout) as timeout:
            await host.read_registers(ReadRequest(3, 4, 0, 2))
        assert timeout.value.meter == "3" and timeout.value.bus == f"127.0.0.1:{port}"
        with pytest.raises(ModbusFrameError, match="expected 4 for 2 registers"):
            await host.read_registers(ReadRequest(4, 4, 0, 2))
        # The pool recovers: unit 1 still reads fine after all that.
        assert len(await host.read_registers(ReadRequest(1, 4, 0, 2))) == 2
    finally:
        await host.close()
        await sim.stop()


async def test_tcp_reads_reconnect_after_the_server_restarts() -> None:
    profile = find_profile("sdm120")
    meters = modbus_meters(profile, [1])
    sim = ModbusTcpSimulator(meters, lambda: datetime.now(UTC))
    port = await sim.start()
    host = ModbusTcpHost("127.0.0.1", port, concurrency=1, timeout_s=0.5)
    try:
        assert await host.read_registers(ReadRequest(1, 4, 0, 2))
        await sim.stop()
        with pytest.raises(ProtocolError):  # refused, reset or silent: all protocol errors
            await host.read_registers(ReadRequest(1, 4, 0, 2))
        sim = ModbusTcpSimulator(meters, lambda: datetime.now(UTC), port=port)
        await sim.start()
        assert len(await host.read_registers(ReadRequest(1, 4, 0, 2))) == 2
        assert host.stats.reconnects + host.stats.timeouts >= 1
    finally:
        await host.close()
        await sim.stop()


async def test_dlt645_and_modbus_rtu_meters_share_one_pty_bus(tmp_path: Path) -> None:
    start = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    clock = SteppedClock(start - timedelta(minutes=10))
    fleet = build_fleet(FleetSpec(meters=3, buses=1, tz=TZ), clock.now, start - timedelta(days=1))
    profile = find_profile("sdm120")
    rtu_meters = modbus_meters(profile, [5, 6], start=start - timedelta(days=1))
    fleet.buses[0] = SimulatedBus(fleet.buses[0].meters, clock.now,
                                  modbus=list(rtu_meters.values()))
    (path,) = await fleet.start()
    meters = [Meter(f"d{n}", "dlt645", "bus1", f"{n:012d}") for n in (1, 2, 3)]
    meters += [Meter(f"r{u}", "modbus-rtu", "bus1", str(u), model="sdm120") for u in (5, 6)]
    settings = Settings(
        source="(test)", collector=CollectorSettings(timezone="Asia/Shanghai"),
        storage=StorageSettings(url=f"sqlite:///{tmp_path / 'mixed.db'}"),
        buses=(BusConfig("bus1", path, baud=38400, latency_ms=10, retries=1),),
        meters=tuple(meters),
        schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0", "1-0:32.7.0")),),
        modbus=ModbusSettings(),
    )
    store = SqliteStore(str(tmp_path / "mixed.db"))
    try:
        stats = await run_collector(settings, clock=clock, until=start + timedelta(hours=1),
                                    store=store, handle_signals=False)
        latest = {(r.meter_id, r.quantity): r for r in await store.latest_readings()}
    finally:
        await fleet.stop()
        await store.close()
    assert all(s.ok == 5 and s.attempts == 5 for s in stats.meters.values()), stats.meters
    assert latest[("r5", "1-0:1.8.0")].source == "modbus-rtu:bus1"
    assert latest[("d2", "1-0:1.8.0")].source == "dlt645:bus1:profile"  # the slot's record
    assert 200 < latest[("r6", "1-0:32.7.0")].value < 240


async def test_modbus_tcp_meters_are_polled_by_the_daemon_concurrently(tmp_path: Path) -> None:
    start = datetime(2026, 11, 21, 16, 0, tzinfo=UTC)
    clock = SteppedClock(start - timedelta(minutes=10))
    profile = find_profile("dtsu666")
    sim = ModbusTcpSimulator(modbus_meters(profile, range(1, 21)), clock.now, latency_s=0.005)
    port = await sim.start()
    meters = tuple(Meter(f"t{u}", "modbus-tcp", f"127.0.0.1:{port}", str(u), model="dtsu666")
                   for u in range(1, 21))
    settings = Settings(
        source="(test)", storage=StorageSettings(url=f"sqlite:///{tmp_path / 'tcp.db'}"),
        meters=meters, modbus=ModbusSettings(host_concurrency=4, timeout_ms=500),
        schedules=(Schedule("i", timedelta(minutes=15), ("1-0:1.8.0", "1-0:16.7.0")),),
    )
    try:
        stats = await run_collector(settings, clock=clock, until=start + timedelta(minutes=30),
                                    handle_signals=False)
    finally:
        await sim.stop()
    assert len(stats.meters) == 20 and all(s.ok == 3 for s in stats.meters.values())
    assert stats.readings == 20 * 3 * 2


async def test_cli_reads_a_modbus_tcp_meter_into_a_table() -> None:
    profile = find_profile("sdm630")
    sim = ModbusTcpSimulator(modbus_meters(profile, [3]), lambda: datetime.now(UTC))
    port = await sim.start()
    try:
        import asyncio

        result = await asyncio.to_thread(CliRunner().invoke, main, [
            "read", "--modbus", f"tcp://127.0.0.1:{port}", "--unit", "3", "--profile", "sdm630"])
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.output
    assert "1-0:1.8.0" in result.output and "kWh" in result.output


async def test_cli_scan_lists_the_unit_ids_that_answer() -> None:
    profile = find_profile("sdm120")
    sim = ModbusTcpSimulator(modbus_meters(profile, [3, 9]), lambda: datetime.now(UTC))
    port = await sim.start()
    try:
        import asyncio

        result = await asyncio.to_thread(CliRunner().invoke, main, [
            "scan", "--modbus", f"tcp://127.0.0.1:{port}", "--units", "1-12",
            "--latency-ms", "300"])
    finally:
        await sim.stop()
    assert result.exit_code == 0, result.output
    assert "responding unit ids: 3, 9" in result.output
