from __future__ import annotations

import numpy as np
import pytest

from collector.config.thresholds import Thresholds
from collector.flags import detect
from collector.phasors.fit import PHASE_ANGLE

T = Thresholds()


def day_profile(days: int = 35, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    hours = (np.arange(96) + 0.5) / 4
    shape = 0.3 + 1.8 * np.exp(-0.5 * ((hours - 19.5) / 1.8) ** 2) + 0.8 * np.exp(
        -0.5 * ((hours - 7.5) / 1.2) ** 2)
    return shape[None, :] / 4 * rng.normal(1, 0.05, (days, 1)) * rng.uniform(0.9, 1.1, (days, 96))


def test_gaps_report_every_missing_interval_and_the_longest_run() -> None:
    kwh = np.ones(20)
    kwh[[3, 4, 5, 12]] = np.nan
    (f,) = detect.gaps(kwh)
    assert (f.kind, f.start, f.end) == ("missed_reads", 3, 12)
    assert f.evidence == {"missing_intervals": 4, "gaps": 2, "longest": 3}


def test_a_register_that_stops_while_current_flows_is_stopped() -> None:
    kwh = np.concatenate([np.full(10, 0.3), np.zeros(60)])
    amps = np.full((70, 3), np.nan)
    amps[:, 0] = 4.0
    (f,) = detect.stopped(kwh, amps, T, 1)
    assert (f.kind, f.start, f.end) == ("stopped", 10, 69)


def test_zero_advance_with_no_current_is_not_a_stopped_meter() -> None:
    assert detect.stopped(np.zeros(60), np.zeros((60, 3)), T, 1) == []


def test_backward_register_and_runaway_advance_are_found() -> None:
    register = np.array([100.0, 100.5, 101.0, 20.0, 20.4])
    assert detect.backward(register, T)[0].evidence["largest_drop_kwh"] == 81.0
    kwh = np.array([0.2, 0.3, 9.0, 0.2])
    assert detect.runaway(kwh, 1, T)[0].start == 2
    assert detect.runaway(kwh, 3, T) == []  # three-phase meters are rated 3× higher


def test_one_phase_with_negative_power_while_the_others_import_is_flagged() -> None:
    watts = np.tile([0.8, 0.7, -0.75], (8, 1))
    (f,) = detect.negative_phase_power(watts, False, T)
    assert f.evidence["phase"] == "C"
    assert detect.negative_phase_power(watts, True, T) == []  # exporters are exempt


@pytest.mark.parametrize(
    ("perm", "signs", "name"),
    [
        ((0, 1, 2), (1, 1, -1), "phase C current reversed"),
        ((1, 0, 2), (1, 1, 1), "phase A and B currents swapped"),
        ((0, 2, 1), (1, -1, 1), "phase B and C currents swapped; phase B current reversed"),
    ],
)
def test_phasor_diagnosis_names_the_wiring(perm: tuple[int, int, int],
                                           signs: tuple[int, int, int], name: str) -> None:
    load = 25.0
    angles = np.array([(PHASE_ANGLE[k] - PHASE_ANGLE[perm[k]]
                        + (180 if signs[k] < 0 else 0) + load) % 360 for k in range(3)])
    observed = np.tile(angles, (8, 1)) + np.random.default_rng(3).normal(0, 2, (8, 3))
    (f,) = detect.phasor_diagnosis(observed, np.full((8, 3), 5.0), False, T)
    assert f.evidence["diagnosis"] == name
    assert f.evidence["load_angle_deg"] == pytest.approx(load, abs=3)


def test_correctly_wired_meter_gets_no_wiring_flag() -> None:
    angles = np.full((8, 3), 20.0)
    assert detect.phasor_diagnosis(angles, np.full((8, 3), 5.0), False, T) == []


def test_a_flattened_day_and_a_reversed_day_are_theft_like() -> None:
    honest = day_profile()
    flat = honest.copy()
    flat[-7:] = flat[-7:].mean(axis=1, keepdims=True)
    reversed_days = honest.copy()
    reversed_days[-7:] = reversed_days[-7:, ::-1]
    score_honest, _ = detect.theft_score(detect.theft_signals(honest, T), T)
    score_flat, why_flat = detect.theft_score(detect.theft_signals(flat, T), T)
    score_rev, why_rev = detect.theft_score(detect.theft_signals(reversed_days, T), T)
    assert score_honest < T.theft_score <= min(score_flat, score_rev)
    assert "flat_profile" in why_flat and "reshaped_profile" in why_rev


def test_an_exporter_is_not_suspected_for_importing_nothing_at_noon() -> None:
    pv = day_profile()
    pv[:, 36:64] = 0.0
    score, _ = detect.theft_score(detect.theft_signals(pv, T, exporter=True), T)
    assert score < T.theft_score


def test_line_loss_flags_high_and_negative_areas_with_the_rates() -> None:
    supplied = np.full(10, 1000.0)
    (high,) = detect.line_loss(supplied, np.full(10, 900.0), T)
    assert high.kind == "high_line_loss" and high.evidence["loss_rate_recent"] == 0.1
    (neg,) = detect.line_loss(supplied, np.full(10, 1030.0), T)
    assert neg.kind == "negative_line_loss"
    assert detect.line_loss(supplied, np.full(10, 960.0), T) == []


def test_a_thief_correlates_negatively_with_the_area_loss() -> None:
    loss = np.array([10, 10, 11, 30, 31, 32, 30.0])
    thief = np.array([20, 21, 20, 2, 1, 2, 1.0])
    honest = np.array([15, 17, 14, 16, 15, 16, 15.0])
    corr = detect.loss_correlation(np.stack([thief, honest]), loss)
    assert corr[0] < -0.9 < corr[1]
