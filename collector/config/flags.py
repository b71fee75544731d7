"""[flags] of collector.toml: when the flag passes run, and their thresholds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from collector.config.sections import HHMM, Section
from collector.config.thresholds import Thresholds


@dataclass(frozen=True, slots=True)
class FlagSettings:
    enabled: bool = True
    auto_time_sync: bool = False
    """Broadcast a time sync on the bus of a DL/T 645 meter found drifting."""
    daily_at: timedelta = timedelta(minutes=30)
    """Local time of the daily pass (theft and line loss over the trailing baseline)."""
    thresholds: Thresholds = field(default_factory=Thresholds)


FLAG_KEYS = {
    "enabled": "enabled = true",
    "auto_time_sync": "auto_time_sync = true",
    "daily_at": 'daily_at = "00:30"',
    **{name: f"{name} = {getattr(Thresholds(), name)}" for name in Thresholds.names()},
}


def parse_flags(s: Section) -> FlagSettings:
    at_raw = s.get("daily_at", str, "00:30")
    m = HHMM.match(at_raw)
    if not m:
        raise s.error("daily_at", f"{at_raw!r} is not a local time HH:MM")
    values = s.numbers(Thresholds(), Thresholds.names(), zero_ok=True,
                       exempt=("negative_loss_rate", "shape_corr"))
    if not -1.0 <= values["shape_corr"] <= 1.0:
        raise s.error("shape_corr", f"a correlation runs from -1 to 1, got {values['shape_corr']}")
    return FlagSettings(s.get("enabled", bool, True), s.get("auto_time_sync", bool, False),
                        timedelta(hours=int(m.group(1)), minutes=int(m.group(2))),
                        Thresholds(**values))
