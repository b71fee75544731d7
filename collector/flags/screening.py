"""Screen a utility's consumption history before the meters are connected.

The file is what billing holds: one row per customer with a column per day or per
billing month (wide CSV), `id,date,kwh` rows (long), or Parquet of either; see
screen_input. Without labels the rules score each customer; with inspections
(`--labels`) a model learns from them, with the customer attributes (`--attributes`)
as features and each customer's history cut at its own reference date (`--as-of`), and
the screen's figures are printed beside a naive model's and the rules' on the same folds.
Rows are scored in blocks as arrays, so 50,000 customers × 1,000 days fits in minutes.
"""

from __future__ import annotations

import csv
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collector.config.thresholds import Thresholds
from collector.flags import attributes as attrs
from collector.flags import model_choice as choice
from collector.flags import periods, screen_features
from collector.flags.periods import DAY, Period
from collector.flags.screen_input import (
    DATE_FORMATS,
    ScreenError,
    as_date,
    detect_encoding,
    open_source,
    parse_dates,
)

__all__ = ["DATE_FORMATS", "RuleParts", "ScreenError", "ScreenResult", "as_date",
           "detect_encoding", "parse_dates", "rule_parts", "score_matrix", "screen_file"]
RAW_MAX = 366
"""Raw periods the naive baseline sees: its 'raw columns', a year of days at most."""


@dataclass
class ScreenResult:
    rows: int = 0
    days: int = 0
    """Periods on the file's calendar (days or months: see unit)."""
    unit: str = "day"
    first_day: str = ""
    last_day: str = ""
    flagged: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    top: list[tuple[str, float, str]] = field(default_factory=list)
    encoding: str = "utf-8"
    bad_cells: int = 0
    """Cells that were not numbers (counted as missing periods)."""
    long_rows: int = 0
    """Rows with more cells than the header (the extra cells were ignored)."""
    duplicates: int = 0
    """Long-form rows repeating a customer and period (the last one was kept)."""
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
    screen: choice.Figures | None = None
    naive: choice.Figures | None = None
    """Gradient boosting on the raw columns (+ attributes), same folds and labels."""
    rules: choice.Figures | None = None
    chosen: str = ""
    """The model setting the outer folds of nested cross-validation chose most often."""
    per_fold: dict[str, int] = field(default_factory=dict)
    features: list[str] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    as_of: int = 0
    """Customers whose history was cut at their own reference date."""
    warnings: list[str] = field(default_factory=list)


@dataclass
class RuleParts:
    """Each rule's verdict per customer, kept apart so each can be weighed against real
    inspections on its own (bench.real_theft)."""

    drop: np.ndarray
    ratio: np.ndarray
    zero: np.ndarray
    flat: np.ndarray
    spike: np.ndarray
    negative: np.ndarray
    missing: np.ndarray

    def scores(self) -> dict[str, np.ndarray]:
        return {"consumption_drop": self.drop, "zero_consumption": self.zero.astype(float),
                "repeated_values": self.flat.astype(float),
                "spike_or_negative": (self.spike | self.negative).astype(float),
                "missing_periods": self.missing}


def rule_parts(x: np.ndarray, t: Thresholds, period: Period = DAY) -> RuleParts:
    """The rules on a block of customers × periods (NaN = missing, the last column the
    latest)."""
    n_days = x.shape[1]
    recent_n = min(period.recent, max(1, n_days // 4))
    recent = x[:, -recent_n:]
    # The recent month against the same weeks a year before where the file holds them,
    # else against the two months before it: against a whole year's mean, every spring
    # after a heated winter reads as a drop. The drop must hold in both halves of the
    # month (a fortnight away is not theft). Measured on real consumption:
    # bench.real_household. In monthly data the recent window is a quarter.
    if n_days >= period.year + recent_n:
        base = x[:, n_days - period.year - recent_n:n_days - period.year]
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
    return RuleParts(drop, ratio, zero, flat, spike, negative, missing)


def score_matrix(x: np.ndarray, t: Thresholds, period: Period = DAY,
                 ) -> tuple[np.ndarray, list[str]]:
    """Scores and reasons for a block of customers × periods: the strongest rule wins."""
    r = rule_parts(x, t, period)
    score = np.maximum(r.drop, np.where(r.zero, 1.1, 0.0))  # zero outranks any partial drop
    score = np.maximum(score, np.where(r.flat, 0.7, 0.0))
    score = np.maximum(score, np.where(r.spike | r.negative, 0.6, 0.0))
    score = np.maximum(score, np.clip(r.missing * 1.5, 0, 0.55))
    reasons = []
    for i in range(len(x)):
        why = []
        if r.zero[i]:
            why.append("zero_consumption(68)")
        elif r.drop[i] >= 0.5:
            why.append(f"consumption_drop({r.ratio[i]:.2f}x)")
        if r.flat[i]:
            why.append("repeated_values")
        if r.spike[i]:
            why.append("spike(96)")
        if r.negative[i]:
            why.append("negative_values(96)")
        if r.missing[i] > 0.1:
            why.append(f"missing_{period.name}({r.missing[i]:.0%})")
        reasons.append(";".join(why))
    return np.round(score, 4), reasons


def screen_file(path: Path, out: Path | None, thresholds: Thresholds | None = None,
                on_progress: Callable[[int, int], None] | None = None,
                encoding: str | None = None, labels: Path | None = None,
                model_in: Path | None = None, model_out: Path | None = None,
                seed: int = 0, attributes: Path | None = None,
                as_of: str | None = None) -> ScreenResult:
    from collector.flags import learned as ml

    t = thresholds or Thresholds()
    learning = labels is not None or model_in is not None
    source = open_source(path, encoding)
    period = periods.period_of(source.unit)
    known = attrs.read(attributes, as_of) if attributes is not None else \
        attrs.Attributes({}, {})
    result = ScreenResult(encoding=source.encoding, unit="month" if source.unit == "M"
                          else "day")
    calendar = source.calendar
    weekday = (calendar.astype("datetime64[D]").astype(np.int64) + 3) % 7  # Monday 0
    ids: list[str] = []
    scores, feats, months, month_ends, raws = [], [], [], [], []
    reasons: list[str] = []
    raw_width = min(len(calendar), RAW_MAX)
    for chunk in source.chunks():
        dates = known.as_of
        if as_of is not None and not dates:
            if as_of not in chunk.extras:
                where = f"{path}" + (f" or {attributes}" if attributes else "")
                raise ScreenError(f"--as-of {as_of}: no column of that name in {where}; "
                                  "name the column holding each customer's reference date")
            dates = attrs.reference_dates(path, as_of, dict(zip(chunk.ids, chunk.extras[as_of],
                                                                strict=True)))
        end = periods.ends(calendar, source.unit, chunk.ids, dates)
        cut = as_of is not None
        x = periods.trim(periods.align(chunk.block, end)) if cut else chunk.block
        result.as_of += int(sum(1 for c in chunk.ids if c in dates)) if cut else 0
        s, why = score_matrix(x, t, period)
        if learning:
            feats.append(screen_features.base(x, None if cut else weekday, s, period))
            level, level_end = periods.monthly_levels(chunk.block, calendar, source.unit, end)
            months.append(level)
            month_ends.append(level_end)
            tail = np.full((len(x), raw_width), np.nan, dtype=np.float32)
            width = min(raw_width, x.shape[1])
            tail[:, raw_width - width:] = x[:, x.shape[1] - width:]
            raws.append(tail)
        scores.append(s)
        reasons.extend(why)
        ids.extend(chunk.ids)
        if on_progress is not None:
            on_progress(len(ids), source.total)
    if not ids:
        raise ScreenError(f"{path} has a header but no customer rows")
    for name, n in (("bad_cells", source.bad_cells), ("long_rows", source.long_rows),
                    ("duplicates", source.duplicates)):
        setattr(result, name, n)
    all_scores = np.concatenate(scores)
    if learning:
        model = ml.load(model_in) if model_in is not None else None
        if model is not None and model.unit != source.unit:
            raise ScreenError(f"{model_in} was trained on {_unit(model.unit)}s; {path} holds "
                              f"{_unit(source.unit)}s: train a model on this kind of file")
        schema = model.schema if model is not None else attrs.schema_of(known.cells, ids)
        coded = schema.encode(known.cells, ids)
        groups = [coded[:, j] for j, cat in enumerate(schema.categorical()) if cat]
        peer = screen_features.peers(np.vstack(months), np.concatenate(month_ends), groups)
        names = [*screen_features.BASE, *screen_features.peer_names(
            [n for n, c in zip(schema.names, schema.categorical(), strict=True) if c]),
            *schema.names]
        f = np.hstack([np.vstack(feats), peer, coded])
        # float32 until a fold's fit converts its own rows: a year of raw days for
        # 50,000 customers is 146 MB more as float64, and twice that while stacking.
        naive = np.hstack([np.vstack(raws), coded.astype(np.float32)])
        result.features, result.attributes = names, list(schema.names)
        all_scores, reasons = _learn(result, ids, all_scores, f, naive, schema, names,
                                     source.unit, labels, model, model_out, seed)
    ranked = np.argsort(-all_scores, kind="mergesort")
    if out is not None:
        with out.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "score", "reasons"])
            for i in ranked:
                w.writerow([ids[i], f"{all_scores[i]:.4f}", reasons[i]])
    result.rows, result.days = len(ids), len(calendar)
    result.first_day, result.last_day = str(calendar[0]), str(calendar[-1])
    result.flagged = int((all_scores >= (0.5 if learning else t.theft_score)).sum())
    result.ignored_columns = source.ignored
    result.top = [(ids[i], float(all_scores[i]), reasons[i]) for i in ranked[:20]]
    return result


def _unit(unit: str) -> str:
    return "month" if unit == "M" else "day"


def _learn(result: ScreenResult, ids: list[str], rule: np.ndarray, feats: np.ndarray,
           naive: np.ndarray, schema: attrs.Schema, names: list[str], unit: str,
           labels: Path | None, model: object | None, model_out: Path | None,
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
    # A feature no customer has (a year-on-year correlation in 26 days) is constant:
    # scikit-learn cannot bin an all-NaN column, and a constant carries the same nothing.
    for matrix in (feats, naive):
        matrix[:, np.isnan(matrix).all(axis=0)] = 0.0
    cats = [False] * (len(names) - len(schema.names)) + schema.categorical()
    if isinstance(model, ml.Learned):
        learned = model
        final = learned.score(feats)
        evaluated = final[idx] if len(idx) else None
        result.chosen = learned.chosen
    else:
        outer = choice.folds(y, seed)
        picked = choice.nested(feats[idx], y, cats, seed, outer)
        naive_cats = [False] * (naive.shape[1] - len(schema.names)) + schema.categorical()
        result.naive = choice.Figures.of(y, choice.out_of_fold(naive[idx], y, naive_cats,
                                                               seed, outer))
        result.chosen, result.per_fold = picked.chosen, dict(picked.per_fold)
        learned = ml.train(feats[idx], y, names, picked.chosen, unit, schema, seed)
        final = learned.score(feats)
        final[idx] = picked.oof
        evaluated = picked.oof
    if evaluated is not None and len(idx):
        result.map_n = min(100, len(idx))
        result.screen = choice.Figures.of(y, evaluated)
        result.rules = choice.Figures.of(y, rule[idx])
        result.cv_auc, result.rules_auc = result.screen.auc, result.rules.auc
        result.cv_map = ml.map_at(y, evaluated, result.map_n)
    if model_out is not None:
        ml.save(learned, model_out)
    return np.round(final, 4), learned.reasons(feats)
