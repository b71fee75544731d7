"""A Modbus meter that serves any profile with live values from the load model.

The register image is built from the profile with the same encoder the collector
decodes with, so a profile's type, scale and word order are exercised end to end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from protocols.modbus import frames
from protocols.modbus.profile import Profile
from simulator.instant import instantaneous
from simulator.load import LoadModel
from simulator.registers import RegisterBank
from simulator.wiring import Miswiring


@dataclass
class ModbusFaults:
    exception: int = 0
    """Answer every read with this exception code (0 = none)."""
    exception_at: frozenset[int] = frozenset()
    """Raise illegal data address (2) for reads touching these addresses."""
    silent: bool = False
    nan_obis: frozenset[str] = frozenset()
    """Quantities whose registers read as NaN (a float register a meter never filled)."""
    wrong_length: bool = False
    """Reply with one register fewer than asked."""

    def describe(self) -> list[str]:
        out = []
        if self.exception:
            out.append(f"exception {self.exception}")
        if self.exception_at:
            out.append(f"exception at {sorted(self.exception_at)}")
        if self.silent:
            out.append("silent")
        if self.wrong_length:
            out.append("short replies")
        return out


@dataclass
class SimulatedModbusMeter:
    unit: int
    profile: Profile
    load: LoadModel
    registers: RegisterBank
    phases: int = 3
    faults: ModbusFaults = field(default_factory=ModbusFaults)
    wiring: Miswiring | None = None
    """Miswired CTs or a missing voltage lead; give `registers` the same wiring."""

    def values(self, now: datetime) -> dict[str, float]:
        epoch = now.timestamp()
        out = instantaneous(self.load, self.phases, now, self.wiring)
        out["1-0:1.8.0"] = self.registers.forward(epoch)[0]
        out["1-0:2.8.0"] = self.registers.reverse(epoch)[0]
        out["1-0:15.8.0"] = out["1-0:1.8.0"] + out["1-0:2.8.0"]
        for obis in self.faults.nan_obis:
            out[obis] = math.nan
        return out

    def read(self, function: int, start: int, count: int, now: datetime) -> list[int] | int:
        """Registers start..start+count, or an exception code."""
        if self.faults.exception:
            return self.faults.exception
        if any(start <= a < start + count for a in self.faults.exception_at):
            return 2
        image = [0] * count
        values = self.values(now)
        for spec in self.profile.registers:
            if frames.FUNCTIONS[spec.function] != function:
                continue
            if spec.address + spec.words <= start or spec.address >= start + count:
                continue
            words = spec.encode(values.get(spec.obis, 0.0))
            for i, w in enumerate(words):
                at = spec.address + i - start
                if 0 <= at < count:
                    image[at] = w
        return image

    def respond_pdu(self, pdu: bytes, now: datetime) -> bytes | None:
        if self.faults.silent:
            return None
        try:
            request = frames.parse_request_pdu(self.unit, pdu)
        except frames.ModbusFrameError:
            return frames.exception_pdu(pdu[0] if pdu else 0, 1)
        result = self.read(request.function, request.address, request.count, now)
        if isinstance(result, int):
            return frames.exception_pdu(request.function, result)
        if self.faults.wrong_length:
            result = result[:-1]
        return frames.reply_pdu(request.function, result)
