"""`collector screen` on the files utilities without interval meters have: billing
months wide or long, Parquet, short windows, attributes and a reference date per
customer. The data are generated here; the real-data figures come from bench.real_theft."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from collector.cli.main import main
from collector.flags.screen_input import ScreenError
from collector.flags.screening import screen_file

MONTHS = [date(2016 + (m // 12), m % 12 + 1, 1) for m in range(24)]
TARIFFS = ("residential", "commercial", "rural")


def monthly(n: int = 300, seed: int = 1) -> tuple[dict[str, list[float | None]],
                                                  dict[str, str], dict[str, int]]:
    """Customers × 24 billing months with a shared season; a third steal, and in this
    population theft lives in one tariff class and shows no consumption sign."""
    rng = np.random.default_rng(seed)
    season = 1 + 0.3 * np.cos(2 * np.pi * np.arange(24) / 12)
    kwh: dict[str, list[float | None]] = {}
    tariff: dict[str, str] = {}
    truth: dict[str, int] = {}
    for i in range(n):
        cid = f"K{i:04d}"
        tariff[cid] = TARIFFS[i % 3]
        truth[cid] = int(tariff[cid] == "rural" and rng.random() < 0.8)
        values = rng.uniform(80, 400) * season * rng.lognormal(0, 0.15, 24)
        kwh[cid] = [None if rng.random() < 0.02 else round(float(v), 1) for v in values]
    return kwh, tariff, truth


def write_wide(path: Path, kwh: dict[str, list[float | None]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["account", *[m.strftime("%Y-%m") for m in MONTHS]])
        for cid, values in kwh.items():
            w.writerow([cid, *("" if v is None else v for v in values)])


def write_long(path: Path, kwh: dict[str, list[float | None]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "date", "kwh"])
        for cid, values in kwh.items():
            for m, v in zip(MONTHS, values, strict=True):
                w.writerow([cid, m.isoformat(), "" if v is None else v])


def write_table(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([header, *rows])
    return path


def scores(path: Path) -> dict[str, str]:
    with path.open() as f:
        return {r["id"]: r["score"] for r in csv.DictReader(f)}


def test_monthly_files_wide_long_and_parquet_screen_alike(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    kwh, _, _ = monthly(60)
    kwh["K0000"] = [*[200.0] * 21, 20.0, 15.0, 18.0]  # a drop in the last quarter
    wide, long = tmp_path / "wide.csv", tmp_path / "long.csv"
    write_wide(wide, kwh)
    write_long(long, kwh)
    parquet = tmp_path / "long.parquet"
    pq.write_table(pa.table({"id": [c for c in kwh for _ in MONTHS],
                             "date": [m for _ in kwh for m in MONTHS],
                             "kwh": [v for c in kwh for v in kwh[c]]}), parquet)
    got = {}
    for name, src in (("wide", wide), ("long", long), ("parquet", parquet)):
        out = tmp_path / f"{name}.out"
        result = screen_file(src, out)
        assert (result.unit, result.days, result.rows) == ("month", 24, 60)
        got[name] = scores(out)
    assert got["wide"] == got["long"] == got["parquet"]
    assert max(got["wide"], key=lambda c: float(got["wide"][c])) == "K0000"


def test_a_reference_date_keeps_its_own_month_and_later_out_of_the_score(
        tmp_path: Path) -> None:
    """An inspection's month (when the meter was found and fixed) must not feed the
    score of the customer inspected: changing it, or anything after, changes nothing."""
    kwh, tariff, truth = monthly(150)
    attrs = tmp_path / "customers.csv"
    inspected = {c: MONTHS[12 + i % 12] for i, c in enumerate(kwh)}
    write_table(attrs, ["id", "tariff", "inspected"],
                [[c, tariff[c], inspected[c].isoformat()] for c in kwh])
    labels = write_table(tmp_path / "labels.csv", ["id", "label"],
                         [[c, truth[c]] for c in kwh])
    before, after = tmp_path / "before.csv", tmp_path / "after.csv"
    write_long(before, kwh)
    changed = {c: [v if m < inspected[c] else 0.0 for m, v in zip(MONTHS, values, strict=True)]
               for c, values in kwh.items()}
    write_long(after, changed)
    runs = []
    for src in (before, after):
        out = tmp_path / f"{src.stem}.out"
        result = screen_file(src, out, labels=labels, attributes=attrs, as_of="inspected")
        assert result.as_of == 150 and result.attributes == ["tariff"]
        runs.append(scores(out))
    assert runs[0] == runs[1]


def test_attributes_are_features_and_the_figures_come_with_a_naive_model(
        tmp_path: Path) -> None:
    """Theft here lives in one tariff class: the consumption alone carries nothing, the
    attribute everything, and the CLI prints both the screen's and the naive model's
    AUC and inspection-budget precision, with the setting nested CV chose."""
    kwh, tariff, truth = monthly(300)
    data = tmp_path / "monthly.csv"
    write_wide(data, kwh)
    attrs = write_table(tmp_path / "customers.csv", ["id", "tariff"],
                        [[c, tariff[c]] for c in kwh])
    labels = write_table(tmp_path / "labels.csv", ["id", "label"],
                         [[c, truth[c]] for c in kwh])
    without = screen_file(data, None, labels=labels)
    assert without.cv_auc is not None and without.cv_auc < 0.7
    ran = CliRunner().invoke(main, ["screen", str(data), "--labels", str(labels),
                                    "--attributes", str(attrs)])
    assert ran.exit_code == 0, ran.output
    assert "300 customers × 24 months" in ran.output
    assert "attributes used: tariff" in ran.output
    for words in ("naive: boosting on the raw columns + attributes", "rules alone",
                  "thieves in top 5 %", "screen / naive", "chosen by nested cross-validation"):
        assert words in ran.output
    with_attrs = screen_file(data, None, labels=labels, attributes=attrs)
    assert with_attrs.screen is not None and with_attrs.screen.auc > 0.85
    # The budget goes to the rural class, where 4 in 5 steal (27 % overall).
    assert with_attrs.screen.top5 >= 0.7
    assert with_attrs.chosen in ("gbm-fast", "gbm-regularised", "gbm-shallow")


def test_a_26_day_window_screens_end_to_end(tmp_path: Path) -> None:
    """26 days: no year, no season, barely a month; the features that need more are
    missing, not wrong, and the thieves (a cut in the last week) still rank first."""
    rng = np.random.default_rng(4)
    days = [date(2017, 3, 1) + timedelta(days=k) for k in range(26)]
    data = tmp_path / "short.csv"
    truth = {}
    with data.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *[d.isoformat() for d in days]])
        for i in range(240):
            cid, thief = f"S{i:03d}", i % 4 == 0
            x = rng.uniform(5, 20) * rng.lognormal(0, 0.2, 26)
            if thief:
                x[-8:] *= rng.uniform(0.1, 0.4)
            truth[cid] = int(thief)
            w.writerow([cid, *np.round(x, 2)])
    labels = write_table(tmp_path / "labels.csv", ["id", "label"],
                         [[c, y] for c, y in truth.items()])
    result = screen_file(data, tmp_path / "out.csv", labels=labels)
    assert (result.unit, result.days) == ("day", 26)
    assert result.screen is not None and result.screen.auc > 0.9
    assert result.naive is not None and result.rules is not None


def test_a_long_file_counts_repeats_and_refuses_two_values_for_one_month(
        tmp_path: Path) -> None:
    rows: list[list[object]] = [[c, m.isoformat(), 10] for c in ("c1", "c2")
                                for m in MONTHS[:12]]
    rows.append(["c1", "2016-02-01", 12])
    result = screen_file(write_table(tmp_path / "a.csv", ["id", "date", "kwh"], rows), None)
    assert (result.unit, result.duplicates) == ("month", 1)
    rows[-1][1] = "2016-02-15"
    with pytest.raises(ScreenError, match="same month"):
        screen_file(write_table(tmp_path / "b.csv", ["id", "date", "kwh"], rows), None)


def test_an_as_of_column_that_is_not_there_is_a_clear_error(tmp_path: Path) -> None:
    kwh, _, _ = monthly(10)
    data = tmp_path / "m.csv"
    write_wide(data, kwh)
    with pytest.raises(ScreenError, match="no column of that name"):
        screen_file(data, None, as_of="inspected")
