"""`collector screen --labels` at a utility's scale: 50,000 customers × 1,000 days.

Writes a wide daily export of simulated households (simulator.daily_households: noise,
seasons, vacations, missing days; 30 % thieves, 80 % of customers inspected), then
screens it with the labels: read, rule scores, features, 5-fold out-of-fold scores and
the model on every label. The baseline, in the same run, is only reading the same file
into a float matrix with the csv module and numpy, the least any screening must do.

    python -m bench.screen_speed [--customers 50000] [--days 1000]
"""

from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from collector.flags.screening import screen_file
from simulator.daily_households import DailySpec, write_export


def read_plain(path: Path) -> np.ndarray:
    with path.open(newline="") as f:
        rows = csv.reader(f)
        next(rows)
        cells = np.array([row[1:] for row in rows])
    return np.where(cells == "", "nan", cells).astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data, labels, out = Path(tmp) / "daily.csv", Path(tmp) / "labels.csv", Path(tmp) / "s.csv"
        t0 = time.perf_counter()
        write_export(DailySpec(customers=args.customers, days=args.days, seed=11), data, labels)
        print(f"wrote {args.customers:,} customers × {args.days:,} days "
              f"({data.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s")
        t0 = time.perf_counter()
        result = screen_file(data, out, labels=labels)
        took = time.perf_counter() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the baseline
        t0 = time.perf_counter()
        read_plain(data)
        plain = time.perf_counter() - t0
    print(f"screen --labels: {took:.0f} s ({args.customers / took:,.0f} customers/s); "
          f"cross-validated AUC {result.cv_auc:.3f} on {result.labelled:,} labels, "
          f"rules' AUC {result.rules_auc:.3f}; peak memory {peak_mb:,.0f} MB")
    print(f"baseline, reading the file into a float matrix only: {plain:.0f} s; "
          f"ratio {plain / took:.2f}")


if __name__ == "__main__":
    main()
