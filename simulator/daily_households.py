"""A utility's wide daily-kWh export (id, then a column per date), for `collector screen`.

Honest households are not clean: each has its own level, a weekend shape, a seasonal
swing with its own phase (heating or cooling), day-to-day noise, sometimes a vacation
at zero, and missing days. Thieves do not all make one clean drop either: some report a
random share of their use each day, some a flat share, some cut it most of the time
only. The export is written row by row, so a file of 50,000 customers × 1,000 days
never sits in memory as text.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class DailySpec:
    customers: int = 600
    days: int = 240
    seed: int = 5
    thieves: float = 0.3
    """Share of customers who steal."""
    inspected: float = 0.8
    """Share of customers (the first ones) with an inspection outcome."""
    first: date = date(2025, 1, 1)


def household(rng: np.random.Generator, days: int, weekday: NDArray[np.int64],
              thief: bool) -> NDArray[np.float64]:
    t = np.arange(days)
    level = rng.uniform(3, 20)
    weekly = 1 + 0.15 * (weekday >= 5) * rng.uniform(-1, 1)
    season = 1 + 0.25 * np.sin(2 * np.pi * (t + rng.uniform(0, 365)) / 365)
    x = level * weekly * season * rng.lognormal(0, 0.25, days)
    if rng.random() < 0.3:
        start = int(rng.integers(0, max(1, days - 14)))
        x[start:start + int(rng.integers(3, 14))] = 0.0  # a vacation
    if thief:
        kind = rng.integers(3)
        if kind == 0:
            x = x * rng.uniform(0.1, 0.8, days)
        elif kind == 1:
            x = np.full(days, x.mean() * rng.uniform(0.3, 0.7)) * rng.lognormal(0, 0.03, days)
        else:
            off = rng.random(days) < 0.4
            x = np.where(off, x * 0.15, x)
    x[rng.random(days) < 0.03] = np.nan
    return x


def write_export(spec: DailySpec, path: Path, labels: Path) -> dict[str, int]:
    """The export at `path`, the inspection outcomes at `labels` (`id,label`); returns
    every customer's truth."""
    rng = np.random.default_rng(spec.seed)
    weekday = (np.arange(spec.days) + spec.first.weekday()) % 7
    cell = ",".join(["%.2f"] * spec.days)
    truth: dict[str, int] = {}
    with path.open("w", newline="") as f:
        f.write("CONS_NO," + ",".join(str(spec.first + timedelta(days=k))
                                      for k in range(spec.days)) + "\n")
        for i in range(spec.customers):
            thief = bool(rng.random() < spec.thieves)
            x = household(rng, spec.days, weekday, thief)
            cid = f"C{i:0{max(4, len(str(spec.customers - 1)))}d}"
            truth[cid] = int(thief)
            # One C-level format per row; a blank, as exports have it, where a day is missing.
            f.write(f"{cid},{(cell % tuple(x.tolist())).replace('nan', '')}\n")
    with labels.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        w.writerows([c, truth[c]] for c in list(truth)[: int(spec.inspected * spec.customers)])
    return truth
