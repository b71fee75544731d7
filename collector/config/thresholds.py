"""Every threshold a rule uses, with its default; collector.toml [flags] overrides them.

Defaults follow ../shared/docs/detection.md where a published figure exists (the 6 % and
−1 % line-loss bounds, the 78 % voltage-loss level) and are conservative elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class Thresholds:
    min_current_a: float = 0.5
    """Below this a phase is treated as carrying no load."""
    stopped_intervals: int = 48
    """Consecutive intervals with no advance while current flows (12 h at 15 min): longer
    than any daily off-window, which is theft-like rather than a stopped register."""
    rated_kw: float = 15.0
    """Single-phase ceiling for runaway (three-phase meters get 3×)."""
    runaway_factor: float = 1.2
    backward_kwh: float = 0.05
    tariff_tolerance_kwh: float = 0.1
    clock_drift_s: float = 60.0
    voltage_loss_ratio: float = 0.78
    current_loss_ratio: float = 0.05
    imbalance_ratio: float = 0.5
    """(max − min) / max of the phase currents."""
    sustain_snapshots: int = 4
    """Instantaneous conditions must hold in this many snapshots in a row (a day at 4/day)."""
    reverse_growth_kwh: float = 0.5
    reverse_power_kw: float = 0.05
    drop_ratio: float = 0.7
    """Recent daily consumption below this fraction of the same meter's baseline, for two
    recent windows in a row. On real honest consumption a week below 0.85 came in 18 %
    of windows (holidays, the change of season); two weeks below 0.7 in 3 %
    (bench.real_household)."""
    baseline_days: int = 21
    recent_days: int = 7
    zero_run_intervals: int = 8
    """A run of exact-zero intervals this long, in a meter that otherwise consumes."""
    flat_cv: float = 0.05
    """Coefficient of variation of a day's profile below this: a flat, constant day."""
    shape_corr: float = -0.2
    """Correlation of the recent week's mean day with the baseline's (by the hour) below
    this: a reshaped profile. A real household's days follow its typical day loosely and
    drift with the season (each day's correlation below 0.6 came in 70 % of honest
    windows); a moved or reversed profile falls well below zero."""
    neutral_mismatch: float = 0.2
    high_loss_rate: float = 0.06
    negative_loss_rate: float = -0.01
    theft_score: float = 0.5

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]
