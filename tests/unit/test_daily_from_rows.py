"""Daily consumption from midnight registers, the arithmetic both stores share."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from storage.base import DailyConsumption
from storage.daily import daily_from_rows

BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 10, 24, tzinfo=BERLIN)  # the 25th is a 25-hour day
END = datetime(2026, 10, 27, tzinfo=BERLIN)


def midnight(day: int) -> float:
    return datetime(2026, 10, day, tzinfo=BERLIN).timestamp()


def test_a_day_needs_both_midnights_and_a_later_row_for_an_instant_wins() -> None:
    rows = [
        ("m1", "T1", False, midnight(24), 100.0),
        ("m1", "T1", False, midnight(25), 110.0),
        ("m1", "T1", False, midnight(25), 112.0),        # a later kind replaces it
        ("m1", "T1", False, midnight(25) + 900, 113.0),  # not a midnight: no boundary
        ("m1", "T1", False, midnight(27), 140.0),        # the 26th has no start: no day
        ("m2", "T1", False, midnight(25), 5.0),
        ("m2", "T1", False, midnight(26), 7.5),
    ]
    assert daily_from_rows(rows, START, END, BERLIN, "meter") == [
        DailyConsumption("m1", "2026-10-24", 12.0),
        DailyConsumption("m2", "2026-10-25", 2.5),
    ]


def test_an_area_sums_its_customers_but_not_its_own_meter_nor_meters_without_one() -> None:
    rows = [(m, area, own, midnight(d), v) for m, area, own, d, v in (
        ("c1", "T1", False, 25, 10.0), ("c1", "T1", False, 26, 13.0),
        ("c2", "T1", False, 25, 1.0), ("c2", "T1", False, 26, 1.5),
        ("c2", "T1", False, 27, 2.0),
        ("t1", "T1", True, 25, 500.0), ("t1", "T1", True, 26, 600.0),
        ("x", "", False, 25, 0.0), ("x", "", False, 26, 9.0))]
    assert daily_from_rows(rows, START, END, BERLIN, "area") == [
        DailyConsumption("T1", "2026-10-25", 3.5),
        DailyConsumption("T1", "2026-10-26", 0.5),
    ]


def test_no_rows_or_no_days_is_no_consumption() -> None:
    assert daily_from_rows([], START, END, BERLIN, "meter") == []
    assert daily_from_rows([("m1", "", False, midnight(24), 1.0)], START, START, BERLIN,
                           "area") == []
