"""`collector screen --labels`: learned from inspections, scored out of fold, the
figures printed; shuffled labels fall to chance; bad labels are refused with exit 2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from collector.cli.main import main
from collector.flags.screening import screen_file
from simulator.daily_households import DailySpec, write_export

DAYS = 240


def population(path: Path, labels: Path, n: int = 600, seed: int = 5) -> dict[str, int]:
    return write_export(DailySpec(customers=n, days=DAYS, seed=seed), path, labels)


def test_learned_scores_beat_the_rules_and_are_out_of_fold(tmp_path: Path) -> None:
    data, labels = tmp_path / "daily.csv", tmp_path / "inspections.csv"
    population(data, labels)
    out = tmp_path / "scores.csv"
    result = screen_file(data, out, labels=labels)
    assert result.learned and result.labelled == 480
    assert result.cv_auc is not None and result.cv_auc >= 0.85
    assert result.rules_auc is not None and result.cv_auc > result.rules_auc
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 600 and all(r["reasons"] for r in rows[:20])
    known = {r.split(";")[0] for r in (row["reasons"] for row in rows[:50]) if r}
    assert known and known <= set(result.features)


def test_shuffled_labels_fall_to_chance(tmp_path: Path) -> None:
    """The out-of-fold guarantee: no customer is scored by a model that saw its label,
    so labels that carry no signal give an AUC near 0.5, not an overfit near 1."""
    data, labels = tmp_path / "daily.csv", tmp_path / "inspections.csv"
    population(data, labels)
    rows = list(csv.reader(labels.open()))
    ys = [r[1] for r in rows[1:]]
    np.random.default_rng(0).shuffle(ys)
    shuffled = tmp_path / "shuffled.csv"
    with shuffled.open("w", newline="") as f:
        csv.writer(f).writerows([rows[0], *([r[0], y] for r, y in zip(rows[1:], ys,
                                                                    strict=True))])
    result = screen_file(data, None, labels=shuffled)
    assert result.cv_auc is not None and abs(result.cv_auc - 0.5) < 0.1


def test_a_saved_model_scores_a_new_file_and_the_cli_prints_the_figures(
        tmp_path: Path) -> None:
    data, labels = tmp_path / "daily.csv", tmp_path / "inspections.csv"
    population(data, labels)
    model = tmp_path / "model.pkl"
    ran = CliRunner().invoke(main, ["screen", str(data), "--labels", str(labels),
                                    "--save-model", str(model), "--out",
                                    str(tmp_path / "a.csv")])
    assert ran.exit_code == 0, ran.output
    assert "cross-validated (out of fold): AUC" in ran.output and "MAP@100" in ran.output
    later, later_labels = tmp_path / "later.csv", tmp_path / "later-labels.csv"
    population(later, later_labels, n=200, seed=9)
    again = screen_file(later, None, model_in=model, labels=later_labels)
    assert again.cv_auc is not None and again.cv_auc >= 0.8  # a model that generalises


@pytest.mark.parametrize(("rows", "words"), [
    ([["id", "label"], ["C0001", "1"], ["nobody", "0"]], "not in the consumption file"),
    ([["id", "label"], ["C0001", "yes"]], "is not 0"),
    ([["id", "label"], ["C0001", "1"], ["C0002", "1"]], "every label is theft"),
    ([["id", "label"], ["C0001", "1"], ["C0001", "0"], ["C0002", "0"]], "both 0 and 1"),
])
def test_bad_labels_are_refused_with_exit_2_and_nothing_written(
        tmp_path: Path, rows: list[list[str]], words: str) -> None:
    data, _ = tmp_path / "daily.csv", tmp_path / "unused.csv"
    population(data, tmp_path / "unused.csv", n=40)
    labels = tmp_path / "bad.csv"
    with labels.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    out = tmp_path / "scores.csv"
    ran = CliRunner().invoke(main, ["screen", str(data), "--labels", str(labels), "--out",
                                    str(out)])
    assert ran.exit_code == 2 and words in ran.output, ran.output
    assert not out.exists()
