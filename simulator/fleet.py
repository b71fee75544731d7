"""A population of simulated DL/T 645 meters spread over pty buses, built from a seed."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from simulator.bus import SimulatedBus, WireTiming
from simulator.dlt645_meter import MeterFaults, SimulatedDlt645Meter
from simulator.instant import registered_share
from simulator.load import FOUR_RATE, TWO_RATE, FeederLoad, LoadModel, unit_noise
from simulator.registers import EnergyChange, RegisterBank
from simulator.wiring import Miswiring


def meter_address(n: int) -> str:
    return f"{n:012d}"


@dataclass
class FleetSpec:
    meters: int = 20
    buses: int = 2
    seed: int = 1
    tz: tzinfo | None = None
    utc_offset_h: float = 8.0
    timing: WireTiming = field(default_factory=WireTiming)
    faults: Mapping[int, MeterFaults] = field(default_factory=dict)
    """Faults by meter number (1-based)."""
    exporters: frozenset[int] = frozenset()
    three_phase: frozenset[int] = frozenset()
    changes: Mapping[int, tuple[EnergyChange, ...]] = field(default_factory=dict)
    """Register changes by meter number: spikes, zero runs, swaps, CT ratio changes."""
    openings: Mapping[int, float] = field(default_factory=dict)
    """Opening register by meter number (near 999999.99 to see a rollover)."""
    wiring: Mapping[int, Miswiring] = field(default_factory=dict)
    """Miswired three-phase meters by number: angles, powers and registers follow."""
    installed: Mapping[int, datetime] = field(default_factory=dict)
    """When a meter was installed (a replacement): silent before, and its memory and
    registers start then. The others start at `registers_from`."""
    feeders: Mapping[int, tuple[int, ...]] = field(default_factory=dict)
    """Transformer meters by number, each with the customer meters it feeds: it counts
    what they draw plus the line's loss (FeederLoad)."""


@dataclass
class Fleet:
    buses: list[SimulatedBus]
    meters: dict[int, SimulatedDlt645Meter]
    bus_of: dict[int, int]
    paths: list[str] = field(default_factory=list)

    async def start(self) -> list[str]:
        self.paths = [await bus.start() for bus in self.buses]
        return self.paths

    async def stop(self) -> None:
        for bus in self.buses:
            await bus.stop()


def build_fleet(spec: FleetSpec, now: Callable[[], datetime], registers_from: datetime) -> Fleet:
    """Meters 1..N dealt round-robin onto the buses, so every bus has a similar load."""
    from datetime import UTC, timezone

    tz = spec.tz or timezone(timedelta(hours=spec.utc_offset_h))
    offset_h = (registers_from.astimezone(tz).utcoffset() or timedelta(0)).total_seconds() / 3600
    per_bus: list[list[SimulatedDlt645Meter]] = [[] for _ in range(spec.buses)]
    meters: dict[int, SimulatedDlt645Meter] = {}
    bus_of: dict[int, int] = {}
    start_epoch = int(registers_from.astimezone(UTC).timestamp())
    loads: dict[int, LoadModel] = {}
    # Customers first: a transformer meter's load is made of theirs.
    for n in sorted(range(1, spec.meters + 1), key=lambda n: n in spec.feeders):
        seed = spec.seed * 100_003 + n
        if n in spec.feeders:
            load: LoadModel = FeederLoad(seed=seed, utc_offset_h=offset_h,
                                         members=tuple(loads[k] for k in spec.feeders[n]))
        else:
            load = LoadModel.for_meter(seed, pv=n in spec.exporters, utc_offset_h=offset_h)
        loads[n] = load
        opening = spec.openings.get(n, round(2000 + 30000 * (unit_noise(seed, -2) + 1) / 2, 2))
        calendar = FOUR_RATE if n in spec.three_phase or n in spec.feeders else TWO_RATE
        since = spec.installed.get(n)
        wiring = spec.wiring.get(n) if n in spec.three_phase else None
        bank = RegisterBank(load, int(since.timestamp()) if since else start_epoch,
                            forward0=opening, calendar=calendar,
                            changes=spec.changes.get(n, ()),
                            registered=registered_share(load, wiring) if wiring else None)
        meter = SimulatedDlt645Meter(
            address=meter_address(n),
            load=load,
            registers=bank,
            tz=tz,
            phases=3 if n in spec.three_phase or n in spec.feeders else 1,
            faults=spec.faults.get(n, MeterFaults()),
            wiring=wiring,
        )
        meters[n] = meter
        bus_of[n] = (n - 1) % spec.buses
        per_bus[bus_of[n]].append(meter)
    buses = [SimulatedBus(group, now, spec.timing) for group in per_bus]
    return Fleet(buses, meters, bus_of)
