"""The standard's appendix A data formats: BCD, least significant byte first.

Every byte 0xEE means "no data" (the terminal could not read the meter). Such a field
decodes to None, never to a number: a missed read stored as 0 kWh would bill a customer
for nothing and hide the fault. A field only partly filled with EE is corrupt, and so is
a nibble above 9. Times are the terminal's local wall time, naive here; the front end
knows the terminal's time zone and makes them UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from protocols import bcd
from protocols.q1376.frame import FrameError

FILL = 0xEE


@dataclass(frozen=True, slots=True)
class Number:
    """A numeric format: its byte width, decimals, and whether D7 of the top byte is a sign."""

    name: str
    width: int
    decimals: int
    signed: bool = False

    def decode(self, raw: bytes) -> float | None:
        if len(raw) != self.width:
            raise FrameError(f"{self.name} needs {self.width} bytes, got {len(raw)}",
                             raw=bytes(raw))
        return self.decode_run(raw, 0, 1)[0]

    def decode_run(self, raw: bytes, at: int, count: int) -> tuple[float | None, ...]:
        """`count` values of this format side by side from `at`: a curve's 96 points,
        a register's tariffs. One length check for the run, not one per value."""
        width, end = self.width, at + count * self.width
        if len(raw) < end:
            raise FrameError(f"{count} × {self.name} need {end - at} bytes, got "
                             f"{max(0, len(raw) - at)}", raw=bytes(raw))
        out: list[float | None] = []
        for start in range(at, end, width):
            chunk = raw[start:start + width]
            if FILL in chunk:
                out.append(None)
                continue
            try:
                out.append(bcd.decode(chunk, self.decimals, self.signed))
            except bcd.BcdError as exc:
                raise FrameError(f"{self.name} {exc}", raw=bytes(chunk)) from None
        return tuple(out)

    def encode(self, value: float | None) -> bytes:
        if value is None:
            return bytes([FILL]) * self.width
        if value < 0 and not self.signed:
            raise FrameError(f"{value} does not fit {self.name}")
        try:
            return bcd.encode(value, self.width, self.decimals, self.signed)
        except bcd.BcdError:
            raise FrameError(f"{value} does not fit {self.name}") from None


A5 = Number("A.5 (±xxx.x)", 2, 1, signed=True)
A7 = Number("A.7 voltage (xxx.x V)", 2, 1)
A9 = Number("A.9 power (±xx.xxxx kW)", 3, 4, signed=True)
A11 = Number("A.11 energy (xxxxxx.xx kWh)", 4, 2)
A13 = Number("A.13 energy (xxxx.xxxx kWh)", 4, 4)
A14 = Number("A.14 energy (xxxxxx.xxxx kWh)", 5, 4)
A23 = Number("A.23 demand (xx.xxxx kW)", 3, 4)
A25 = Number("A.25 current (±xxx.xxx A)", 3, 3, signed=True)


def is_fill(raw: bytes) -> bool:
    """Any 0xEE byte: no data.

    Real terminals send fields only partly filled (`00 EE EE EE EE` seen in a capture):
    that is not a reading either, so it is no data too, never a number."""
    return FILL in raw


def _bcd(b: int, what: str, raw: bytes) -> int:
    hi, lo = b >> 4, b & 0x0F
    if hi > 9 or lo > 9:
        raise FrameError(f"{what} byte {b:02X} is not BCD", raw=bytes(raw))
    return hi * 10 + lo


def _to_bcd(n: int) -> int:
    return (n // 10) << 4 | n % 10


def _datetime(what: str, raw: bytes, year: int, month: int, day: int, hour: int = 0,
              minute: int = 0, second: int = 0) -> datetime:
    try:
        return datetime(2000 + year, month, day, hour, minute, second)
    except ValueError as exc:
        raise FrameError(f"{what} {raw.hex(' ')} is not a valid time: {exc}",
                         raw=bytes(raw)) from None


def decode_a1(raw: bytes) -> datetime | None:
    """A.1: s m h D (week<<5 | month) Y, the terminal clock."""
    if len(raw) != 6:
        raise FrameError(f"A.1 needs 6 bytes, got {len(raw)}", raw=bytes(raw))
    if is_fill(raw):
        return None
    s, m, h, d = (_bcd(b, "A.1", raw) for b in raw[:4])
    month = _bcd(raw[4] & 0x1F, "A.1 month", raw)
    y = _bcd(raw[5], "A.1 year", raw)
    return _datetime("A.1", raw, y, month, d, h, m, s)


def encode_a1(t: datetime) -> bytes:
    week = t.isoweekday()  # 1 = Monday … 7 = Sunday, as the standard counts
    return bytes([_to_bcd(t.second), _to_bcd(t.minute), _to_bcd(t.hour), _to_bcd(t.day),
                  week << 5 | _to_bcd(t.month), _to_bcd(t.year % 100)])


def decode_a15(raw: bytes) -> datetime | None:
    """A.15 (Tm, a curve's start): minute hour day month year."""
    if len(raw) != 5:
        raise FrameError(f"A.15 needs 5 bytes, got {len(raw)}", raw=bytes(raw))
    if is_fill(raw):
        return None
    mi, h, d, mo, y = (_bcd(b, "A.15", raw) for b in raw)
    return _datetime("A.15", raw, y, mo, d, h, mi)


def encode_a15(t: datetime | None) -> bytes:
    if t is None:
        return bytes([FILL]) * 5
    return bytes(_to_bcd(v) for v in (t.minute, t.hour, t.day, t.month, t.year % 100))


def decode_a20(raw: bytes) -> date | None:
    """A.20 (Td_d, a daily freeze's date): day month year."""
    if len(raw) != 3:
        raise FrameError(f"A.20 needs 3 bytes, got {len(raw)}", raw=bytes(raw))
    if is_fill(raw):
        return None
    d, mo, y = (_bcd(b, "A.20", raw) for b in raw)
    return _datetime("A.20", raw, y, mo, d).date()


def encode_a20(d: date) -> bytes:
    return bytes(_to_bcd(v) for v in (d.day, d.month, d.year % 100))


def decode_a21(raw: bytes) -> date | None:
    """A.21 (Td_m, a monthly freeze's month): month year; the 1st stands for the month."""
    if len(raw) != 2:
        raise FrameError(f"A.21 needs 2 bytes, got {len(raw)}", raw=bytes(raw))
    if is_fill(raw):
        return None
    mo, y = (_bcd(b, "A.21", raw) for b in raw)
    return _datetime("A.21", raw, y, mo, 1).date()


def encode_a21(d: date) -> bytes:
    return bytes(_to_bcd(v) for v in (d.month, d.year % 100))
