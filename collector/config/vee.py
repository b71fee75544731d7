"""Every VEE rule's setting, with its default; collector.toml [vee] overrides them.

Defaults follow ../shared/docs/detection.md where a published rule exists (California:
linear interpolation for gaps up to 2 h, like days beyond; the ±1 % or 0.1 kWh sum
check of the issue) and are conservative elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date

from collector.config.sections import Section


@dataclass(frozen=True, slots=True)
class VeeSettings:
    enabled: bool = True
    interval_minutes: int = 15
    """The register interval VEE expects, where a meter's own reads do not show it."""
    linear_max_minutes: int = 120
    """Gaps up to this long are filled by linear interpolation (California: 2 h)."""
    like_days: int = 4
    """How many recent like days (same day type) make a like-day profile."""
    lookback_days: int = 28
    """How far back like days are searched, and how much history the spike rule sees."""
    sum_tolerance_pct: float = 1.0
    sum_tolerance_kwh: float = 0.1
    """Sum check: |Σ intervals − register delta| within the larger of the two."""
    max_kw_per_phase: float = 15.0
    """Spike: an interval above this × phases × interval length is beyond the rating."""
    spike_factor: float = 5.0
    """Spike: an interval above this × the meter's own 95th percentile of like history."""
    spike_min_kwh: float = 0.5
    """...and above this, so a near-idle meter's kettle is not a spike."""
    zero_run_intervals: int = 16
    """Zero run: this many zero intervals in a row (4 h at 15 min) on a live meter."""
    voltage_present_v: float = 100.0
    backward_kwh: float = 0.005
    """Negative: a register falling by more than this (above register rounding)."""
    register_max: float = 999999.99
    """A register at the top of its range that restarts near zero has rolled over."""
    register_resolution: float = 0.01
    clock_tolerance_s: float = 60.0
    """Time check: a meter clock further off than this makes its day's intervals suspect."""
    replacement_drop_ratio: float = 0.01
    """Unrecorded replacement: the register falls to below this fraction of its value."""
    holidays: tuple[date, ...] = ()
    """Local dates that count as weekend days for like-day profiles."""

    @classmethod
    def numeric_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name not in ("enabled", "holidays")]


VEE_KEYS = {
    "enabled": "enabled = true",
    "holidays": 'holidays = ["2026-10-01", "2026-10-02"]',
    **{name: f"{name} = {getattr(VeeSettings(), name)}" for name in VeeSettings.numeric_names()},
}


def parse_vee(s: Section) -> VeeSettings:
    values = s.numbers(VeeSettings(), VeeSettings.numeric_names(), zero_ok=False,
                       exempt=("backward_kwh",))
    return VeeSettings(s.get("enabled", bool, True), holidays=s.dates("holidays"), **values)
