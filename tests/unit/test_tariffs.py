"""Tariff files: the shipped examples load, every mistake names the file, the key and
the fix, and cycles split where a tariff, tier year or season changes."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.billing.cycles import Cycle, CycleError, split
from collector.billing.tariff import TariffError, Tariffs, load_tariff
from model import TariffChange

GOOD = """
name = "t"
valid_from = 2026-01-01
[[season]]
name = "all"
months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
periods = [
  { from = "08:00", to = "22:00", period = "peak", price = 0.6 },
  { from = "22:00", to = "08:00", period = "valley", price = 0.3 },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.toml"
    path.write_text(text)
    return path


def test_the_shipped_tariffs_load_with_their_calendars() -> None:
    tariffs = Tariffs()
    assert tariffs.names() == ["cn-residential", "commercial-tou"]
    res = tariffs.get("cn-residential")
    assert res.periods == ["peak", "valley"]
    tz = ZoneInfo("Asia/Shanghai")
    assert res.period_at(datetime(2026, 11, 3, 7, 59, tzinfo=tz)).name == "valley"
    assert res.period_at(datetime(2026, 11, 3, 8, 0, tzinfo=tz)).name == "peak"
    com = tariffs.get("commercial-tou")
    assert com.period_at(datetime(2026, 8, 3, 19, 30, tzinfo=tz)).price == 1.35
    assert com.period_at(datetime(2026, 11, 3, 19, 30, tzinfo=tz)).price == 1.25
    assert com.demand_price == 38.0


def test_tier_steps_split_consumption_on_top_of_what_came_before() -> None:
    res = Tariffs().get("cn-residential")
    assert res.tier_charges(0, 100) == [(1, 100, 0.0)]
    assert res.tier_charges(2800, 2100) == [(1, 80, 0.0), (2, 1920, 0.05), (3, 100, 0.30)]
    assert res.tier_charges(5000, 10) == [(3, 10, 0.30)]


@pytest.mark.parametrize(("change", "key", "words"), [
    (('valid_from = 2026-01-01', ''), "valid_from", "is required"),
    (('"22:00", to = "08:00"', '"23:00", to = "08:00"'), "season[0].periods",
     "no period covers 22:00"),
    (('"08:00", to = "22:00"', '"07:00", to = "22:00"'), "season[0].periods[1]", "overlaps"),
    (('period = "peak"', 'period = "high"'), "season[0].periods[0].period", "'high'"),
    (('months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]', 'months = [1, 2]'), "season",
     "month(s) 3, 4"),
    (('price = 0.6', 'price = -1'), "season[0].periods[0].price", "not negative"),
    (('name = "t"', 'nmae = "t"'), "nmae", "unknown key"),
])
def test_a_tariff_mistake_names_the_file_the_key_and_the_problem(
        tmp_path: Path, change: tuple[str, str], key: str, words: str) -> None:
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(TariffError) as err:
        load_tariff(path)
    assert (err.value.file, err.value.key) == (str(path), key)
    assert words in err.value.problem


def test_a_demand_split_rule_must_be_one_the_bill_run_knows(tmp_path: Path) -> None:
    bad = GOOD + '[demand]\nprice_per_kw = 38.0\nsplit = "max"\n'
    with pytest.raises(TariffError) as err:
        load_tariff(write(tmp_path, bad))
    assert err.value.key == "demand.split" and "prorate, whole" in err.value.problem


def test_tier_steps_must_rise_and_end_open(tmp_path: Path) -> None:
    bad = GOOD + "[tiers]\nsteps = [{ up_to = 100, add = 0 }, { up_to = 50, add = 0.1 }]\n"
    with pytest.raises(TariffError, match=r"tiers.steps\[1\].up_to"):
        load_tariff(write(tmp_path, bad))


def test_an_unknown_tariff_lists_the_known_ones() -> None:
    with pytest.raises(TariffError, match="known: cn-residential, commercial-tou"):
        Tariffs().get("nope")


def test_cycles_run_from_reading_day_to_reading_day() -> None:
    c = Cycle.parse("2026-01")
    assert c.span(25) == (date(2025, 12, 25), date(2026, 1, 25))
    assert c.shifted(1).name == "2025-12" and c.last_year().name == "2025-01"
    day = Cycle.parse("2026-11-23")
    assert day.span(1) == (date(2026, 11, 23), date(2026, 11, 24))
    with pytest.raises(CycleError):
        Cycle.parse("Nov 2026")


def test_a_tier_year_a_season_and_a_tariff_change_split_a_cycle() -> None:
    tariffs: dict[str, Any] = {n: Tariffs().get(n) for n in Tariffs().names()}
    parts = split(date(2025, 12, 25), date(2026, 1, 25), "cn-residential", [], tariffs)
    assert [(p.first, p.why) for p in parts] == [
        (date(2025, 12, 25), "cycle start"), (date(2026, 1, 1), "tier year starts")]
    parts = split(date(2026, 6, 25), date(2026, 7, 25), "commercial-tou",
                  [TariffChange("sp", "cn-residential", date(2026, 7, 10))], tariffs)
    assert [(p.first, p.tariff, p.why) for p in parts] == [
        (date(2026, 6, 25), "commercial-tou", "cycle start"),
        (date(2026, 7, 1), "commercial-tou", "season summer starts"),
        (date(2026, 7, 10), "cn-residential", "tariff change to cn-residential")]
