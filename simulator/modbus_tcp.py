"""pymodbus TCP servers that serve simulated Modbus meters, many unit ids per server.

Each server is one "gateway" host:port; its unit ids are meters. Values come live from
the meters' load models through pymodbus's SimDevice action hook; faults (exceptions,
silence, short replies) are injected per unit. For benchmarks the servers run in
separate processes so the simulator does not share a core with the poller it measures.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from protocols.modbus.profile import Profile, find_profile
from simulator.instant import registered_share
from simulator.load import LoadModel
from simulator.modbus_meter import ModbusFaults, SimulatedModbusMeter
from simulator.ports import free_port
from simulator.registers import RegisterBank
from simulator.wiring import Miswiring

logging.getLogger("pymodbus").setLevel(logging.ERROR)
_EXC = {code.value: code for code in ExcCodes}


@dataclass
class ModbusTcpSimulator:
    meters: dict[int, SimulatedModbusMeter]
    now: Callable[[], datetime]
    host: str = "127.0.0.1"
    port: int = 0
    latency_s: float = 0.0
    requests: int = 0
    _server: Any = None
    _task: asyncio.Task[None] | None = None
    _short: set[int] = field(default_factory=set)

    async def _action(self, meter: SimulatedModbusMeter, function_code: int, start_address: int,
                      address: int, count: int, current_registers: list[int],
                      set_values: Any) -> Any:
        self.requests += 1
        if meter.faults.silent:
            await asyncio.sleep(3600)
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        result = meter.read(function_code, address, count, self.now())
        if isinstance(result, int):
            return _EXC.get(result, ExcCodes.DEVICE_FAILURE)
        offset = address - start_address
        current_registers[offset : offset + count] = result
        return None

    def _trace(self, sending: bool, data: bytes) -> bytes:
        """Trim one register off replies to units set to send short replies."""
        if sending and len(data) >= 11 and data[6] in self._short and data[7] in (3, 4):
            pdu = bytes([data[7], data[8] - 2]) + data[9:-2]
            return data[:4] + struct.pack(">H", len(pdu) + 1) + data[6:7] + pdu
        return data

    def _device(self, meter: SimulatedModbusMeter) -> SimDevice:
        def block(function: str) -> list[SimData]:
            """Only the span the profile uses: reads outside it get pymodbus's own
            illegal-address exception, as a real meter would answer."""
            specs = [s for s in meter.profile.registers if s.function == function]
            if not specs:
                return [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)]
            lo = min(s.address for s in specs)
            hi = max(s.address + s.words for s in specs)
            return [SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)]

        bits = [SimData(0, count=16, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=meter.unit,
            simdata=(bits, list(bits), block("holding"), block("input")),
            action=functools.partial(self._action, meter),
        )

    async def start(self) -> int:
        self.port = self.port or free_port(self.host)
        self._short = {u for u, m in self.meters.items() if m.faults.wrong_length}
        devices = [self._device(m) for m in self.meters.values()]
        # Unit id 0 catches every id not defined: it never answers, as an empty address
        # on the RS-485 line behind a real gateway.
        devices.append(SimDevice(id=0, simdata=[SimData(0, count=1, values=0,
                                                        datatype=DataType.REGISTERS)],
                                 action=_never_answer))
        self._server = ModbusTcpServer(devices, address=(self.host, self.port),
                                       trace_packet=self._trace)
        self._task = asyncio.create_task(self._server.serve_forever())
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection(self.host, self.port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def _never_answer(*_args: Any) -> None:
    await asyncio.sleep(3600)


def modbus_meters(profile: Profile, units: Sequence[int], *, seed: int = 7,
                  faults: dict[int, ModbusFaults] | None = None,
                  start: datetime | None = None,
                  wiring: Mapping[int, Miswiring] | None = None,
                  ) -> dict[int, SimulatedModbusMeter]:
    """Three-phase meters, one per unit id; a miswired unit's registers feel its wiring
    too (a reversed CT drives the export register)."""
    begin = int((start or datetime.now(UTC) - timedelta(days=1)).timestamp())
    out = {}
    for unit in units:
        load = LoadModel.for_meter(seed * 1009 + unit)
        wired = (wiring or {}).get(unit)
        bank = RegisterBank(load, begin, forward0=1000.0 + unit,
                            registered=registered_share(load, wired) if wired else None)
        out[unit] = SimulatedModbusMeter(unit, profile, load, bank,
                                         faults=(faults or {}).get(unit, ModbusFaults()),
                                         wiring=wired)
    return out


def _serve(profile_name: str, units: list[int], ports: list[int], latency_s: float,
           ready: Any) -> None:
    async def main() -> None:
        profile = find_profile(profile_name)
        for port in ports:
            meters = modbus_meters(profile, units)
            for meter in meters.values():
                meter.values(datetime.now(UTC))  # integrate the history before timing starts
            sim = ModbusTcpSimulator(meters, lambda: datetime.now(UTC), port=port,
                                     latency_s=latency_s)
            await sim.start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


class ServerProcesses:
    """Simulated TCP gateways spread over a few child processes, for benchmarks.

    Python servers cost CPU per request, so on a small machine more processes than cores
    only add contention: by default the gateways share two processes.
    """

    def __init__(self, profile: str, servers: int, units_per_server: int,
                 latency_s: float = 0.0, processes: int = 2) -> None:
        self.ports = [free_port() for _ in range(servers)]
        ctx = multiprocessing.get_context("spawn")
        self.units = list(range(1, units_per_server + 1))
        groups = [self.ports[i::processes] for i in range(min(processes, servers))]
        self._events = [ctx.Event() for _ in groups]
        self._procs = [
            ctx.Process(target=_serve, args=(profile, self.units, group, latency_s, ev),
                        daemon=True)
            for group, ev in zip(groups, self._events, strict=True)
        ]

    def start(self, timeout: float = 60.0) -> None:
        for p in self._procs:
            p.start()
        for ev in self._events:
            if not ev.wait(timeout):
                raise RuntimeError("a simulated Modbus server did not start")

    def stop(self) -> None:
        for p in self._procs:
            p.terminate()
        for p in self._procs:
            p.join(5)
