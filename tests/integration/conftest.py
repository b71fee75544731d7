from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from protocols.dlt645.client import ClientSettings, Dlt645Client
from protocols.serial import LineSettings, SerialBus
from simulator.broker import Mosquitto
from simulator.bus import WireTiming
from simulator.dlt645_meter import MeterFaults
from simulator.fleet import Fleet, FleetSpec, build_fleet

TZ = ZoneInfo("Asia/Shanghai")
PASSWORD_ENV = "COLLECTOR_TEST_MQTT_PASSWORD"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    """A throwaway mosquitto with one user, collector/secret (password in PASSWORD_ENV)."""
    os.environ[PASSWORD_ENV] = "secret"
    b = Mosquitto({"collector": "secret"})
    b.start()
    yield b
    b.destroy()


@dataclass
class PtyBus:
    fleet: Fleet
    client: Dlt645Client
    path: str


BusFactory = Callable[..., "AsyncIterator[PtyBus]"]


@pytest.fixture
async def pty_bus_factory() -> AsyncIterator[Callable[..., object]]:
    """Start simulated meters on a real pty and open it with the real client."""
    opened: list[tuple[Fleet, SerialBus]] = []

    async def make(meters: int = 3, faults: dict[int, MeterFaults] | None = None,
                   timing: WireTiming | None = None, latency_s: float = 0.05,
                   retries: int = 1, baud: int = 9600) -> PtyBus:
        spec = FleetSpec(meters=meters, buses=1, tz=TZ, faults=faults or {},
                         timing=timing or WireTiming())
        fleet = build_fleet(spec, lambda: datetime.now(UTC),
                            datetime.now(UTC) - timedelta(days=3))
        (path,) = await fleet.start()
        bus = await SerialBus.open("bus1", path, LineSettings(baud, "E"))
        opened.append((fleet, bus))
        client = Dlt645Client(bus, ClientSettings(latency_s=latency_s, retries=retries,
                                                  backoff_s=0.01))
        return PtyBus(fleet, client, path)

    yield make
    for fleet, bus in opened:
        await bus.close()
        await fleet.stop()
