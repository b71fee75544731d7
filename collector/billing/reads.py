"""The validated reads a cycle's bills stand on, loaded in bulk: register reads at every
boundary instant and the interval register series of the cycle.

A register read at a boundary is the meter's frozen daily value where it has one (the
billing reference the meter latched itself), else the interval read at that instant,
else the read a technician recorded at a swap; each keeps its quality, version and
source, so a bill names exactly which reads it used.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np

from collector.vee.status import failing
from model import Quality, ReadKind, Verdict
from storage.arrays import CurrentArrays, empty
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
    intervals: list[CurrentArrays] = field(default_factory=list)
    """The interval register values of the cycle, start boundary included, by chunk of
    meters."""
    held: dict[str, list[tuple[date, list[str]]]] = field(
        default_factory=lambda: defaultdict(list))
    """Meter → the days VEE holds and the rules that hold them."""

    def register(self, meter: str, quantity: str, at: datetime) -> Read | None:
        return self.registers.get((meter, quantity, at))

    def series(self, meter: str) -> tuple[CurrentArrays, slice]:
        """The columns holding this meter's intervals and its rows in them."""
        for chunk in self.intervals:
            rows = chunk.rows(meter)
            if rows.stop > rows.start:
                return chunk, rows
        return empty(), slice(0, 0)


async def load_registers(store: ValidatedStore, wanted: Mapping[datetime, Iterable[str]],
                         quantities: Sequence[str] = REGISTERS, chunk: int = 2000) -> dict[
                             tuple[str, str, datetime], Read]:
    """The register reads of these meters at these instants, frozen daily first. Each
    query asks only for the meters read at its instant: cycles by reading day put a
    different few thousand meters at each."""
    out: dict[tuple[str, str, datetime], Read] = {}
    sources = ((ReadKind.FROZEN_DAILY, "frozen daily"), (ReadKind.INTERVAL, "interval"))
    for (at, meters), q in itertools.product(sorted(wanted.items()), quantities):
        missing = sorted(meters)
        for kind, source in sources:
            # The interval read only where the meter latched no frozen value itself.
            for c in range(0, len(missing), chunk):
                got = await store.current_arrays(q, at, at, missing[c:c + chunk], kind)
                for i, meter in enumerate(got.meter_ids):
                    k = int(got.bounds[i])
                    if not np.isnan(got.value[k]):
                        out[(meter, q, at)] = Read(
                            float(got.value[k]), got.quality_of(k), source, at,
                            int(got.version[k]), got.methods[int(got.method[k])])
            missing = [m for m in missing if (m, q, at) not in out]
    return out


async def load_intervals(store: ValidatedStore, meter_ids: Sequence[str], start: datetime,
                         end: datetime, chunk: int = 2000) -> list[CurrentArrays]:
    return [await store.current_arrays(TOTAL, start, end, meter_ids[i:i + chunk])
            for i in range(0, len(meter_ids), chunk)]


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
