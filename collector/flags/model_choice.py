"""Which model, with which settings, by measurement on the user's own labels.

A setting chosen and scored on the same folds flatters itself, so the choice is nested:
each outer fold picks among a few candidates on its own training customers only (on a
held-out quarter of them), and the customers it scores never took part in the choice.
The search is small on purpose: three gradient-boosting settings, each stopping early
once its own validation loss stops falling, not a grid that finds noise.

Beside the screen, the same outer folds score a naive model (gradient boosting on the
raw columns, plus the attributes where given) and the rules alone, so the figures a
utility reads (AUC, and the share of thieves in the top 5 % and 10 %: its inspection
budget) come with what a plain model on the same labels gets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
CANDIDATES: dict[str, dict[str, Any]] = {
    "gbm-fast": {"learning_rate": 0.1, "max_iter": 150, "max_leaf_nodes": 31,
                 "min_samples_leaf": 20},
    "gbm-regularised": {"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 15,
                        "min_samples_leaf": 40, "l2_regularization": 1.0},
    "gbm-shallow": {"learning_rate": 0.05, "max_iter": 300, "max_leaf_nodes": 7,
                    "min_samples_leaf": 80, "l2_regularization": 1.0},
}
FOLDS = 5
SMALL = 5000
"""Below this many customers a fit is faster on one thread than on several."""


def model(name: str, categorical: Sequence[bool] | None, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    params = CANDIDATES.get(name, {})
    cats = list(categorical) if categorical is not None and any(categorical) else None
    return HistGradientBoostingClassifier(categorical_features=cats, random_state=seed,
                                          early_stopping=True, n_iter_no_change=15,
                                          **params)


def fit(name: str, categorical: Sequence[bool] | None, seed: int, f: F64, y: I64) -> Any:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1 if len(y) < SMALL else None):
        return model(name, categorical, seed).fit(f, y)


def auc(y: I64, score: F64) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, score))


def precision_at(y: I64, score: F64, share: float) -> float:
    """The share of confirmed thieves among the top `share` of scores: what an
    inspection budget of that size finds."""
    k = max(1, round(len(y) * share))
    top = np.argsort(-score, kind="mergesort")[:k]
    return float(y[top].mean())


@dataclass
class Figures:
    auc: float
    top5: float
    top10: float

    @classmethod
    def of(cls, y: I64, score: F64) -> Figures:
        return cls(auc(y, score), precision_at(y, score, 0.05), precision_at(y, score, 0.10))


@dataclass
class Choice:
    oof: F64
    """Every labelled customer's score from a model that never saw its label."""
    chosen: str
    """The setting the outer folds chose most often (ties to the first candidate), for
    the model trained on every label that scores everyone else."""
    per_fold: Counter[str] = field(default_factory=Counter)


def choose(f: F64, y: I64, categorical: Sequence[bool] | None, seed: int) -> str:
    """The candidate with the best AUC on data it was not fitted to, within (f, y)."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y,
                                   random_state=seed)
    best, best_auc = next(iter(CANDIDATES)), -1.0
    for name in CANDIDATES:
        fitted = fit(name, categorical, seed, f[train], y[train])
        score = auc(y[test], fitted.predict_proba(f[test])[:, 1])
        if score > best_auc:
            best, best_auc = name, score
    return best


def folds(y: I64, seed: int) -> list[tuple[I64, I64]]:
    from sklearn.model_selection import StratifiedKFold

    k = max(2, min(FOLDS, int(np.bincount(y).min())))
    skf = StratifiedKFold(k, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in skf.split(np.zeros(len(y)), y)]


def nested(f: F64, y: I64, categorical: Sequence[bool] | None, seed: int,
           outer: list[tuple[I64, I64]]) -> Choice:
    oof = np.zeros(len(y))
    picked: Counter[str] = Counter()
    for train, test in outer:
        name = choose(f[train], y[train], categorical, seed)
        picked[name] += 1
        fitted = fit(name, categorical, seed, f[train], y[train])
        oof[test] = fitted.predict_proba(f[test])[:, 1]
    chosen = max(CANDIDATES, key=lambda name: picked[name])
    return Choice(oof, chosen, picked)


def out_of_fold(f: F64, y: I64, categorical: Sequence[bool] | None, seed: int,
                outer: list[tuple[I64, I64]], name: str = "") -> F64:
    """One fixed model's out-of-fold scores on the same folds (the naive baseline)."""
    oof = np.zeros(len(y))
    for train, test in outer:
        fitted = fit(name, categorical, seed, f[train], y[train])
        oof[test] = fitted.predict_proba(f[test])[:, 1]
    return oof
