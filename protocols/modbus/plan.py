"""Read planning: the fewest block reads that cover a profile's wanted registers.

Each Modbus request costs a round trip (and on RS-485, bus time), so neighbouring
registers are merged into one read, bridging small gaps, never across function codes
and never past the device's block limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from protocols.modbus.frames import FUNCTIONS, MAX_READ
from protocols.modbus.profile import RegisterSpec


@dataclass(frozen=True, slots=True)
class Block:
    function: int
    start: int
    count: int
    specs: tuple[RegisterSpec, ...]

    def values(self, registers: Sequence[int]) -> list[tuple[RegisterSpec, float]]:
        return [(s, s.decode(list(registers[s.address - self.start :
                                             s.address - self.start + s.words])))
                for s in self.specs]


def plan_blocks(
    specs: Iterable[RegisterSpec], max_block: int = MAX_READ, max_gap: int = 10
) -> list[Block]:
    ordered = sorted(specs, key=lambda s: (FUNCTIONS[s.function], s.address))
    blocks: list[Block] = []
    current: list[RegisterSpec] = []
    fn = start = end = 0
    for spec in ordered:
        spec_fn = FUNCTIONS[spec.function]
        spec_end = spec.address + spec.words
        if spec.words > max_block:
            raise ValueError(f"{spec.obis} needs {spec.words} registers, block limit {max_block}")
        fits = (current and spec_fn == fn and spec.address - end <= max_gap
                and max(end, spec_end) - start <= max_block)
        if fits:
            current.append(spec)
            end = max(end, spec_end)
            continue
        if current:
            blocks.append(Block(fn, start, end - start, tuple(current)))
        current, fn, start, end = [spec], spec_fn, spec.address, spec_end
    if current:
        blocks.append(Block(fn, start, end - start, tuple(current)))
    return blocks
