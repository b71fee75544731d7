"""[billing] and [prepaid] of collector.toml: reading segments, review factors and the
prepaid thresholds, each with the default a utility would start from
(../shared/docs/vee.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path

from collector.config.sections import HHMM, Section, parse_duration


@dataclass(frozen=True, slots=True)
class BillingSettings:
    tariff_dirs: tuple[str, ...] = ()
    """Directories of tariff TOML files, beside the shipped examples."""
    segments: dict[str, int] = field(default_factory=dict)
    """Reading segment (抄表段) → its reading day (抄表例日), 1–28."""
    default_reading_day: int = 1
    """The reading day of a service point whose segment is not listed."""
    review_high: float = 2.0
    """Review: hold a bill above this × the service point's own history."""
    review_low: float = 0.5
    review_months: int = 12
    """Review: how many trailing cycles make the history (at least 3 are needed)."""
    estimated_share_max: float = 0.5
    """Review: hold a bill when more than this share of its intervals are estimates."""
    tou_tolerance_pct: float = 1.0
    tou_tolerance_kwh: float = 0.1
    """TOU registers against intervals summed over the calendar: within the larger."""

    @classmethod
    def numeric_names(cls) -> list[str]:
        return [f.name for f in fields(cls)
                if f.name not in ("tariff_dirs", "segments")]


@dataclass(frozen=True, slots=True)
class PrepaidSettings:
    enabled: bool = True
    alert_days: float = 7.0
    """Alert when the balance covers fewer than this many days of average cost."""
    disconnect_below: float = 0.0
    """Trip when the balance has stayed at or below this past the grace period."""
    grace: timedelta = timedelta(hours=24)
    protected_from: timedelta = timedelta(hours=20)
    protected_to: timedelta = timedelta(hours=8)
    """No trip between these local times (nights): a customer is not cut off in the dark."""
    protected_weekends: bool = True
    holidays: tuple[date, ...] = ()
    operator: str = "00000001"
    """DL/T 645 operator code sent with remote-control commands (8 digits)."""
    password_env: str = "COLLECTOR_METER_PASSWORD"
    """Environment variable holding the meter's control password (8 hex digits:
    level + 3 bytes); without it the head-end never sends a trip."""


BILLING_KEYS = {
    "tariff_dirs": 'tariff_dirs = ["/etc/meter-collector/tariffs"]',
    "segments": 'segments = { S01 = 1, S25 = 25 }  # reading segment = reading day',
    **{name: f"{name} = {getattr(BillingSettings(), name)}"
       for name in BillingSettings.numeric_names()},
}
PREPAID_KEYS = {
    "enabled": "enabled = true",
    "alert_days": "alert_days = 7.0",
    "disconnect_below": "disconnect_below = 0.0",
    "grace": 'grace = "24h"',
    "protected_hours": 'protected_hours = "20:00-08:00"  # never trip in this local window',
    "protected_weekends": "protected_weekends = true",
    "holidays": 'holidays = ["2026-10-01"]',
    "operator": 'operator = "00000001"',
    "password_env": 'password_env = "COLLECTOR_METER_PASSWORD"',
}


def parse_billing(s: Section) -> BillingSettings:
    dirs = s.get("tariff_dirs", list, [])
    if not all(isinstance(d, str) for d in dirs):
        raise s.error("tariff_dirs", "must list directories as strings")
    for d in dirs:
        if not Path(d).is_dir():
            raise s.error("tariff_dirs", f"{d} is not a directory")
    segments = s.get("segments", dict, {})
    for name, day in segments.items():
        if isinstance(day, bool) or not isinstance(day, int) or not 1 <= day <= 28:
            raise s.error("segments", f"segment {name!r}: the reading day must be 1–28 "
                          f"(every month has it), got {day!r}")
    values = s.numbers(BillingSettings(), BillingSettings.numeric_names(), zero_ok=False)
    if not 1 <= values["default_reading_day"] <= 28:
        raise s.error("default_reading_day", "must be 1–28")
    if values["review_low"] >= 1 or values["review_high"] <= 1:
        raise s.error("review_low" if values["review_low"] >= 1 else "review_high",
                      "review_low must be below 1 and review_high above 1")
    if values["review_months"] < 3:
        raise s.error("review_months", "must be at least 3 (the trailing history)")
    return BillingSettings(tuple(dirs), dict(segments), **values)


def parse_prepaid(s: Section) -> PrepaidSettings:
    defaults = PrepaidSettings()
    grace = parse_duration(s.get("grace", (str, int), "24h"))
    if grace is None:
        raise s.error("grace", "is not a duration like 24h or 90m")
    window = s.get("protected_hours", str, "20:00-08:00")
    ends = [HHMM.match(part.strip()) for part in window.split("-")]
    if len(ends) != 2 or not all(ends):
        raise s.error("protected_hours", f"{window!r} is not HH:MM-HH:MM")
    start, end = (timedelta(hours=int(m.group(1)), minutes=int(m.group(2)))
                  for m in ends if m is not None)
    holidays = s.dates("holidays")
    operator = s.get("operator", str, defaults.operator)
    if not re.fullmatch(r"\d{8}", operator):
        raise s.error("operator", f"{operator!r} must be 8 digits")
    alert_days = s.get("alert_days", (int, float), defaults.alert_days)
    if alert_days <= 0:
        raise s.error("alert_days", "must be positive")
    return PrepaidSettings(
        s.get("enabled", bool, True), float(alert_days),
        float(s.get("disconnect_below", (int, float), defaults.disconnect_below)), grace,
        start, end, s.get("protected_weekends", bool, True), holidays, operator,
        s.get("password_env", str, defaults.password_env))
