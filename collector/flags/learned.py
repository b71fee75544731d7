"""Theft screening learned from the utility's own inspections.

The rules' picture of theft (a sustained drop against the meter's own history) is not
what most confirmed thieves look like in real data; what inspectors found is the
strongest signal a utility has. From each customer's series (days or billing months)
come features an engineer can explain (screen_features), and from the utility's own
customer attributes more; a gradient-boosted model, its settings chosen by nested
cross-validation (model_choice), learns from the inspected customers which matter here.

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
from collector.flags import model_choice as choice
from collector.flags.attributes import Schema

F64 = NDArray[np.float64]
MIN_PER_CLASS = 50
MODEL_FORMAT = 2


class LabelError(CollectorError):
    """An inspections file that cannot be learned from; nothing has been written."""


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


def map_at(y: NDArray[np.int64], score: F64, n: int) -> float:
    """Mean of precision@k over the true thieves ranked within the top n."""
    order = np.argsort(-score, kind="mergesort")[:n]
    hits = y[order] == 1
    if not hits.any():
        return 0.0
    ranks = np.flatnonzero(hits) + 1
    return float(np.mean(np.arange(1, len(ranks) + 1) / ranks))


@dataclass
class Learned:
    model: Any
    importance: F64
    direction: F64
    centre: F64
    scale: F64
    names: tuple[str, ...]
    unit: str = "D"
    """The periods it was trained on: a model of months does not score days."""
    schema: Schema = field(default_factory=Schema)
    chosen: str = ""
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


def train(f: F64, y: NDArray[np.int64], names: Sequence[str], chosen: str, unit: str,
          schema: Schema, seed: int = 0) -> Learned:
    from sklearn.inspection import permutation_importance

    categorical = [False] * (len(names) - len(schema.names)) + schema.categorical()
    model = choice.fit(chosen, categorical, seed, f, y)
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
    # A category's code has no "far from the clean customers": no reasons from codes.
    direction = np.where(categorical, 0.0, np.sign(np.nan_to_num(thief - honest)))
    return Learned(model, np.clip(np.nan_to_num(imp), 0, None), direction, centre, scale,
                   tuple(names), unit, schema, chosen)


def save(learned: Learned, path: Path) -> None:
    import sklearn

    with path.open("wb") as f:
        pickle.dump({"format": MODEL_FORMAT, "sklearn": sklearn.__version__,
                     "learned": learned}, f)


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
    if doc.get("sklearn") != sklearn.__version__:
        warnings.warn(f"{path} was saved with scikit-learn {doc.get('sklearn')}, this is "
                      f"{sklearn.__version__}: retrain if the scores look wrong", stacklevel=2)
    learned: Learned = doc["learned"]
    return learned
