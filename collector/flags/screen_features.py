"""Features of a customer's consumption that an engineer can explain, at any resolution
and length: 26 days, 12 billing months or 3 years.

Each is defined for the data given or is missing (NaN, which the model takes as such),
never a number computed from padding: a weekly shape has no meaning in monthly reads,
a year-on-year correlation none in 26 days. Peer features put each customer beside the
customers of the same category in the same calendar months, which removes the season
both share: a drop against one's own tariff class in the same months is a signal, a
drop every household has in spring is not.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from collector.flags.periods import Period

F64 = NDArray[np.float64]
BASE = (
    "mean_kwh", "std_kwh", "variation", "median_kwh", "peak_to_mean", "zero_periods",
    "missing_periods", "autocorr_1", "autocorr_week", "autocorr_year",
    "last_third_vs_first", "recent_vs_before", "weekend_vs_weekday", "monthly_variation",
    "jumps", "longest_zero_run", "trend", "low_quantile", "high_quantile",
    "repeated_values", "level_change", "level_change_age", "last_vs_median", "rule_score",
)
PEER = ("peer_level", "peer_drop", "peer_spread")
RECENT_MONTHS = 3


def peer_names(groups: Sequence[str]) -> list[str]:
    return [f"{p}_{g}" for g in ("all", *groups) for p in PEER]


def base(x: F64, weekday: NDArray[np.int64] | None, rule_score: F64, period: Period) -> F64:
    """customers × periods of kWh (NaN missing, last column the latest) → len(BASE)."""
    n, d = x.shape
    nan = np.full(n, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        present = ~np.isnan(x)
        count = present.sum(axis=1)
        mean = np.nanmean(x, axis=1)
        std = np.nanstd(x, axis=1)
        median = np.nanmedian(x, axis=1)
        filled = np.where(present, x, mean[:, None])
        centred = filled - filled.mean(axis=1, keepdims=True)

        def autocorr(lag: int | None) -> F64:
            if lag is None or d <= lag + 2:
                return nan
            a, b = centred[:, :-lag], centred[:, lag:]
            out: F64 = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
            return out

        third = max(d // 3, 1)
        first, last = np.nanmean(x[:, :third], axis=1), np.nanmean(x[:, -third:], axis=1)
        recent_n = min(period.recent, max(d // 4, 1))
        recent = np.nanmean(x[:, -recent_n:], axis=1)
        before = (np.nanmean(x[:, -4 * recent_n:-recent_n], axis=1) if d > recent_n
                  else nan)
        if weekday is not None and period.week is not None:
            weekend = weekday >= 5
            we_wd = (np.nanmean(x[:, weekend], axis=1) / np.nanmean(x[:, ~weekend], axis=1)
                     if weekend.any() and (~weekend).any() else nan)
        else:
            we_wd = nan
        block = period.per_month
        months = [np.nanmean(x[:, k:k + block], axis=1) for k in range(0, d, block)]
        monthly = (np.nanstd(np.column_stack(months), axis=1) / mean if len(months) > 1
                   else nan)
        diffs = np.abs(np.diff(x, axis=1))
        jumps = np.nanmean(diffs > 3 * std[:, None], axis=1) if d > 1 else nan
        repeats = np.nanmean(np.where(np.isnan(diffs), np.nan, diffs == 0), axis=1) \
            if d > 1 else nan
        zero = present & (x <= 0)
        t = np.arange(d) - (d - 1) / 2
        trend = (centred * t).sum(axis=1) / max(float((t * t).sum()), 1.0) * d / mean
        change, age = _level_change(x)
        columns = [mean, std, std / mean, median, np.nanmax(x, axis=1) / mean,
                   zero.sum(axis=1) / np.maximum(count, 1), 1 - count / d,
                   autocorr(1), autocorr(period.week), autocorr(period.year), last / first,
                   recent / before, we_wd, monthly, jumps, _longest_runs(zero) / d, trend,
                   np.nanquantile(x, 0.1, axis=1) / median,
                   np.nanquantile(x, 0.9, axis=1) / median, repeats, change, age,
                   _last(x) / median, rule_score]
    out = np.column_stack(columns).astype(np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def _last(x: F64) -> F64:
    """Each row's latest present value."""
    present = ~np.isnan(x)
    idx = x.shape[1] - 1 - np.argmax(present[:, ::-1], axis=1)
    out: F64 = np.where(present.any(axis=1), x[np.arange(len(x)), idx], np.nan)
    return out


def _level_change(x: F64) -> tuple[F64, F64]:
    """The largest step in level between the periods before and after a split (as a log
    ratio, signed: negative is a fall), and how far back it lies, as a share of the
    history. A meter bypassed on one day shows a step, not a trend."""
    n, d = x.shape
    best = np.zeros(n)
    where = np.full(n, np.nan)
    if d < 4:
        return np.full(n, np.nan), where
    present = ~np.isnan(x)
    values = np.where(present, x, 0.0)
    csum, ccount = np.cumsum(values, axis=1), np.cumsum(present, axis=1)
    total, tcount = csum[:, -1:], ccount[:, -1:]
    for s in range(2, d - 1):
        a = csum[:, s - 1] / np.maximum(ccount[:, s - 1], 1)
        b = (total[:, 0] - csum[:, s - 1]) / np.maximum(tcount[:, 0] - ccount[:, s - 1], 1)
        r = np.log((b + 1) / (a + 1))
        better = np.abs(r) > np.abs(best)
        best = np.where(better, r, best)
        where = np.where(better, (d - s) / d, where)
    return best, where


def _longest_runs(mask: NDArray[np.bool_]) -> F64:
    best = np.zeros(len(mask))
    run = np.zeros(len(mask))
    for k in range(mask.shape[1]):
        run = np.where(mask[:, k], run + 1, 0)
        best = np.maximum(best, run)
    return best


def peers(months: F64, end_month: NDArray[np.int64], groups: Sequence[F64]) -> F64:
    """Per customer and per grouping (everyone, then each categorical attribute): its
    level against the group's median customer in the same calendar months, the recent
    quarter of that ratio against what came before, and how much the ratio wanders.
    `months` is customers × calendar months of mean kWh per period, NaN after each end."""
    n, m = months.shape
    out = []
    index = np.arange(m)[None, :]
    recent = (index >= end_month[:, None] - RECENT_MONTHS) & (index < end_month[:, None])
    earlier = index < end_month[:, None] - RECENT_MONTHS
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for codes in (np.zeros(n), *groups):
            norm = np.full((n, m), np.nan)
            key = np.nan_to_num(codes, nan=-1.0)
            for g in np.unique(key):
                rows = key == g
                norm[rows] = np.nanmedian(months[rows], axis=0)
            ratio = months / np.where(norm > 0, norm, np.nan)
            level = np.nanmedian(ratio, axis=1)
            drop = (np.nanmean(np.where(recent, ratio, np.nan), axis=1)
                    / np.nanmean(np.where(earlier, ratio, np.nan), axis=1))
            spread = np.nanstd(np.log(np.where(ratio > 0, ratio, np.nan)), axis=1)
            out += [level, drop, spread]
    result = np.column_stack(out).astype(np.float64)
    result[~np.isfinite(result)] = np.nan
    return result
