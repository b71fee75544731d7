"""Screen exported daily history (a utility's wide CSV) before the meters are connected.

One row per customer: the first column is the id, every other column a date holding that
day's kWh, in any common date format and any column order, blanks for missing days.
Rows are scored in chunks as arrays, so 50,000 customers × 1,000 days fits in minutes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np

from collector.flags.thresholds import Thresholds

DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%d/%m/%Y", "%m/%d/%Y",
                "%d.%m.%Y", "%d-%m-%Y", "%d-%b-%Y", "%d %b %Y", "%b %d %Y")
CHUNK = 2000
RECENT_DAYS = 30


@dataclass
class ScreenResult:
    rows: int = 0
    days: int = 0
    first_day: str = ""
    last_day: str = ""
    flagged: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    top: list[tuple[str, float, str]] = field(default_factory=list)


def parse_dates(header: list[str]) -> tuple[list[int], list[date], list[str]]:
    """(column indices, dates, ignored names): one format must read every date column,
    so 03/04/2016 is never read two ways within one file."""
    best: tuple[list[int], list[date]] = ([], [])
    for fmt in DATE_FORMATS:
        cols, days = [], []
        for i, name in enumerate(header[1:], start=1):
            try:
                days.append(datetime.strptime(name.strip(), fmt).date())
                cols.append(i)
            except ValueError:
                continue
        if len(cols) > len(best[0]):
            best = (cols, days)
    ignored = [header[i] for i in range(1, len(header)) if i not in set(best[0])]
    return best[0], best[1], ignored


def _rows(path: Path) -> Iterator[list[str]]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        yield from csv.reader(f)


def score_matrix(x: np.ndarray, t: Thresholds) -> tuple[np.ndarray, list[str]]:
    """Scores and reasons for a block of customers × days (NaN = missing)."""
    n_days = x.shape[1]
    recent_n = min(RECENT_DAYS, max(1, n_days // 4))
    base, recent = x[:, :-recent_n], x[:, -recent_n:]
    with np.errstate(invalid="ignore", divide="ignore"):
        base_mean = np.nanmean(base, axis=1) if base.shape[1] else np.full(len(x), np.nan)
        recent_mean = np.nanmean(recent, axis=1)
        ratio = recent_mean / base_mean
        drop = np.clip(0.5 + (t.drop_ratio - np.nan_to_num(ratio, nan=1.0)) * 2.5, 0, 1)
        zero = (np.nan_to_num(recent_mean, nan=1.0) <= 0.05 * np.nan_to_num(base_mean))
        zero &= np.nan_to_num(base_mean) > 1.0
        missing = np.isnan(x).mean(axis=1)
        med = np.nanmedian(np.where(x > 0, x, np.nan), axis=1)
        spike = np.nanmax(np.nan_to_num(x, nan=0.0), axis=1) > 10 * np.nan_to_num(med, nan=np.inf)
        repeats = (np.diff(recent, axis=1) == 0).mean(axis=1) if recent_n > 1 else 0 * ratio
        flat = (repeats > 0.8) & (np.nan_to_num(recent_mean) > 0)
        negative = (np.nan_to_num(x) < 0).any(axis=1)
    score = np.maximum(drop, np.where(zero, 1.1, 0.0))  # zero outranks any partial drop
    score = np.maximum(score, np.where(flat, 0.7, 0.0))
    score = np.maximum(score, np.where(spike | negative, 0.6, 0.0))
    score = np.maximum(score, np.clip(missing * 1.5, 0, 0.55))
    reasons = []
    for i in range(len(x)):
        why = []
        if zero[i]:
            why.append("zero_consumption(68)")
        elif drop[i] >= 0.5:
            why.append(f"consumption_drop({ratio[i]:.2f}x)")
        if flat[i]:
            why.append("repeated_values")
        if spike[i]:
            why.append("spike(96)")
        if negative[i]:
            why.append("negative_values(96)")
        if missing[i] > 0.1:
            why.append(f"missing_days({missing[i]:.0%})")
        reasons.append(";".join(why))
    return np.round(score, 4), reasons


def screen_file(path: Path, out: Path | None, thresholds: Thresholds | None = None,
                on_progress: Callable[[int, int], None] | None = None) -> ScreenResult:
    t = thresholds or Thresholds()
    rows = _rows(path)
    header = next(rows)
    cols, days, ignored = parse_dates(header)
    if not cols:
        raise ValueError(f"{path}: no column header reads as a date")
    order = np.argsort(np.array(days, dtype="datetime64[D]"))
    calendar = np.arange(np.datetime64(min(days)), np.datetime64(max(days)) + 1)
    position = (np.array(days, dtype="datetime64[D]") - calendar[0]).astype(int)
    total = sum(1 for _ in _rows(path)) - 1
    ids: list[str] = []
    scores: list[np.ndarray] = []
    reasons: list[str] = []
    chunk: list[list[str]] = []

    def flush() -> None:
        block = np.full((len(chunk), len(calendar)), np.nan)
        raw = np.array([[(r[c] if c < len(r) else "") for c in cols] for r in chunk],
                       dtype=object)
        raw[(raw == "") | (raw == "NA") | (raw == "NaN")] = "nan"
        values = raw.astype(float)
        block[:, position[order]] = values[:, order]
        s, why = score_matrix(block, t)
        scores.append(s)
        reasons.extend(why)
        ids.extend(r[0] for r in chunk)
        chunk.clear()
        if on_progress is not None:
            on_progress(len(ids), total)

    for row in rows:
        if row:
            chunk.append(row)
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    all_scores = np.concatenate(scores) if scores else np.array([])
    ranked = np.argsort(-all_scores, kind="mergesort")
    if out is not None:
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "score", "reasons"])
            for i in ranked:
                w.writerow([ids[i], f"{all_scores[i]:.4f}", reasons[i]])
    return ScreenResult(
        rows=len(ids), days=len(calendar), first_day=str(calendar[0]),
        last_day=str(calendar[-1]), flagged=int((all_scores >= t.theft_score).sum()),
        ignored_columns=ignored,
        top=[(ids[i], float(all_scores[i]), reasons[i]) for i in ranked[:20]])
