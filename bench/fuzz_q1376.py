"""The 1376.1 half of bench/fuzz.py: frames mutated and random, decoded to the last value.

An escape is any exception but FrameError (the codec's one error class). The baseline,
in the same run, is framing alone (`frame.decode`) on the same inputs, so the ratio says
what walking and decoding the data units costs on top.
"""

from __future__ import annotations

import contextlib
import random
import time
from datetime import date, datetime

from bench.fuzz_tally import tally
from protocols.q1376 import events as ev
from protocols.q1376 import formats as fm
from protocols.q1376 import frame as fr
from protocols.q1376 import items, points
from protocols.q1376.values import Curve, CurveRequest, Frozen, Present, Registers

ADDRESS = fr.Address("4101", 1234, 1)
T = datetime(2026, 11, 20, 0, 15)


def corpus() -> list[bytes]:
    """One valid frame of every layout, both directions, with and without AUX fields."""
    regs = Registers(T, (1234.5678, 100.0, None, 34.5, 1100.0))
    present = Present(T, (1.2, 0.4, 0.4, 0.4), (0.1, None, 0.0, 0.1), (99.0, 98.0, 97.0, 96.0),
                      (230.1, 229.0, None), (5.1, -0.2, 1.0), 0.1, (1.3, 0.5, 0.4, 0.4))
    curve = Curve(CurveRequest(T, 15, 8), (1.0, 1.25, None, 1.5, 1.75, 2.0, 2.0, 2.5), fm.A11)
    page = ev.EventPage(2, 1, 0, 2, (ev.power_record(T, T),
                                     ev.point_record(ev.ERC_METER_FAULT, T, 3, extra=b"\x02")))
    table = [points.PointEntry(i, i, 2, 2400, 30, f"{i:012d}") for i in range(1, 4)]
    ups = [
        (fr.AFN_CLASS1, [items.Unit(1, items.F_FORWARD, regs.encode()),
                         items.Unit(2, items.F_REVERSE, regs.encode())]),
        (fr.AFN_CLASS1, [items.Unit(1, items.F_PRESENT, present.encode())]),
        (fr.AFN_CLASS1, [items.Unit(0, items.F_CLOCK, fm.encode_a1(T))]),
        (fr.AFN_CLASS2, [items.Unit(1, items.F_DAILY_FORWARD,
                                    Frozen(date(2026, 11, 19), regs).encode())]),
        (fr.AFN_CLASS2, [items.Unit(1, items.F_MONTHLY_FORWARD,
                                    Frozen(date(2026, 10, 1), regs, True).encode())]),
        (fr.AFN_CLASS2, [items.Unit(1, items.F_CURVE_FORWARD, curve.encode())]),
        (fr.AFN_CLASS3, [items.Unit(0, items.F_IMPORTANT_EVENTS, page.encode())]),
        (fr.AFN_QUERY, [items.Unit(0, items.F_POINT_TABLE, points.encode_table(table))]),
        (fr.AFN_LINK, [items.Unit(0, items.F_LOGIN)]),
        (fr.AFN_CONFIRM, [items.Unit(0, items.F_ITEMISED, items.encode_itemised(
            fr.AFN_CONTROL, [items.ItemVerdict(1, 1, True), items.ItemVerdict(2, 1, False)]))]),
    ]
    out = []
    for i, (afn, units) in enumerate(ups):
        out.append(items.reply(ADDRESS, afn, i, units, ec=(1, 2) if i % 2 else None,
                               tp=items.time_tag(i, T) if i % 3 == 0 else None))
    out.append(items.request(ADDRESS, fr.AFN_CLASS2, 1, [items.Unit(
        1, items.F_CURVE_FORWARD, CurveRequest(T, 15, 96).encode())]))
    out.append(items.request(ADDRESS, fr.AFN_CONTROL, 2, [items.Unit(
        0, items.F_TIME_SYNC, fm.encode_a1(T))], pw=bytes(16)))
    return out


def inputs(n: int, rng: random.Random) -> list[bytes]:
    valid = corpus()
    out = []
    for i in range(n):
        base = rng.choice(valid)
        if i % 2 == 0:
            # A plausible header (so the body is reached) over random bytes, its CS fixed.
            body = bytearray(base[6:-2])
            body[8:] = rng.randbytes(rng.randint(0, 80))
            out.append(_framed(bytes(body)))
            continue
        data = bytearray(base)
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(data))
            kind = rng.random()
            if kind < 0.5:
                data[at] = rng.choice((0xEE, 0x00, 0xFF, 0x99, rng.randrange(256)))
            elif kind < 0.7:
                del data[at:at + rng.randint(1, 6)]
            else:
                data[at:at] = rng.randbytes(rng.randint(1, 6))
        if rng.random() < 0.8 and len(data) > 8:
            out.append(_framed(bytes(data[6:-2])))  # keep the length and CS right
        else:
            out.append(bytes(data))
    return out


def _framed(user: bytes) -> bytes:
    ln = ((len(user) << 2) | fr.PROTOCOL_ID).to_bytes(2, "little")
    return b"\x68" + ln + ln + b"\x68" + user + bytes([sum(user) & 0xFF, 0x16])


def decode_all(raw: bytes) -> int:
    frame = fr.decode(raw)
    n = 0
    for unit in items.split_units(frame):
        if frame.is_uplink:
            items.decode_value(frame.afn, unit)
        n += 1
    return n


def run(n: int, rng: random.Random) -> None:
    data = inputs(n, rng)
    started = time.perf_counter()
    for item in data:
        with contextlib.suppress(fr.FrameError):
            fr.decode(item)
    baseline = time.perf_counter() - started

    found = tally(data, decode_all, fr.FrameError, keep=120)
    outcomes, escapes, elapsed = found.outcomes, found.escapes, found.elapsed
    print(f"{len(data):,} frames: {outcomes['decoded']:,} decoded to their values, "
          f"{outcomes['refused']:,} refused with FrameError, "
          f"{outcomes['escaped']} escaped (goal 0)")
    print(f"decode + units + values: {len(data) / elapsed:,.0f} frames/s; framing alone "
          f"{len(data) / baseline:,.0f} frames/s; ratio {baseline / elapsed:.2f}")
    for item, trace in escapes:
        print(f"escape on {item.hex()}:\n{trace}")
