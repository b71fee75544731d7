"""What a period is for screening (a day or a billing month), and each customer's
history cut at its reference date.

With `--as-of`, a row keeps only the periods that ended before its own date (an
inspection's month cannot leak into its score) and is shifted so its last column is the
last period before it: "the recent quarter" then means the same thing for a customer
inspected in 2016 as for one inspected in 2018.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]


@dataclass(frozen=True)
class Period:
    unit: str
    name: str
    """Plural, as reasons name them: missing_days, missing_months."""
    recent: int
    """The recent window the rules and features compare against what came before."""
    per_month: int
    year: int
    """Periods a year apart (whole weeks for days, so weekdays line up)."""
    week: int | None
    """Days in a week; None for months, where there is no weekly shape."""


DAY = Period("D", "days", recent=30, per_month=30, year=364, week=7)
MONTH = Period("M", "months", recent=3, per_month=1, year=12, week=None)


def period_of(unit: str) -> Period:
    return MONTH if unit == "M" else DAY


def ends(calendar: NDArray[Any], unit: str, ids: list[str], as_of: dict[str, date]) -> I64:
    """Per row, how many calendar periods lie wholly before its reference date (all of
    them where it has none)."""
    out = np.full(len(ids), len(calendar), dtype=np.int64)
    at = [(i, as_of[c]) for i, c in enumerate(ids) if c in as_of]
    if at:
        rows = np.array([i for i, _ in at], dtype=np.int64)
        stamps = np.array([d for _, d in at], dtype=f"datetime64[{unit}]")
        out[rows] = (stamps - calendar[0]).astype(np.int64)
    return np.clip(out, 0, len(calendar))


def align(block: F64, end: I64) -> F64:
    """Each row's periods before its end, right-aligned: column -1 is the last one."""
    width = block.shape[1]
    shift = width - end
    idx = np.arange(width)[None, :] - shift[:, None]
    taken = np.take_along_axis(block, np.clip(idx, 0, width - 1), axis=1)
    out: F64 = np.where(idx >= 0, taken, np.nan)
    return out


def trim(aligned: F64) -> F64:
    """Drop the leading columns no row has a value in (the shift's padding)."""
    present = ~np.isnan(aligned).all(axis=0)
    if not present.any():
        return aligned[:, -1:]
    return aligned[:, int(np.argmax(present)):]


def monthly_levels(block: F64, calendar: NDArray[Any], unit: str,
                   end: I64) -> tuple[F64, I64]:
    """Mean kWh per period in each calendar month, before each row's end, and each row's
    end in months: the common scale peers and seasons are compared on, whatever the file's
    resolution."""
    if unit == "M":
        months = block.copy()
        end_month = end.copy()
    else:
        month = calendar.astype("datetime64[M]")
        ordinal = (month - month[0]).astype(np.int64)
        starts = np.flatnonzero(np.r_[True, ordinal[1:] != ordinal[:-1]])
        cut = np.arange(block.shape[1])[None, :] < end[:, None]
        x = np.where(cut, block, np.nan)
        present = ~np.isnan(x)
        sums = np.add.reduceat(np.where(present, x, 0.0), starts, axis=1)
        counts = np.add.reduceat(present.astype(np.float64), starts, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            months = np.where(counts > 0, sums / counts, np.nan)
        # A month the date falls inside counts, with only its days before the date.
        end_month = np.searchsorted(starts, end, side="left").astype(np.int64)
    mask = np.arange(months.shape[1])[None, :] >= end_month[:, None]
    months[mask] = np.nan
    return months, end_month
