"""DA and DT: which measuring points (pn) and which functions (Fn) a data unit names.

DA is a bit mask over eight points of one group (DA2 is the group, counted from 1;
DA1 = DA2 = 0 is p0, the terminal itself). DT is a bit mask over eight functions of
one group (DT2 counted from 0). A unit names every pn × Fn pair of its masks, and its
data repeats in that order, point by point, function by function.
"""

from __future__ import annotations

from collections.abc import Iterable

from protocols.q1376.frame import FrameError

MAX_PN = 2040
MAX_FN = 248


def encode_da(points: Iterable[int]) -> bytes:
    """One DA for points that share a group (or p0 alone)."""
    pns = sorted(set(points))
    if pns == [0]:
        return b"\x00\x00"
    if not pns or pns[0] < 1 or pns[-1] > MAX_PN:
        raise FrameError(f"points {pns} must be p0 alone or within 1–{MAX_PN}")
    group = (pns[0] - 1) // 8
    if (pns[-1] - 1) // 8 != group:
        raise FrameError(f"points {pns} span more than one DA group")
    mask = 0
    for pn in pns:
        mask |= 1 << ((pn - 1) % 8)
    return bytes([mask, group + 1])


def decode_da(raw: bytes) -> tuple[int, ...]:
    mask, group = raw[0], raw[1]
    if mask == 0 and group == 0:
        return (0,)
    if mask == 0 or group == 0:
        raise FrameError(f"DA {raw.hex()} names no point", raw=bytes(raw))
    return tuple((group - 1) * 8 + bit + 1 for bit in range(8) if mask >> bit & 1)


def encode_dt(functions: Iterable[int]) -> bytes:
    fns = sorted(set(functions))
    if not fns or fns[0] < 1 or fns[-1] > MAX_FN:
        raise FrameError(f"functions {fns} must be within F1–F{MAX_FN}")
    group = (fns[0] - 1) // 8
    if (fns[-1] - 1) // 8 != group:
        raise FrameError(f"functions {fns} span more than one DT group")
    mask = 0
    for fn in fns:
        mask |= 1 << ((fn - 1) % 8)
    return bytes([mask, group])


def decode_dt(raw: bytes) -> tuple[int, ...]:
    mask, group = raw[0], raw[1]
    if mask == 0:
        raise FrameError(f"DT {raw.hex()} names no function", raw=bytes(raw))
    if group > (MAX_FN - 1) // 8:
        raise FrameError(f"DT group {group} is beyond F{MAX_FN}", raw=bytes(raw))
    return tuple(group * 8 + bit + 1 for bit in range(8) if mask >> bit & 1)


def unit_id(pns: Iterable[int], fns: Iterable[int]) -> bytes:
    return encode_da(pns) + encode_dt(fns)


def pairs(raw: bytes) -> list[tuple[int, int]]:
    """The (pn, Fn) pairs of one 4-byte DA+DT, in the order their data follows."""
    return [(pn, fn) for pn in decode_da(raw[:2]) for fn in decode_dt(raw[2:4])]
