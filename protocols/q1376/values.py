"""The typed values a head-end reads: energy registers, instants, freezes and curves.

Each has `decode(raw)` for one data unit's bytes and `encode()` for the simulator and
the tests. Lengths that depend on content (the tariff count M, a curve's point count)
are worked out from the first bytes, so a unit can be sliced out of a frame before it is
decoded (`items.unit_length`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from protocols.q1376 import formats as fm
from protocols.q1376.frame import FrameError

DENSITY_MINUTES = {1: 15, 2: 30, 3: 60, 254: 5, 255: 1}
"""A curve's density code → minutes between points (0: the terminal does not freeze)."""
DENSITY_CODES = {minutes: code for code, minutes in DENSITY_MINUTES.items()}
MAX_TARIFFS = 14


def _need(raw: bytes, n: int, what: str) -> None:
    if len(raw) < n:
        raise FrameError(f"{what} needs {n} bytes, got {len(raw)}", raw=bytes(raw))


def tariffs_at(raw: bytes, at: int, what: str) -> int:
    _need(raw, at + 1, what)
    m = raw[at]
    if m == fm.FILL:
        return 0
    if m > MAX_TARIFFS:
        raise FrameError(f"{what}: tariff count {m} exceeds {MAX_TARIFFS}", raw=bytes(raw))
    return m


@dataclass(frozen=True, slots=True)
class Registers:
    """Energy registers, total then tariffs 1..M, as the meter showed them at `read_at`
    (F129/F131 in A.14; F130/F132 in A.11). None: the terminal had no value."""

    read_at: datetime | None
    values: tuple[float | None, ...]
    fmt: fm.Number = fm.A14

    @property
    def total(self) -> float | None:
        return self.values[0] if self.values else None

    @staticmethod
    def length(raw: bytes, fmt: fm.Number = fm.A14, head: int = 0) -> int:
        m = tariffs_at(raw, head + 5, "energy registers")
        return head + 6 + fmt.width * (m + 1)

    @classmethod
    def decode(cls, raw: bytes, fmt: fm.Number = fm.A14) -> Registers:
        _need(raw, 6, "energy registers")
        m = tariffs_at(raw, 5, "energy registers")
        _need(raw, 6 + fmt.width * (m + 1), "energy registers")
        values = fmt.decode_run(raw, 6, m + 1)
        return cls(fm.decode_a15(raw[:5]), values, fmt)

    def encode(self) -> bytes:
        return (fm.encode_a15(self.read_at) + bytes([len(self.values) - 1])
                + b"".join(self.fmt.encode(v) for v in self.values))


@dataclass(frozen=True, slots=True)
class QuadrantRegisters:
    """F33/F34: active (A.14), reactive and two quadrants' reactive (A.11), per tariff."""

    read_at: datetime | None
    active: tuple[float | None, ...]
    reactive: tuple[float | None, ...]
    quadrant_a: tuple[float | None, ...]
    quadrant_b: tuple[float | None, ...]

    @staticmethod
    def length(raw: bytes) -> int:
        m = tariffs_at(raw, 5, "F33/F34 registers")
        return 6 + (m + 1) * (5 + 4 * 3)

    @classmethod
    def decode(cls, raw: bytes) -> QuadrantRegisters:
        _need(raw, QuadrantRegisters.length(raw), "F33/F34 registers")
        n = tariffs_at(raw, 5, "F33/F34 registers") + 1
        at = 6
        active = fm.A14.decode_run(raw, at, n)
        at += 5 * n
        blocks = []
        for _ in range(3):
            blocks.append(fm.A11.decode_run(raw, at, n))
            at += 4 * n
        return cls(fm.decode_a15(raw[:5]), active, blocks[0], blocks[1], blocks[2])

    def encode(self) -> bytes:
        out = fm.encode_a15(self.read_at) + bytes([len(self.active) - 1])
        out += b"".join(fm.A14.encode(v) for v in self.active)
        for block in (self.reactive, self.quadrant_a, self.quadrant_b):
            out += b"".join(fm.A11.encode(v) for v in block)
        return out


@dataclass(frozen=True, slots=True)
class Frozen:
    """A daily (F161/F163, Td_d) or monthly (F177/F179, Td_m) freeze of the registers."""

    period: date
    registers: Registers
    monthly: bool = False

    @staticmethod
    def length(raw: bytes, monthly: bool) -> int:
        head = 2 if monthly else 3
        return Registers.length(raw, fm.A14, head)

    @classmethod
    def decode(cls, raw: bytes, monthly: bool) -> Frozen:
        head = 2 if monthly else 3
        _need(raw, head, "freeze date")
        period = fm.decode_a21(raw[:2]) if monthly else fm.decode_a20(raw[:3])
        if period is None:
            raise FrameError("a freeze without its date", raw=bytes(raw))
        return cls(period, Registers.decode(raw[head:], fm.A14), monthly)

    def encode(self) -> bytes:
        head = fm.encode_a21(self.period) if self.monthly else fm.encode_a20(self.period)
        return head + self.registers.encode()


@dataclass(frozen=True, slots=True)
class CurveRequest:
    """Td_c: the first point's time, the density and how many points."""

    start: datetime
    minutes: int
    points: int

    @classmethod
    def decode(cls, raw: bytes) -> CurveRequest:
        _need(raw, 7, "curve time (Td_c)")
        start = fm.decode_a15(raw[:5])
        if start is None:
            raise FrameError("a curve request without its start time", raw=bytes(raw))
        minutes = DENSITY_MINUTES.get(raw[5])
        if minutes is None:
            raise FrameError(f"curve density code {raw[5]} is not one of "
                             f"{sorted(DENSITY_MINUTES)}", raw=bytes(raw))
        return cls(start, minutes, raw[6])

    def encode(self) -> bytes:
        if self.minutes not in DENSITY_CODES:
            raise FrameError(f"no density code for {self.minutes} minutes")
        if not 0 <= self.points <= 255:
            raise FrameError(f"{self.points} points do not fit one curve unit")
        return fm.encode_a15(self.start) + bytes([DENSITY_CODES[self.minutes], self.points])

    def times(self) -> list[datetime]:
        step = timedelta(minutes=self.minutes)
        return [self.start + i * step for i in range(self.points)]


@dataclass(frozen=True, slots=True)
class Curve:
    """A curve's points, one per `minutes` from `start`; None where the terminal has none."""

    request: CurveRequest
    values: tuple[float | None, ...]
    fmt: fm.Number

    @staticmethod
    def length(raw: bytes, fmt: fm.Number) -> int:
        _need(raw, 7, "curve")
        return 7 + raw[6] * fmt.width

    @classmethod
    def decode(cls, raw: bytes, fmt: fm.Number) -> Curve:
        request = CurveRequest.decode(raw)
        _need(raw, 7 + request.points * fmt.width, "curve points")
        values = fmt.decode_run(raw, 7, request.points)
        return cls(request, values, fmt)

    def encode(self) -> bytes:
        return self.request.encode() + b"".join(self.fmt.encode(v) for v in self.values)

    def points(self) -> list[tuple[datetime, float | None]]:
        return list(zip(self.request.times(), self.values, strict=True))


@dataclass(frozen=True, slots=True)
class Present:
    """F25: present power, power factor, voltage and current, per phase (A, B, C)."""

    read_at: datetime | None
    active_kw: tuple[float | None, float | None, float | None, float | None]
    reactive_kvar: tuple[float | None, float | None, float | None, float | None]
    power_factor: tuple[float | None, float | None, float | None, float | None]
    """In percent, as A.5 carries it."""
    voltage: tuple[float | None, float | None, float | None]
    current: tuple[float | None, float | None, float | None]
    neutral_current: float | None
    apparent_kva: tuple[float | None, float | None, float | None, float | None]

    LENGTH = 5 + 12 + 12 + 8 + 6 + 9 + 3 + 12

    @classmethod
    def decode(cls, raw: bytes) -> Present:
        _need(raw, cls.LENGTH, "F25 present values")
        at = 5

        def take(fmt: fm.Number, n: int) -> tuple[float | None, ...]:
            nonlocal at
            out = fmt.decode_run(raw, at, n)
            at += fmt.width * n
            return out

        p, q, pf = take(fm.A9, 4), take(fm.A9, 4), take(fm.A5, 4)
        u, i, i0, s = take(fm.A7, 3), take(fm.A25, 3), take(fm.A25, 1), take(fm.A9, 4)
        return cls(fm.decode_a15(raw[:5]), p, q, pf, u, i, i0[0], s)  # type: ignore[arg-type]

    def encode(self) -> bytes:
        out = fm.encode_a15(self.read_at)
        for fmt, group in ((fm.A9, self.active_kw), (fm.A9, self.reactive_kvar),
                           (fm.A5, self.power_factor), (fm.A7, self.voltage),
                           (fm.A25, self.current), (fm.A25, (self.neutral_current,)),
                           (fm.A9, self.apparent_kva)):
            out += b"".join(fmt.encode(v) for v in group)
        return out
