"""Theft screening learned from the utility's own inspections.

The rules' picture of theft (a sustained drop against the meter's own history) is not
what most confirmed thieves look like in real data; what inspectors found is the
strongest signal a utility has. From each customer's daily series come features an
engineer can explain (level, variability, day-to-day and weekly autocorrelation, zero
and missing days, changes between periods, weekly and seasonal shape, the rule score);
a gradient-boosted model learns from the inspected customers which of them matter here.

Every inspected customer is scored out of fold (by a model that never saw its label),
the rest by the model trained on every label. No model ships with the project: it is
trained at run time from the user's labels, and saved or reused only on request.
"""

from __future__ import annotations

import csv
import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collector.errors import CollectorError

F64 = NDArray[np.float64]
FEATURES = (
    "mean_kwh", "std_kwh", "variation", "median_kwh", "peak_to_mean", "zero_days",
    "missing_days", "autocorr_1d", "autocorr_7d", "last_third_vs_first", "recent_vs_before",
    "weekend_vs_weekday", "monthly_variation", "jumps", "longest_zero_run", "trend",
    "low_quantile", "high_quantile", "rule_score",
)
MIN_PER_CLASS = 50
MODEL_FORMAT = 1


class LabelError(CollectorError):
    """An inspections file that cannot be learned from; nothing has been written."""


def features(x: F64, weekday: NDArray[np.int64], rule_score: F64) -> F64:
    """customers × days of daily kWh (NaN missing) → customers × len(FEATURES)."""
    n, d = x.shape
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        present = ~np.isnan(x)
        mean = np.nanmean(x, axis=1)
        std = np.nanstd(x, axis=1)
        median = np.nanmedian(x, axis=1)
        filled = np.where(present, x, mean[:, None])
        centred = filled - filled.mean(axis=1, keepdims=True)

        def autocorr(lag: int) -> F64:
            if d <= lag + 2:
                return np.full(n, np.nan)
            a, b = centred[:, :-lag], centred[:, lag:]
            out: F64 = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
            return out

        third = max(d // 3, 1)
        first, last = np.nanmean(x[:, :third], axis=1), np.nanmean(x[:, -third:], axis=1)
        recent_n = min(30, max(d // 4, 1))
        recent = np.nanmean(x[:, -recent_n:], axis=1)
        before = np.nanmean(x[:, -4 * recent_n:-recent_n], axis=1) if d > recent_n else mean
        weekend = weekday >= 5
        we = np.nanmean(x[:, weekend], axis=1) if weekend.any() else mean
        wd = np.nanmean(x[:, ~weekend], axis=1) if (~weekend).any() else mean
        months = [np.nanmean(x[:, k:k + 30], axis=1) for k in range(0, d, 30)]
        monthly = np.nanstd(np.column_stack(months), axis=1) / mean if len(months) > 1 else \
            np.zeros(n)
        diffs = np.abs(np.diff(x, axis=1))
        jumps = np.nanmean(diffs > 3 * std[:, None], axis=1) if d > 1 else np.zeros(n)
        zero = present & (x <= 0)
        longest = _longest_runs(zero) / d
        t = np.arange(d) - (d - 1) / 2
        trend = (centred * t).sum(axis=1) / (t * t).sum() * d / mean
        q10 = np.nanquantile(x, 0.1, axis=1) / median
        q90 = np.nanquantile(x, 0.9, axis=1) / median
        columns = [mean, std, std / mean, median, np.nanmax(x, axis=1) / mean,
                   zero.sum(axis=1) / np.maximum(present.sum(axis=1), 1),
                   1 - present.mean(axis=1), autocorr(1), autocorr(7), last / first,
                   recent / before, we / wd, monthly, jumps, longest, trend, q10, q90,
                   rule_score]
    out = np.column_stack(columns).astype(np.float64)
    out[~np.isfinite(out)] = np.nan
    return out


def _longest_runs(mask: NDArray[np.bool_]) -> F64:
    best = np.zeros(len(mask))
    run = np.zeros(len(mask))
    for k in range(mask.shape[1]):
        run = np.where(mask[:, k], run + 1, 0)
        best = np.maximum(best, run)
    return best


def read_labels(path: Path, ids: Sequence[str]) -> dict[str, int]:
    """id → 1 (theft confirmed) or 0 (inspected, clean); refused with what is wrong."""
    known = set(ids)
    out: dict[str, int] = {}
    unknown: list[str] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read the inspections ({exc})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["id", "label"]:
        rows = rows[1:]
    for n, row in enumerate(rows, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2:
            raise LabelError(f"{path}: line {n}: expected id,label")
        cid, label = row[0].strip(), row[1].strip()
        if label not in ("0", "1"):
            raise LabelError(f"{path}: line {n}: label {label[:20]!r} for {cid!r} is not 0 "
                             "(inspected, clean) or 1 (theft confirmed)")
        if cid in out and out[cid] != int(label):
            raise LabelError(f"{path}: line {n}: {cid!r} is labelled both 0 and 1; keep the "
                             "latest inspection only")
        out[cid] = int(label)
        if cid not in known:
            unknown.append(cid)
    if unknown:
        raise LabelError(f"{path}: {len(unknown)} labelled ids are not in the consumption "
                         f"file, e.g. {', '.join(repr(u) for u in unknown[:3])}")
    classes = set(out.values())
    if len(classes) < 2:
        which = "theft (1)" if classes == {1} else "clean (0)"
        raise LabelError(f"{path}: every label is {which}: learning needs inspected "
                         "customers of both outcomes")
    return out


def auc(y: NDArray[np.int64], score: F64) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def map_at(y: NDArray[np.int64], score: F64, n: int) -> float:
    """Mean of precision@k over the true thieves ranked within the top n."""
    order = np.argsort(-score, kind="mergesort")[:n]
    hits = y[order] == 1
    if not hits.any():
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


def _model(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=250, learning_rate=0.06,
                                          max_leaf_nodes=31, l2_regularization=1.0,
                                          class_weight="balanced", random_state=seed)


def out_of_fold(f: F64, y: NDArray[np.int64], seed: int = 0, folds: int = 5) -> F64:
    """Each labelled customer's score from a model trained without its label."""
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y))
    k = max(2, min(folds, int(np.bincount(y).min())))
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(f, y):
        m = _model(seed).fit(f[train], y[train])
        out[test] = m.predict_proba(f[test])[:, 1]
    return out


@dataclass
class Learned:
    model: Any
    importance: F64
    direction: F64
    centre: F64
    scale: F64
    names: tuple[str, ...] = FEATURES
    meta: dict[str, Any] = field(default_factory=dict)

    def score(self, f: F64) -> F64:
        out: F64 = self.model.predict_proba(f)[:, 1]
        return out

    def reasons(self, f: F64, top: int = 3) -> list[str]:
        """The features that pushed each score up most: how far a customer sits from the
        clean customers on a feature, on the side theft lies, weighted by how much the
        model leans on it."""
        with np.errstate(invalid="ignore"):
            z = (f - self.centre) / self.scale * self.direction
        push = np.nan_to_num(np.clip(z, 0, None)) * self.importance
        out = []
        for row in push:
            best = np.argsort(-row)[:top]
            out.append(";".join(self.names[j] for j in best if row[j] > 0))
        return out


def train(f: F64, y: NDArray[np.int64], seed: int = 0) -> Learned:
    from sklearn.inspection import permutation_importance

    model = _model(seed).fit(f, y)
    sample = np.random.default_rng(seed).choice(len(y), min(len(y), 5000), replace=False)
    imp = permutation_importance(model, f[sample], y[sample], scoring="roc_auc",
                                 n_repeats=3, random_state=seed).importances_mean
    clean = f[y == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        centre = np.nanmedian(clean, axis=0)
        scale = np.nanquantile(clean, 0.75, axis=0) - np.nanquantile(clean, 0.25, axis=0)
        thief, honest = np.nanmedian(f[y == 1], axis=0), centre
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    direction = np.sign(np.nan_to_num(thief - honest))
    return Learned(model, np.clip(np.nan_to_num(imp), 0, None), direction, centre, scale)


def save(learned: Learned, path: Path) -> None:
    import sklearn

    with path.open("wb") as f:
        pickle.dump({"format": MODEL_FORMAT, "sklearn": sklearn.__version__,
                     "features": FEATURES, "learned": learned}, f)


def load(path: Path) -> Learned:
    """A model this project saved from the user's own labels. A pickle runs code when
    loaded: load only files you made."""
    import sklearn

    try:
        with path.open("rb") as f:
            doc = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
        raise LabelError(f"{path}: not a model saved by collector screen ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise LabelError(f"{path}: not a model saved by collector screen --save-model")
    if tuple(doc.get("features", ())) != FEATURES:
        raise LabelError(f"{path}: saved with other features; train it again with --labels")
    if doc.get("sklearn") != sklearn.__version__:
        warnings.warn(f"{path} was saved with scikit-learn {doc.get('sklearn')}, this is "
                      f"{sklearn.__version__}: retrain if the scores look wrong", stacklevel=2)
    learned: Learned = doc["learned"]
    return learned
