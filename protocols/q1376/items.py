"""Data units: slicing a frame's body into (pn, Fn, bytes) and decoding each.

The body is a run of units, each `DA DT` then the data for every pn × Fn it names, so
the length of every function's data must be known to find the next unit. The table here
holds the functions a head-end sends and reads, both directions; a unit of any other
function ends the walk with `UnsupportedUnit`, naming it, rather than guessing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from protocols.q1376 import formats as fm
from protocols.q1376 import frame as fr
from protocols.q1376 import points, units
from protocols.q1376.events import EventPage
from protocols.q1376.frame import FrameError
from protocols.q1376.values import (
    Curve,
    Frozen,
    Present,
    QuadrantRegisters,
    Registers,
)

# Function numbers a head-end uses, by AFN.
F_ALL_OK, F_ALL_DENIED, F_ITEMISED = 1, 2, 3
F_LOGIN, F_LOGOUT, F_HEARTBEAT = 1, 2, 3
F_POINT_TABLE = 10
F_TRIP, F_ALLOW_CLOSE, F_TIME_SYNC = 1, 2, 31
F_CLOCK, F_PRESENT = 2, 25
F_QUADRANTS_FORWARD, F_QUADRANTS_REVERSE = 33, 34
F_FORWARD, F_FORWARD_REACTIVE, F_REVERSE, F_REVERSE_REACTIVE = 129, 130, 131, 132
F_DAILY_FORWARD, F_DAILY_REVERSE = 161, 163
F_MONTHLY_FORWARD, F_MONTHLY_REVERSE = 177, 179
F_VOLTAGE_CURVES = (89, 90, 91)
F_CURRENT_CURVES = (92, 93, 94)
F_CURVE_FORWARD, F_CURVE_REVERSE = 101, 103
F_IMPORTANT_EVENTS, F_NORMAL_EVENTS = 1, 2

DAILY = (F_DAILY_FORWARD, F_DAILY_REVERSE)
MONTHLY = (F_MONTHLY_FORWARD, F_MONTHLY_REVERSE)
CURVES: dict[int, fm.Number] = {
    F_CURVE_FORWARD: fm.A11, F_CURVE_REVERSE: fm.A11,
    **{f: fm.A7 for f in F_VOLTAGE_CURVES}, **{f: fm.A25 for f in F_CURRENT_CURVES},
}


class UnsupportedUnit(FrameError):
    """A data unit of a function this codec has no layout for."""


@dataclass(frozen=True, slots=True)
class Unit:
    pn: int
    fn: int
    data: bytes = b""


Length = Callable[[bytes], int]


def _fixed(n: int) -> Length:
    return lambda raw: n


def _curve_length(fmt: fm.Number) -> Length:
    return lambda raw: Curve.length(raw, fmt)


def _rest(raw: bytes) -> int:
    return len(raw)


_DOWN: dict[tuple[int, int], Length] = {
    **{(fr.AFN_LINK, f): _fixed(0) for f in (F_LOGIN, F_LOGOUT, F_HEARTBEAT)},
    **{(fr.AFN_CONFIRM, f): _fixed(0) for f in (F_ALL_OK, F_ALL_DENIED)},
    (fr.AFN_CONFIRM, F_ITEMISED): _rest,
    (fr.AFN_QUERY, F_POINT_TABLE): points.query_length,
    (fr.AFN_CONTROL, F_TRIP): _fixed(1),
    (fr.AFN_CONTROL, F_ALLOW_CLOSE): _fixed(0),
    (fr.AFN_CONTROL, F_TIME_SYNC): _fixed(6),
    **{(fr.AFN_CLASS1, f): _fixed(0) for f in (
        F_CLOCK, F_PRESENT, F_QUADRANTS_FORWARD, F_QUADRANTS_REVERSE, F_FORWARD,
        F_FORWARD_REACTIVE, F_REVERSE, F_REVERSE_REACTIVE)},
    **{(fr.AFN_CLASS2, f): _fixed(3) for f in DAILY},
    **{(fr.AFN_CLASS2, f): _fixed(2) for f in MONTHLY},
    **{(fr.AFN_CLASS2, f): _fixed(7) for f in CURVES},
    **{(fr.AFN_CLASS3, f): _fixed(2) for f in (F_IMPORTANT_EVENTS, F_NORMAL_EVENTS)},
}

_UP: dict[tuple[int, int], Length] = {
    **{(fr.AFN_LINK, f): _fixed(0) for f in (F_LOGIN, F_LOGOUT, F_HEARTBEAT)},
    **{(fr.AFN_CONFIRM, f): _fixed(0) for f in (F_ALL_OK, F_ALL_DENIED)},
    (fr.AFN_CONFIRM, F_ITEMISED): _rest,
    (fr.AFN_QUERY, F_POINT_TABLE): points.table_length,
    (fr.AFN_CLASS1, F_CLOCK): _fixed(6),
    (fr.AFN_CLASS1, F_PRESENT): _fixed(Present.LENGTH),
    (fr.AFN_CLASS1, F_QUADRANTS_FORWARD): QuadrantRegisters.length,
    (fr.AFN_CLASS1, F_QUADRANTS_REVERSE): QuadrantRegisters.length,
    (fr.AFN_CLASS1, F_FORWARD): Registers.length,
    (fr.AFN_CLASS1, F_REVERSE): Registers.length,
    (fr.AFN_CLASS1, F_FORWARD_REACTIVE): lambda raw: Registers.length(raw, fm.A11),
    (fr.AFN_CLASS1, F_REVERSE_REACTIVE): lambda raw: Registers.length(raw, fm.A11),
    **{(fr.AFN_CLASS2, f): (lambda raw: Frozen.length(raw, False)) for f in DAILY},
    **{(fr.AFN_CLASS2, f): (lambda raw: Frozen.length(raw, True)) for f in MONTHLY},
    **{(fr.AFN_CLASS2, f): _curve_length(fmt) for f, fmt in CURVES.items()},
    **{(fr.AFN_CLASS3, f): EventPage.length for f in (F_IMPORTANT_EVENTS, F_NORMAL_EVENTS)},
}


def split_units(frame: fr.Frame) -> list[Unit]:
    """Every (pn, Fn, data) of the frame's body, in order."""
    table = _UP if frame.is_uplink else _DOWN
    body = frame.body
    out: list[Unit] = []
    at = 0
    while at < len(body):
        if len(body) - at < 4:
            raise FrameError(f"{len(body) - at} stray bytes after the last data unit",
                             raw=bytes(body[at:]))
        pairs = units.pairs(body[at:at + 4])
        at += 4
        for pn, fn in pairs:
            length = table.get((frame.afn, fn))
            if length is None:
                raise UnsupportedUnit(f"AFN {frame.afn:02X} F{fn} has no known layout "
                                      f"({'up' if frame.is_uplink else 'down'}link)")
            n = length(body[at:])
            if n > len(body) - at:
                raise FrameError(f"AFN {frame.afn:02X} F{fn} p{pn} needs {n} bytes, "
                                 f"{len(body) - at} remain", raw=bytes(body[at:]))
            out.append(Unit(pn, fn, bytes(body[at:at + n])))
            at += n
    return out


def join_units(items: Iterable[Unit]) -> bytes:
    """A body of one DA/DT per unit (the simplest form every terminal accepts)."""
    return b"".join(units.unit_id([u.pn], [u.fn]) + u.data for u in items)


def decode_value(afn: int, unit: Unit) -> Any:
    """The typed value of an uplink unit: Registers, Frozen, Curve, Present, datetime…"""
    fn, raw = unit.fn, unit.data
    if afn == fr.AFN_CLASS1:
        if fn == F_CLOCK:
            return fm.decode_a1(raw)
        if fn == F_PRESENT:
            return Present.decode(raw)
        if fn in (F_QUADRANTS_FORWARD, F_QUADRANTS_REVERSE):
            return QuadrantRegisters.decode(raw)
        if fn in (F_FORWARD, F_REVERSE):
            return Registers.decode(raw)
        if fn in (F_FORWARD_REACTIVE, F_REVERSE_REACTIVE):
            return Registers.decode(raw, fm.A11)
    if afn == fr.AFN_CLASS2:
        if fn in DAILY:
            return Frozen.decode(raw, False)
        if fn in MONTHLY:
            return Frozen.decode(raw, True)
        if fn in CURVES:
            return Curve.decode(raw, CURVES[fn])
    if afn == fr.AFN_CLASS3 and fn in (F_IMPORTANT_EVENTS, F_NORMAL_EVENTS):
        return EventPage.decode(raw)
    if afn == fr.AFN_QUERY and fn == F_POINT_TABLE:
        return points.decode_table(raw)
    if afn == fr.AFN_CONFIRM and fn == F_ITEMISED:
        return decode_itemised(raw)
    if afn in (fr.AFN_CONFIRM, fr.AFN_LINK):
        return None
    raise UnsupportedUnit(f"AFN {afn:02X} F{fn} has no decoder")


@dataclass(frozen=True, slots=True)
class ItemVerdict:
    pn: int
    fn: int
    ok: bool


def decode_itemised(raw: bytes) -> tuple[int, tuple[ItemVerdict, ...]]:
    """AFN 00 F3: the AFN confirmed, then `DA DT ERR` per item (ERR 0 = correct)."""
    if not raw or (len(raw) - 1) % 5:
        raise FrameError(f"itemised confirm of {len(raw)} bytes is not AFN + n × 5",
                         raw=bytes(raw))
    out = []
    for at in range(1, len(raw), 5):
        for pn, fn in units.pairs(raw[at:at + 4]):
            out.append(ItemVerdict(pn, fn, raw[at + 4] == 0))
    return raw[0], tuple(out)


def encode_itemised(afn: int, verdicts: Iterable[ItemVerdict]) -> bytes:
    return bytes([afn]) + b"".join(units.unit_id([v.pn], [v.fn]) + bytes([0 if v.ok else 1])
                                   for v in verdicts)


def time_tag(pfc: int, sent: datetime, delay_min: int = 0) -> bytes:
    """Tp: PFC, the send time (s m h d) and the allowed transmission delay in minutes."""
    return bytes([pfc & 0xFF]) + fm.encode_a1(sent)[:4] + bytes([delay_min & 0xFF])


def request(address: fr.Address, afn: int, pseq: int, items: Iterable[Unit], *,
            pw: bytes | None = None, tp: bytes | None = None, con: bool = False) -> bytes:
    """A master-station request frame."""
    functions = {
        # As deployed master stations send them (and the captured one): data requests
        # are "request class 2" on the link; events, the link's class 1, are requested so.
        fr.AFN_CLASS1: fr.FN_REQUEST_CLASS2, fr.AFN_CLASS2: fr.FN_REQUEST_CLASS2,
        fr.AFN_CLASS3: fr.FN_REQUEST_CLASS1, fr.AFN_QUERY: fr.FN_REQUEST_CLASS2,
        fr.AFN_LINK: fr.FN_LINK_TEST, fr.AFN_CONFIRM: fr.FN_CONFIRM,
    }
    function = functions.get(afn, fr.FN_USER_DATA)
    prm = afn != fr.AFN_CONFIRM
    c = fr.control(up=False, prm=prm, function=function)
    seq = fr.seq_field(pseq, con=con or afn == fr.AFN_CONTROL, tpv=tp is not None)
    return fr.encode(fr.Frame(c, address, afn, seq, join_units(items), pw=pw, tp=tp))


def reply(address: fr.Address, afn: int, rseq: int, items: Iterable[Unit], *,
          first: bool = True, last: bool = True, prm: bool = False, con: bool = False,
          ec: tuple[int, int] | None = None, tp: bytes | None = None) -> bytes:
    """A terminal's frame: a reply (PRM 0), or with `prm` a login, heartbeat or report."""
    if prm:
        function = fr.FN_LINK_TEST if afn == fr.AFN_LINK else fr.FN_USER_DATA
    else:
        function = fr.FN_CONFIRM if afn == fr.AFN_CONFIRM else fr.FN_RESPONSE
    c = fr.control(up=True, prm=prm, function=function, fcb_acd=ec is not None)
    seq = fr.seq_field(rseq, first=first, last=last, con=con, tpv=tp is not None)
    return fr.encode(fr.Frame(c, address, afn, seq, join_units(items), ec=ec, tp=tp))


def confirm(address: fr.Address, rseq: int, ok: bool = True, *, up: bool = False) -> bytes:
    """AFN 00 F1 (all confirmed) or F2 (all denied), from either side."""
    fn = F_ALL_OK if ok else F_ALL_DENIED
    c = fr.control(up=up, prm=False, function=fr.FN_CONFIRM)
    return fr.encode(fr.Frame(c, address, fr.AFN_CONFIRM, fr.seq_field(rseq),
                              join_units([Unit(0, fn)])))
