"""The DL/T 645 client against simulated meters on a real pty: no mocks on the wire."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from collector.field.tools import check_clock, read_meter, scan_bus
from protocols.dlt645 import data_ids
from protocols.dlt645.codec import FrameError, MeterErrorReply
from protocols.errors import ResponseTimeout
from simulator.dlt645_meter import MeterFaults
from tests.integration.conftest import TZ

Factory = Callable[..., Any]


async def test_energy_block_read_matches_the_simulated_registers(
    pty_bus_factory: Factory,
) -> None:
    bus = await pty_bus_factory()
    values = await bus.client.read_values("000000000002", 0x0001FF00)
    truth = bus.fleet.meters[2].registers.forward(datetime.now(UTC).timestamp())
    assert [v.obis for v in values] == [f"1-0:1.8.{t}" for t in range(5)]
    for got, want in zip(values, truth, strict=True):
        assert got.value == pytest.approx(want, abs=0.02)
    assert values[0].value == pytest.approx(sum(v.value for v in values[1:]), abs=0.05)


async def test_instantaneous_values_arrive_with_units_and_signs(pty_bus_factory: Factory) -> None:
    bus = await pty_bus_factory()
    outcome = await read_meter(bus.client, "000000000001",
                               ["1-0:32.7.0", "1-0:31.7.0", "1-0:16.7.0", "1-0:14.7.0"])
    got = {v.obis: (v.value, v.unit) for v in outcome.values}
    assert 200 < got["1-0:32.7.0"][0] < 240 and got["1-0:32.7.0"][1] == "V"
    assert got["1-0:14.7.0"][1] == "Hz"
    assert outcome.problems == []


async def test_long_payload_is_collected_across_follow_up_frames(pty_bus_factory: Factory) -> None:
    bus = await pty_bus_factory()
    bus.fleet.meters[1].max_payload = 6
    values = await bus.client.read_values("000000000001", 0x0001FF00)
    assert len(values) == 5
    assert bus.fleet.buses[0].requests >= 4  # 1 read + 3 follow-ups (20 bytes / 6)


async def test_a_silent_meter_times_out_after_its_retries(pty_bus_factory: Factory) -> None:
    bus = await pty_bus_factory(faults={2: MeterFaults(silent=True)}, retries=2)
    with pytest.raises(ResponseTimeout) as info:
        await bus.client.read("000000000002", 0x00010000)
    assert info.value.meter == "000000000002" and info.value.bus == "bus1"
    assert bus.client.bus.stats.timeouts == 3
    # The bus is still usable for the next meter.
    assert await bus.client.read("000000000001", 0x00010000)


async def test_an_occasional_bad_checksum_is_retried_transparently(
    pty_bus_factory: Factory,
) -> None:
    bus = await pty_bus_factory(faults={1: MeterFaults(bad_checksum_every=2)})
    for _ in range(4):
        await bus.client.read_values("000000000001", 0x00010000)
    # Replies 2, 4 and 6 are corrupt: reads 2-4 each need one retry.
    assert bus.client.bus.stats.bad_frames == 3
    assert bus.fleet.buses[0].requests == 7


async def test_a_bad_checksum_every_time_surfaces_as_a_frame_error(
    pty_bus_factory: Factory,
) -> None:
    bus = await pty_bus_factory(faults={1: MeterFaults(bad_checksum_every=1)})
    with pytest.raises(FrameError, match="bad checksum"):
        await bus.client.read("000000000001", 0x00010000)


async def test_an_error_reply_is_reported_not_retried(pty_bus_factory: Factory) -> None:
    bus = await pty_bus_factory(faults={1: MeterFaults(error_dis=frozenset({0x00020000}))})
    with pytest.raises(MeterErrorReply, match="no such item"):
        await bus.client.read("000000000001", 0x00020000)
    assert bus.fleet.buses[0].requests == 1


async def test_a_reply_from_the_wrong_address_is_not_taken_as_the_answer(
    pty_bus_factory: Factory,
) -> None:
    bus = await pty_bus_factory(faults={1: MeterFaults(wrong_address=True)}, retries=0)
    with pytest.raises(ResponseTimeout):
        await bus.client.read("000000000001", 0x00010000)


async def test_scan_finds_every_meter_on_a_multi_drop_bus(pty_bus_factory: Factory) -> None:
    bus = await pty_bus_factory(meters=5, latency_s=0.01, retries=0)
    assert await scan_bus(bus.client) == [f"{n:012d}" for n in range(1, 6)]


async def test_scan_of_a_single_meter_needs_one_probe(pty_bus_factory: Factory) -> None:
    bus = await pty_bus_factory(meters=1)
    assert await scan_bus(bus.client) == ["000000000001"]
    assert bus.fleet.buses[0].requests == 1


async def test_clock_offset_is_measured_and_a_broadcast_sync_fixes_it(
    pty_bus_factory: Factory,
) -> None:
    bus = await pty_bus_factory(faults={1: MeterFaults(clock_offset_s=300.0)})
    before = await check_clock(bus.client, "000000000001", TZ)
    assert before.offset_s == pytest.approx(300, abs=2)
    await bus.client.broadcast_time_sync(datetime.now(UTC).astimezone(TZ))
    after = await check_clock(bus.client, "000000000001", TZ)
    assert abs(after.offset_s) <= 2


async def test_daily_frozen_records_are_stamped_at_local_midnight(
    pty_bus_factory: Factory,
) -> None:
    bus = await pty_bus_factory()
    raw = await bus.client.read("000000000001", data_ids.di_frozen_time(2))
    frozen = data_ids.decode_frozen_time(raw, TZ)
    today = datetime.now(TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    assert frozen == today - timedelta(days=1)
    block = await bus.client.read_values("000000000001", data_ids.di_frozen_forward(2))
    assert block[0].value == pytest.approx(
        bus.fleet.meters[1].registers.forward(frozen.timestamp())[0], abs=0.01)


@pytest.mark.parametrize(("speed", "measured"), [(1.0, True), (3600.0, False)])
async def test_a_clock_read_too_slow_to_tell_the_offset_records_no_offset(
        speed: float, measured: bool) -> None:
    from collector.acquisition.clock import SimulatedClock
    from collector.acquisition.pipeline import Dlt645Reader
    from collector.config.settings import Schedule
    from model import Meter
    from protocols.dlt645.client import ClientSettings, Dlt645Client
    from protocols.serial import LineSettings, SerialBus
    from simulator.bus import WireTiming
    from simulator.fleet import FleetSpec, build_fleet, meter_address

    # The meter answers after 20 ms: at 3600× that is 72 simulated seconds, more than the
    # drift threshold, on a meter whose clock is right.
    clock = SimulatedClock(datetime.now(UTC), speed)
    fleet = build_fleet(FleetSpec(meters=1, buses=1, tz=TZ, timing=WireTiming(latency_s=0.02)),
                        clock.now, clock.now() - timedelta(days=1))
    (path,) = await fleet.start()
    bus = await SerialBus.open("bus1", path, LineSettings(9600, "E"))
    try:
        reader = Dlt645Reader(Dlt645Client(bus, ClientSettings(latency_s=0.5, retries=1)),
                              clock, TZ)
        result = await reader.collect(Meter("m1", "dlt645", "bus1", meter_address(1)),
                                      Schedule("clock", timedelta(hours=1), clock=True),
                                      clock.now())
    finally:
        await bus.close()
        await fleet.stop()
    offsets = [r.value for r in result.readings if r.quantity == data_ids.CLOCK_OFFSET_OBIS]
    if measured:
        assert len(offsets) == 1 and abs(offsets[0]) <= 2
    else:
        assert offsets == []
        assert any("too slow to tell the meter's offset" in e for e in result.errors)
