"""The rules, as pure functions over one meter's (or one area's) arrays.

Nothing here reads storage or knows about time zones: the engine feeds arrays in and
turns the index windows of each Finding back into times. That keeps every rule testable
on a handful of numbers and runnable over a 2,000-meter population in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collector.config.thresholds import Thresholds
from collector.phasors.fit import circular_mean, fit_wiring

F64 = NDArray[np.float64]
PHASES = "ABC"


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    severity: str
    start: int
    end: int
    """Index window [start, end] in the series the rule was given (interval, day or snapshot)."""
    evidence: dict[str, Any] = field(default_factory=dict)


def _runs(mask: NDArray[np.bool_]) -> list[tuple[int, int]]:
    """(start, end-inclusive) of every run of True."""
    if not mask.any():
        return []
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def _sustained(mask: NDArray[np.bool_], n: int) -> tuple[int, int] | None:
    long = [(a, b) for a, b in _runs(mask) if b - a + 1 >= n]
    return (long[0][0], long[-1][1]) if long else None


# --- missed reads and meter faults --------------------------------------------------------


def gaps(kwh: F64) -> list[Finding]:
    runs = _runs(np.isnan(kwh))
    if not runs:
        return []
    missing = sum(b - a + 1 for a, b in runs)
    return [Finding("missed_reads", "warning", runs[0][0], runs[-1][1],
                    {"missing_intervals": missing, "gaps": len(runs),
                     "longest": max(b - a + 1 for a, b in runs)})]


def stopped(kwh: F64, amps: F64, t: Thresholds, per_snapshot: int) -> list[Finding]:
    """No energy advance for stopped_intervals in a row while a phase carries current."""
    zero = np.nan_to_num(kwh, nan=1.0) <= 0.0
    for a, b in _runs(zero):
        if b - a + 1 < t.stopped_intervals:
            continue
        window = np.abs(amps[a // per_snapshot : b // per_snapshot + 1])
        if window.ndim > 1:  # a single-phase meter has no B and C: judge what was read
            window = window[np.isfinite(window).any(axis=-1)]
            snaps = np.nanmax(window, axis=-1) if window.size else window
        else:
            snaps = window[np.isfinite(window)]
        if snaps.size and (snaps > t.min_current_a).mean() > 0.5:
            return [Finding("stopped", "critical", a, b,
                            {"intervals_without_advance": b - a + 1,
                             "median_current_a": round(float(np.median(snaps)), 3)})]
    return []


def runaway(kwh: F64, phases: int, t: Thresholds, interval_h: float = 0.25) -> list[Finding]:
    ceiling = t.rated_kw * (3 if phases == 3 else 1) * interval_h * t.runaway_factor
    over = kwh > ceiling  # NaN compares False: a missing interval is not over
    if not over.any():
        return []
    idx = np.flatnonzero(over)
    return [Finding("runaway", "critical", int(idx[0]), int(idx[-1]),
                    {"max_interval_kwh": round(float(np.nanmax(kwh)), 3),
                     "ceiling_kwh": round(ceiling, 3), "intervals_over": int(over.sum())})]


def backward(register: F64, t: Thresholds) -> list[Finding]:
    step = np.diff(register)
    back = step < -t.backward_kwh
    if not back.any():
        return []
    idx = np.flatnonzero(back)
    return [Finding("backward", "critical", int(idx[0]) + 1, int(idx[-1]) + 1,
                    {"largest_drop_kwh": round(float(-step.min()), 3), "drops": int(back.sum())})]


def tariff_mismatch(delta: F64, t: Thresholds) -> list[Finding]:
    bad = np.abs(delta) > t.tariff_tolerance_kwh
    if not bad.any():
        return []
    idx = np.flatnonzero(bad)
    worst = float(delta[np.abs(delta).argmax()])
    return [Finding("tariff_mismatch", "warning", int(idx[0]), int(idx[-1]),
                    {"max_total_minus_tariffs_kwh": round(worst, 3)})]


def clock_drift(offsets: F64, t: Thresholds) -> list[Finding]:
    bad = np.abs(offsets) > t.clock_drift_s
    if not bad.any():
        return []
    idx = np.flatnonzero(bad)
    return [Finding("clock_drift", "warning", int(idx[0]), int(idx[-1]),
                    {"max_offset_s": round(float(offsets[np.abs(offsets).argmax()]), 1),
                     "time_sync_advised": True})]


def voltage_loss(volts: F64, amps: F64, t: Thresholds, nominal: float = 220.0) -> list[Finding]:
    out = []
    for k in range(volts.shape[1]):
        if not (volts[:, k] > 1).any() and not (np.abs(amps[:, k]) > t.min_current_a).any():
            continue
        flowing = np.abs(amps[:, k]) > t.min_current_a
        lost = (volts[:, k] < t.voltage_loss_ratio * nominal) & flowing
        window = _sustained(lost, t.sustain_snapshots)
        if window:
            out.append(Finding("voltage_loss", "critical", *window,
                               {"phase": PHASES[k],
                                "min_voltage_v": round(float(volts[lost, k].min()), 1)}))
    return out


def current_loss(volts: F64, amps: F64, t: Thresholds) -> list[Finding]:
    mag = np.abs(amps)
    out = []
    for k in range(3):
        others = np.delete(mag, k, axis=1)
        lost = ((mag[:, k] < t.current_loss_ratio * others.mean(axis=1))
                & (others.min(axis=1) > t.min_current_a) & (volts[:, k] > 100))
        window = _sustained(lost, t.sustain_snapshots)
        if window:
            out.append(Finding("current_loss", "critical", *window,
                               {"phase": PHASES[k],
                                "others_mean_a": round(float(others[lost].mean()), 2)}))
    return out


def imbalance(amps: F64, t: Thresholds) -> list[Finding]:
    """Judged on snapshots where the meter carries real load: at night a lightly loaded
    phase says nothing about balance. A phase with no current at all is current_loss."""
    mag = np.abs(amps)
    loaded = np.flatnonzero((mag.max(axis=1) > 4 * t.min_current_a)
                            & (mag.min(axis=1) > t.current_loss_ratio * mag.max(axis=1)))
    if loaded.size == 0:
        return []
    m = mag[loaded]
    spread = (m.max(axis=1) - m.min(axis=1)) / m.max(axis=1)
    window = _sustained(spread > t.imbalance_ratio, t.sustain_snapshots)
    if not window:
        return []
    return [Finding("current_imbalance", "warning", int(loaded[window[0]]),
                    int(loaded[window[1]]), {"max_spread": round(float(spread.max()), 3)})]


# --- wiring -------------------------------------------------------------------------------


def reverse_growth(export_kwh: F64, exporter: bool, t: Thresholds) -> list[Finding]:
    if exporter:
        return []
    total = float(np.nansum(export_kwh))
    if total <= t.reverse_growth_kwh:
        return []
    idx = np.flatnonzero(np.nan_to_num(export_kwh) > 0)
    return [Finding("reverse_energy", "critical", int(idx[0]), int(idx[-1]),
                    {"reverse_kwh": round(total, 3), "reason_code": 39})]


def negative_phase_power(watts: F64, exporter: bool, t: Thresholds) -> list[Finding]:
    if exporter:
        return []
    out = []
    for k in range(3):
        others = np.delete(watts, k, axis=1)
        neg = (watts[:, k] < -t.reverse_power_kw) & (others > t.reverse_power_kw).all(axis=1)
        window = _sustained(neg, t.sustain_snapshots)
        if window:
            out.append(Finding("negative_phase_power", "critical", *window,
                               {"phase": PHASES[k],
                                "min_kw": round(float(watts[neg, k].min()), 3)}))
    return out


def phasor_diagnosis(angle: F64, amps: F64, exporter: bool, t: Thresholds) -> list[Finding]:
    """A wiring flag where the fit of the recent loaded snapshots names a fault
    (collector.phasors.fit: the same fit `collector wiring` uses in the field)."""
    loaded = (np.abs(amps) > t.min_current_a).all(axis=1)
    if exporter or loaded.sum() < t.sustain_snapshots:
        return []
    recent = angle[loaded][-max(t.sustain_snapshots, 4):]
    observed = circular_mean(recent)
    fit = fit_wiring(observed)
    if fit is None or fit.error_deg > 30 or fit.correct:
        return []
    return [Finding("wiring", "critical", int(np.flatnonzero(loaded)[0]),
                    int(np.flatnonzero(loaded)[-1]),
                    {"diagnosis": fit.description, "load_angle_deg": fit.load_deg,
                     "fit_error_deg": fit.error_deg,
                     "angles_deg": [round(float(a), 1) for a in observed]})]


# --- theft --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TheftSignals:
    drop_ratio: float
    longest_zero_run: int
    flat_cv: float
    shape_corr: float
    neutral_mismatch: float

    def strengths(self, t: Thresholds) -> dict[str, float]:
        """Each signal on a 0..1 scale where 0.5 sits exactly on its rule's threshold."""
        return {
            "consumption_drop": _clip(0.5 + (t.drop_ratio - self.drop_ratio) * 2.5),
            "zero_runs": _clip(self.longest_zero_run / (2 * t.zero_run_intervals)),
            "flat_profile": _clip(0.5 * t.flat_cv / max(self.flat_cv, 1e-9)),
            "reshaped_profile": _clip(0.5 + (t.shape_corr - self.shape_corr)),
            "neutral_mismatch": _clip(self.neutral_mismatch / (2 * t.neutral_mismatch)),
        }


def _clip(x: float) -> float:
    return float(min(1.0, max(0.0, x)))


def theft_signals(daily_profile: F64, t: Thresholds, neutral: F64 | None = None,
                  phase_amps: F64 | None = None, exporter: bool = False) -> TheftSignals:
    """daily_profile: days × slots of reported consumption (NaN = missing).

    For an exporter (PV) the import profile legitimately drops to zero while the sun
    shines and changes shape with the weather, so only the level and the neutral signals
    apply to it."""
    days = daily_profile.shape[0]
    # A drop must hold for two recent windows in a row where the history allows: an
    # honest household away for a week, or a cold week before a mild one, drops as far
    # as a bypass does for one week (measured on real consumption, bench.real_household).
    held = 2 if days >= 2 * t.recent_days + 7 else 1
    base = daily_profile[: min(t.baseline_days, max(1, days - held * t.recent_days))]
    recent = daily_profile[-t.recent_days:]
    base_total = float(np.nanmean(np.nansum(base, axis=1)))
    recent_total = max(float(np.nanmean(np.nansum(
        daily_profile[days - (k + 1) * t.recent_days: days - k * t.recent_days], axis=1)))
        for k in range(held))
    drop = recent_total / base_total if base_total > 0 else 1.0
    zero = np.nan_to_num(recent, nan=1.0) <= 0.0
    longest = max((b - a + 1 for day in zero for a, b in _runs(day)), default=0)
    if np.nanmax(np.nan_to_num(recent)) <= 0:
        longest = 0  # a wholly dead register is the stopped rule's business
    means = np.nanmean(recent, axis=1)
    with np.errstate(invalid="ignore"):
        ratios = np.nanstd(recent, axis=1) / np.where(means > 0, means, np.nan)
    cv = float(np.nanmedian(ratios)) if np.isfinite(ratios).any() else 1.0
    # The recent week's mean day against the baseline's, by the hour: one real day's
    # quarter-hours follow the household's typical day only loosely (cooking, washing
    # and heating move about), so day-by-day correlation called most honest weeks
    # reshaped; the week's mean keeps a moved or reversed profile plain.
    shape = _corr(_hourly(np.nanmean(recent, axis=0)), _hourly(np.nanmean(base, axis=0)))
    mismatch = 0.0
    if neutral is not None and phase_amps is not None and neutral.size:
        recent_n = neutral[-t.recent_days * 4:]
        recent_p = np.abs(phase_amps[-t.recent_days * 4:])
        flowing = recent_n > t.min_current_a
        if flowing.any():
            mismatch = float(np.median((recent_n[flowing] - recent_p[flowing]) / recent_n[flowing]))
    if exporter:
        longest, cv, shape = 0, 1.0, 1.0
    return TheftSignals(drop, longest, cv if np.isfinite(cv) else 1.0, shape, mismatch)


def _hourly(day: F64) -> F64:
    slots = day.shape[0]
    return day.reshape(24, slots // 24).sum(axis=1) if slots >= 24 and slots % 24 == 0 else day


def _corr(a: F64, b: F64) -> float:
    ok = ~(np.isnan(a) | np.isnan(b))
    if ok.sum() < 8 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return 0.0 if ok.sum() >= 8 else 1.0
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


def theft_score(signals: TheftSignals, t: Thresholds, *, tamper: bool = False,
                wiring: bool = False, loss_corr: float = 0.0) -> tuple[float, list[str]]:
    """One number to rank customers by, with the reasons that produced it."""
    strengths = signals.strengths(t)
    if wiring:
        strengths["wiring_or_reverse_power"] = 1.0
    reasons = [name for name, s in strengths.items() if s >= 0.5]
    score = max(strengths.values())
    if tamper:
        score += 0.3
        reasons.append("tamper_event")
    if loss_corr < -0.3:
        score += 0.2 * min(1.0, -loss_corr)
        reasons.append("consumption_moves_against_area_loss")
    return round(score, 4), reasons


# --- transformer-area line loss ------------------------------------------------------------


def fill_like_slots(daily_profile: F64) -> F64:
    """Missing intervals estimated as the same slot's mean over the meter's other days
    (a like-day substitution), so a gap in the data is not mistaken for energy lost."""
    filled = daily_profile.copy()
    slot_mean = np.nanmean(daily_profile, axis=0) if np.isfinite(daily_profile).any() else 0
    missing = np.isnan(filled)
    filled[missing] = np.broadcast_to(slot_mean, filled.shape)[missing]
    return np.nan_to_num(filled)


def substitute_from(daily: F64, start: int) -> F64:
    """Days from `start` on replaced by the mean of the days before: the estimate the
    balance uses for a meter whose recent data is known bad (a runaway register)."""
    out = daily.copy()
    if 0 < start < len(daily):
        out[start:] = np.mean(daily[:start])
    return out


def line_loss(supplied: F64, billed: F64, t: Thresholds, window: int = 7) -> list[Finding]:
    rate = (supplied - billed) / np.where(supplied > 0, supplied, np.nan)
    recent = float(np.nanmean(rate[-window:]))
    evidence = {"loss_rate_recent": round(recent, 4),
                "daily_loss_rate": [round(float(r), 4) for r in rate[-window:]]}
    if recent >= t.high_loss_rate:
        return [Finding("high_line_loss", "critical", len(rate) - window, len(rate) - 1,
                        evidence)]
    if recent <= t.negative_loss_rate:
        return [Finding("negative_line_loss", "critical", len(rate) - window, len(rate) - 1,
                        {**evidence, "likely": "a customer mapped to the wrong area, or a "
                                                "wrong CT/PT multiplier"})]
    return []


def loss_correlation(customer_daily: F64, area_loss_daily: F64) -> F64:
    """Per customer, the correlation of daily consumption with the area's daily loss: a
    thief's reported consumption falls as the loss rises."""
    c = customer_daily - customer_daily.mean(axis=1, keepdims=True)
    a = area_loss_daily - area_loss_daily.mean()
    denom = np.sqrt((c**2).sum(axis=1) * (a**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        out: F64 = np.where(denom > 0, (c @ a) / denom, 0.0)
    return out
