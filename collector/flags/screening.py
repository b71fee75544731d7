"""Screen exported daily history (a utility's wide CSV) before the meters are connected.

One row per customer: the first column is the id, every other column a date holding that
day's kWh, in any common date format and any column order, blanks for missing days.
Rows are scored in chunks as arrays, so 50,000 customers × 1,000 days fits in minutes.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import numpy as np

from collector.config.thresholds import Thresholds
from collector.errors import CollectorError

DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%d/%m/%Y", "%m/%d/%Y",
                "%d.%m.%Y", "%d-%m-%Y", "%d-%b-%Y", "%d %b %Y", "%b %d %Y")
CHUNK = 2000
RECENT_DAYS = 30
YEAR = 364
"""Whole weeks, so a year before falls on the same weekdays."""


MAX_SPAN_DAYS = 40 * 366
"""A header whose dates span more than this holds a mistyped year, not 40 years of data."""


class ScreenError(CollectorError):
    """A file screen cannot read, with what is wrong and how to fix it."""


@dataclass
class ScreenResult:
    rows: int = 0
    days: int = 0
    first_day: str = ""
    last_day: str = ""
    flagged: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    top: list[tuple[str, float, str]] = field(default_factory=list)
    encoding: str = "utf-8"
    bad_cells: int = 0
    """Cells that were not numbers (counted as missing days)."""
    long_rows: int = 0
    """Rows with more cells than the header (the extra cells were ignored)."""
    learned: bool = False
    """Scores come from a model trained on inspections (or loaded), not the rules."""
    labelled: int = 0
    thieves: int = 0
    cv_auc: float | None = None
    """On the labelled customers, out of fold (or of a loaded model)."""
    cv_map: float | None = None
    map_n: int = 0
    rules_auc: float | None = None
    """The rule score's AUC on the same labels, for comparison."""
    warnings: list[str] = field(default_factory=list)


def parse_dates(header: list[str]) -> tuple[list[int], list[date], list[str]]:
    """(column indices, dates, ignored names): one format must read every date column,
    so 03/04/2016 is never read two ways within one file. The format is chosen on a
    sample of columns, then applied once to each: linear in the number of columns."""
    names = [(i, h.strip()) for i, h in enumerate(header[1:], start=1)]
    sample = names[:64]
    fmt = max(DATE_FORMATS, key=lambda f: sum(_as_date(n, f) is not None for _, n in sample))
    cols, days, ignored = [], [], []
    for i, name in names:
        day = _as_date(name, fmt)
        if day is None:
            ignored.append(header[i])
        else:
            cols.append(i)
            days.append(day)
    return cols, days, ignored


def _as_date(text: str, fmt: str) -> date | None:
    try:
        return datetime.strptime(text, fmt).date()
    except ValueError:
        return None


BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
FALLBACKS = ("utf-8", "gb18030", "latin-1")


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 by its BOM or its NULs, else GB18030 (a superset
    of GBK, the usual export encoding in China), else Latin-1, which reads any bytes."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    if head[1:200:2].count(0) > 50:
        return "utf-16-le"
    for name in FALLBACKS:
        try:
            head.decode(name)
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 4 and name != "latin-1":
                return name  # a character cut at the sample's end, not a bad byte
            continue
        return name
    return "latin-1"


def _rows(path: Path, encoding: str) -> Iterator[list[str]]:
    with path.open(newline="", encoding=encoding, errors="strict") as f:
        reader = csv.reader(f)
        try:
            yield from reader
        except csv.Error as exc:
            raise ScreenError(f"{path}: line {reader.line_num}: {exc}; a quote left open "
                              "swallows the rest of the file: check that line") from None
        except UnicodeDecodeError as exc:
            raise ScreenError(f"{path}: not {encoding} text ({exc.reason} at byte "
                              f"{exc.start}); give the right one with --encoding") from None


def _floats(raw: np.ndarray) -> tuple[np.ndarray, int]:
    """Cells as numbers, NaN for blanks; cells that are not numbers count as missing."""
    try:
        values = raw.astype(float)
        bad = 0
    except ValueError:
        flat = [_float(c) for c in raw.ravel()]
        bad = sum(1 for v in flat if v is None)
        values = np.array([np.nan if v is None else v for v in flat]).reshape(raw.shape)
    values[~np.isfinite(values)] = np.nan
    return values, bad


def _float(cell: str) -> float | None:
    try:
        return float(cell)
    except ValueError:
        return None


def score_matrix(x: np.ndarray, t: Thresholds) -> tuple[np.ndarray, list[str]]:
    """Scores and reasons for a block of customers × days (NaN = missing)."""
    n_days = x.shape[1]
    recent_n = min(RECENT_DAYS, max(1, n_days // 4))
    recent = x[:, -recent_n:]
    # The recent month against the same weeks a year before where the file holds them,
    # else against the two months before it: against a whole year's mean, every spring
    # after a heated winter reads as a drop. The drop must hold in both halves of the
    # month (a fortnight away is not theft). Measured on real consumption:
    # bench.real_household.
    if n_days >= YEAR + recent_n:
        base = x[:, n_days - YEAR - recent_n:n_days - YEAR]
    else:
        base = x[:, max(0, n_days - 3 * recent_n):n_days - recent_n]
    half = max(1, recent_n // 2)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-missing row is NaN, not noise
        base_mean = np.nanmean(base, axis=1) if base.shape[1] else np.full(len(x), np.nan)
        recent_mean = np.nanmean(recent, axis=1)
        held = np.fmax(np.nanmean(recent[:, :half], axis=1), np.nanmean(recent[:, half:], axis=1)
                       ) if recent_n > 1 else recent_mean
        ratio = held / base_mean
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
                on_progress: Callable[[int, int], None] | None = None,
                encoding: str | None = None, labels: Path | None = None,
                model_in: Path | None = None, model_out: Path | None = None,
                seed: int = 0) -> ScreenResult:
    t = thresholds or Thresholds()
    learning = labels is not None or model_in is not None
    enc = encoding or detect_encoding(path)
    rows = _rows(path, enc)
    header = next(rows, None)
    if not header:
        raise ScreenError(f"{path} is empty: expected a header row (id, then one column per "
                          "date) and a row per customer")
    cols, days, ignored = parse_dates(header)
    if not cols:
        raise ScreenError(f"{path}: no column header reads as a date; expected the id column, "
                          "then one column per day such as 2016-01-31")
    if any(_as_date(header[0].strip(), f) for f in DATE_FORMATS):
        raise ScreenError(f"{path}: the first column {header[0]!r} is a date, so there is no "
                          "id column; put each customer's id in the first column")
    span = (max(days) - min(days)).days
    if span > MAX_SPAN_DAYS:
        raise ScreenError(f"{path}: the header's dates run from {min(days)} to {max(days)} "
                          f"({span} days); more than {MAX_SPAN_DAYS} days means a mistyped "
                          "year in the header")
    order = np.argsort(np.array(days, dtype="datetime64[D]"))
    calendar = np.arange(np.datetime64(min(days)), np.datetime64(max(days)) + 1)
    position = (np.array(days, dtype="datetime64[D]") - calendar[0]).astype(int)
    total = sum(1 for _ in _rows(path, enc)) - 1
    result = ScreenResult(encoding=enc)
    ids: list[str] = []
    scores: list[np.ndarray] = []
    reasons: list[str] = []
    feats: list[np.ndarray] = []
    chunk: list[list[str]] = []
    width = len(header)
    weekday = (calendar.astype("datetime64[D]").astype(np.int64) + 3) % 7  # Monday 0

    def flush() -> None:
        block = np.full((len(chunk), len(calendar)), np.nan)
        raw = np.array([[(r[c] if c < len(r) else "") for c in cols] for r in chunk],
                       dtype=object)
        raw[(raw == "") | (raw == "NA") | (raw == "NaN")] = "nan"
        values, bad = _floats(raw)
        result.bad_cells += bad
        result.long_rows += sum(1 for r in chunk if len(r) > width)
        block[:, position[order]] = values[:, order]
        s, why = score_matrix(block, t)
        if learning:
            from collector.flags.learned import features

            feats.append(features(block, weekday, s))
        scores.append(s)
        reasons.extend(why)
        ids.extend(r[0] for r in chunk)
        chunk.clear()
        if on_progress is not None:
            on_progress(len(ids), total)

    for row in rows:
        if row and any(cell.strip() for cell in row):
            chunk.append(row)
        if len(chunk) >= CHUNK:
            flush()
    if chunk:
        flush()
    if not ids:
        raise ScreenError(f"{path} has a header but no customer rows")
    all_scores = np.concatenate(scores)
    if learning:
        all_scores, reasons = _learn(result, ids, all_scores, np.vstack(feats), labels,
                                     model_in, model_out, seed)
    ranked = np.argsort(-all_scores, kind="mergesort")
    if out is not None:
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "score", "reasons"])
            for i in ranked:
                w.writerow([ids[i], f"{all_scores[i]:.4f}", reasons[i]])
    result.rows, result.days = len(ids), len(calendar)
    result.first_day, result.last_day = str(calendar[0]), str(calendar[-1])
    result.flagged = int((all_scores >= (0.5 if learning else t.theft_score)).sum())
    result.ignored_columns = ignored
    result.top = [(ids[i], float(all_scores[i]), reasons[i]) for i in ranked[:20]]
    return result


def _learn(result: ScreenResult, ids: list[str], rule: np.ndarray, feats: np.ndarray,
           labels: Path | None, model_in: Path | None, model_out: Path | None,
           seed: int) -> tuple[np.ndarray, list[str]]:
    """Scores and reasons from inspections: out of fold for the labelled customers, the
    model trained on every label for the rest (or a model saved earlier)."""
    from collector.flags import learned as ml

    y_of = ml.read_labels(labels, ids) if labels is not None else {}
    idx = np.array([i for i, c in enumerate(ids) if c in y_of], dtype=np.int64)
    y = np.array([y_of[ids[i]] for i in idx], dtype=np.int64)
    result.learned, result.labelled, result.thieves = True, len(idx), int(y.sum())
    if labels is not None and min(result.thieves, len(y) - result.thieves) < ml.MIN_PER_CLASS:
        result.warnings.append(
            f"only {result.thieves} theft and {len(y) - result.thieves} clean labels: with "
            f"fewer than {ml.MIN_PER_CLASS} of each, the cross-validated figures mean little")
    if model_in is not None:
        model = ml.load(model_in)
        final = model.score(feats)
        evaluated = final[idx] if len(idx) else None
    else:
        oof = ml.out_of_fold(feats[idx], y, seed)
        model = ml.train(feats[idx], y, seed)
        final = model.score(feats)
        final[idx] = oof
        evaluated = oof
    if evaluated is not None and len(idx):
        result.map_n = min(100, len(idx))
        result.cv_auc = ml.auc(y, evaluated)
        result.cv_map = ml.map_at(y, evaluated, result.map_n)
        result.rules_auc = ml.auc(y, rule[idx])
    if model_out is not None:
        ml.save(model, model_out)
    return np.round(final, 4), model.reasons(feats)
