"""[billing] and [prepaid] of collector.toml: reading segments, review factors and the
prepaid thresholds, each with the default a utility would start from
(../shared/docs/vee.md)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, timedelta


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
