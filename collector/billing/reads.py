"""The validated reads a cycle's bills stand on, loaded in bulk: register reads at every
boundary instant and the interval register series of the cycle.

A register read at a boundary is the meter's frozen daily value where it has one (the
billing reference the meter latched itself), else the interval read at that instant,
else the read a technician recorded at a swap; each keeps its quality, version and
source, so a bill names exactly which reads it used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

from collector.vee.status import failing
from model import Quality, ReadKind, ValueVersion, Verdict
from storage.versions import ValidatedStore

TOTAL = "1-0:1.8.0"
REGISTERS = (TOTAL, "1-0:1.8.1", "1-0:1.8.2", "1-0:1.8.3", "1-0:1.8.4")


@dataclass(frozen=True, slots=True)
class Read:
    value: float
    quality: Quality
    source: str
    """'frozen daily', 'interval', or 'swap read' (recorded at a replacement)."""
    at: datetime
    version: int = 0
    method: str = ""

    def cite(self) -> dict[str, object]:
        out: dict[str, object] = {"value": self.value, "quality": str(self.quality),
                                  "source": self.source, "at": self.at.isoformat(),
                                  "version": self.version}
        if self.method:
            out["method"] = self.method
        return out


@dataclass
class Reads:
    registers: dict[tuple[str, str, datetime], Read] = field(default_factory=dict)
    intervals: dict[str, list[ValueVersion]] = field(default_factory=dict)
    """Each meter's interval register values in the cycle, start boundary included."""
    held: dict[str, list[tuple[date, list[str]]]] = field(
        default_factory=lambda: defaultdict(list))
    """Meter → the days VEE holds and the rules that hold them."""

    def register(self, meter: str, quantity: str, at: datetime) -> Read | None:
        return self.registers.get((meter, quantity, at))


async def load_registers(store: ValidatedStore, instants: Iterable[datetime],
                         quantities: Sequence[str] = REGISTERS) -> dict[
                             tuple[str, str, datetime], Read]:
    """Every meter's register reads at these instants, frozen daily first."""
    out: dict[tuple[str, str, datetime], Read] = {}
    for at in sorted(set(instants)):
        for kind, source in ((ReadKind.FROZEN_DAILY, "frozen daily"),
                             (ReadKind.INTERVAL, "interval")):
            for q in quantities:
                for v in await store.current_values(q, at, at, None, kind):
                    if v.value is None or (v.meter_id, q, at) in out:
                        continue
                    out[(v.meter_id, q, at)] = Read(v.value, v.quality, source, at, v.version,
                                                    v.method)
    return out


async def load_intervals(store: ValidatedStore, meter_ids: Sequence[str], start: datetime,
                         end: datetime, chunk: int = 2000) -> dict[str, list[ValueVersion]]:
    out: dict[str, list[ValueVersion]] = defaultdict(list)
    for i in range(0, len(meter_ids), chunk):
        for v in await store.current_values(TOTAL, start, end, meter_ids[i:i + chunk]):
            if v.value is not None:
                out[v.meter_id].append(v)
    return dict(out)


def held_days(verdicts: Sequence[Verdict]) -> dict[str, list[tuple[date, list[str]]]]:
    """Meter → [(day, rules)] for the meter-days VEE holds, by VEE's own judgement."""
    per: dict[tuple[str, date], list[Verdict]] = defaultdict(list)
    for v in verdicts:
        per[(v.meter_id, v.day)].append(v)
    out: dict[str, list[tuple[date, list[str]]]] = defaultdict(list)
    for (meter, day), vs in sorted(per.items()):
        rules = failing(vs)
        if rules:
            out[meter].append((day, sorted(set(rules))))
    return out
