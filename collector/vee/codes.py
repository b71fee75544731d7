"""The method and reason codes VEE writes, in NEM12's numbering
(../shared/docs/detection.md), so that an export carries them unchanged."""

from __future__ import annotations

LINEAR = "17"
"""Linear interpolation between the neighbouring actual register reads."""
LIKE_DAY = "15"
"""Average of like days, where no later register read bounds the gap (a forward estimate)."""
SCALED = "24"
"""Like-day shape scaled so that the intervals sum exactly to the bracketing register delta."""

METHODS = {LINEAR: "linear interpolation", LIKE_DAY: "average like day",
           SCALED: "like day scaled to the register (data scaling)",
           "14": "retrospective like day", "18": "alternate meter", "19": "zero",
           "23": "previous year", "25": "average daily load"}

REASONS = {
    "0": "free text (see note)",
    "1": "meter or equipment changed",
    "39": "reverse energy observed",
    "63": "equipment tampered",
    "68": "zero consumption",
    "73": "low consumption",
    "74": "high consumption",
    "79": "power outage",
    "86": "clock error",
    "89": "time reset",
    "96": "data out of limits",
}

GAP, SUM, SPIKE, ZERO, NEGATIVE, TIME, REPLACEMENT = (
    "gap", "sum_check", "spike", "zero_run", "negative", "time_check", "replacement")
RULES = (GAP, SUM, SPIKE, ZERO, NEGATIVE, TIME, REPLACEMENT)
"""Every rule, in the order a report lists them."""

ACTOR = "vee:estimate"
