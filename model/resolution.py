"""How many decimals a value carries, and how to show it with exactly those.

A technician copying a register, or a billing dispute, needs the digits the meter gave:
`001234.567` is 1,234.567, not 1,234.57. Stored values are floats and keep their digits;
what a view rounds away is lost to the person reading it. So every protocol says the
resolution it read a value at (a DL/T 645 format's decimals, the digits of an IEC
62056-21 data set, a Modbus register's scale), and a view of stored values shows the
fewest decimals that still show every value of the series as stored.
"""

from __future__ import annotations

from collections.abc import Iterable

MOST_DECIMALS = 6
"""Past this a float's trailing digits are arithmetic noise (0.1 + 0.2), not a meter's."""


def decimals_of(text: str) -> int | None:
    """The decimals written in a number as a meter sent it; None when it is no number."""
    number = text.strip()
    try:
        float(number)
    except ValueError:
        return None
    mantissa = number.lower().partition("e")[0]
    return len(mantissa.partition(".")[2])


def decimals_in(values: Iterable[float | None]) -> int:
    """The fewest decimals (up to MOST_DECIMALS) that show each of the values as stored."""
    most = 0
    for value in values:
        if value is None or value != value:  # null or NaN: nothing to show
            continue
        text = f"{value:.{MOST_DECIMALS}f}".rstrip("0")
        most = max(most, len(text.partition(".")[2]))
        if most == MOST_DECIMALS:
            break
    return most


def at_resolution(value: float, decimals: int, *, grouped: bool = True) -> str:
    """The value with exactly `decimals` decimals, thousands grouped unless told not to."""
    return f"{value:,.{decimals}f}" if grouped else f"{value:.{decimals}f}"
