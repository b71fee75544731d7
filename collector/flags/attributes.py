"""Per-customer attributes for screening (tariff, activity, zone, voltage level, …) and
the per-customer reference date (`--as-of`, e.g. the inspection date).

Utilities without interval meters know their customers by such columns, and on real
inspections they carry more signal than the consumption itself (a tariff class with
almost no theft, a zone with much). A column whose every cell is a number is numeric;
any other is categorical, its levels coded by frequency, the rare ones pooled as one
"other" level, so one customer's free-text value never becomes a feature of its own.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from collector.flags.screen_input import (
    DATE_FORMATS,
    ScreenError,
    as_date,
    best_format,
    detect_encoding,
)

F64 = NDArray[np.float64]
MIN_LEVEL = 5
"""Customers a category needs to be a level of its own."""
MAX_LEVELS = 250
"""scikit-learn's gradient boosting takes at most 255 categories per feature."""


@dataclass
class Schema:
    """How attribute columns become features: kept with a saved model, so a later file's
    'zona_3' is the same code as the training file's."""

    names: list[str] = field(default_factory=list)
    levels: dict[str, list[str]] = field(default_factory=dict)
    """Categorical column → its levels in code order ("" is "other")."""

    def categorical(self) -> list[bool]:
        return [n in self.levels for n in self.names]

    def encode(self, cells: dict[str, dict[str, str]], ids: list[str]) -> F64:
        out = np.full((len(ids), len(self.names)), np.nan)
        for j, name in enumerate(self.names):
            col = cells.get(name, {})
            if name in self.levels:
                code = {level: k for k, level in enumerate(self.levels[name])}
                other = code.get("", np.nan)
                out[:, j] = [code.get(v, other) if (v := col.get(c, "").strip()) else np.nan
                             for c in ids]
            else:
                out[:, j] = [_number(col.get(c, "")) for c in ids]
        return out


@dataclass
class Attributes:
    cells: dict[str, dict[str, str]]
    """column → customer id → the cell as text."""
    as_of: dict[str, date]


def _number(cell: str) -> float:
    try:
        return float(cell) if cell.strip() else np.nan
    except ValueError:
        return np.nan


def read(path: Path, as_of: str | None) -> Attributes:
    """The attributes file (CSV or Parquet; the id in the first column or one named id)."""
    header, rows = _table(path)
    if not header:
        raise ScreenError(f"{path}: the attributes file is empty; expected a header row "
                          "(id, then one column per attribute)")
    lower = [h.strip().lower() for h in header]
    key = lower.index("id") if "id" in lower else 0
    cells: dict[str, dict[str, str]] = {h.strip(): {} for j, h in enumerate(header) if j != key}
    for row in rows:
        if not row or not row[key].strip():
            continue
        cid = row[key].strip()
        for j, h in enumerate(header):
            if j != key:
                cells[h.strip()][cid] = row[j] if j < len(row) else ""
    dates: dict[str, date] = {}
    if as_of is not None and as_of in cells:
        dates = reference_dates(path, as_of, cells.pop(as_of))
    return Attributes(cells, dates)


def reference_dates(path: Path, column: str, col: dict[str, str]) -> dict[str, date]:
    texts = [t.strip() for t in col.values() if t.strip()]
    if not texts:
        raise ScreenError(f"{path}: the --as-of column {column!r} is empty")
    fmt = best_format(sorted(set(texts))[:64])
    out: dict[str, date] = {}
    for cid, text in col.items():
        if not text.strip():
            continue
        day = as_date(text, fmt) or next((d for f in DATE_FORMATS if (d := as_date(text, f))),
                                         None)
        if day is None:
            raise ScreenError(f"{path}: --as-of column {column!r}: {text[:30]!r} for {cid!r} "
                              "is not a date")
        out[cid] = day
    return out


def schema_of(cells: dict[str, dict[str, str]], ids: list[str]) -> Schema:
    schema = Schema()
    for name, col in cells.items():
        values = [col.get(c, "").strip() for c in ids]
        present = [v for v in values if v]
        if not present:
            continue
        schema.names.append(name)
        if all(not np.isnan(_number(v)) for v in present):
            continue
        counts: dict[str, int] = {}
        for v in present:
            counts[v] = counts.get(v, 0) + 1
        ranked = sorted(counts, key=lambda v: (-counts[v], v))
        kept = [v for v in ranked if counts[v] >= MIN_LEVEL][:MAX_LEVELS - 1]
        schema.levels[name] = kept + ([""] if len(kept) < len(ranked) else [])
    return schema


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise ScreenError(f"{path}: reading Parquet needs pyarrow: pip install "
                              "'meter-collector[parquet]'") from None
        table = pq.read_table(path)
        columns = [["" if v is None else str(v) for v in table.column(i).to_pylist()]
                   for i in range(table.num_columns)]
        return list(table.column_names), [list(r) for r in zip(*columns, strict=True)]
    enc = detect_encoding(path)
    try:
        with path.open(newline="", encoding=enc) as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ScreenError(f"{path}: cannot read the attributes ({exc})") from None
    return (rows[0], rows[1:]) if rows else ([], [])
