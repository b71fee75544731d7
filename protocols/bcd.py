"""Packed BCD numbers, low byte first, with an optional sign in the top bit.

DL/T 645 and Q/GDW 1376.1 both carry numbers so; each protocol wraps these with its own
error class, its own byte widths and (1376.1) its 0xEE "no data" fill.
"""

from __future__ import annotations


class BcdError(ValueError):
    """Not packed BCD, or a value too large for its bytes."""


def max_magnitude(size: int, decimals: int, signed: bool) -> float:
    digits = size * 2
    top = 8 * 10 ** (digits - 1) - 1 if signed else 10**digits - 1
    return float(top) / float(10**decimals)


def decode(raw: bytes, decimals: int, signed: bool) -> float:
    # Packed BCD written most significant byte first is its own decimal text in hex,
    # so one C-level hex() and int() replace a loop over the digits: every curve point
    # of every meter passes here.
    msb_first = bytes(raw[::-1])
    negative = False
    if signed and msb_first and msb_first[0] & 0x80:
        negative = True
        msb_first = bytes([msb_first[0] & 0x7F]) + msb_first[1:]
    digits = msb_first.hex()
    if not digits.isdigit():
        if not digits:
            return 0.0
        bad = next(b for b in msb_first if b >> 4 > 9 or b & 0x0F > 9)
        raise BcdError(f"byte {bad:02X}H is not BCD")
    value = float(int(digits)) / 10.0**decimals
    return -value if negative else value


def encode(value: float, size: int, decimals: int, signed: bool) -> bytes:
    magnitude = round(abs(value) * 10**decimals)
    if magnitude > round(max_magnitude(size, decimals, signed) * 10**decimals):
        raise BcdError(f"{value} does not fit {size} BCD bytes")
    digits = f"{magnitude:0{size * 2}d}"
    msb_first = bytearray(int(digits[i : i + 2], 16) for i in range(0, len(digits), 2))
    if signed and value < 0 and magnitude:
        msb_first[0] |= 0x80
    return bytes(reversed(msb_first))
