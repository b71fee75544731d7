"""The rules against real, honest consumption (bench/data: one house in Sceaux metered
for four years, UCI, CC BY 4.0): holidays, winter heating and day-to-day noise must not
read as theft or as a fault."""

from __future__ import annotations

from bench.real_household import load, report


def test_no_rule_fires_on_more_than_five_percent_of_a_real_honest_households_windows(
        ) -> None:
    rates = dict(report(load()))
    assert rates, "the sample loaded no rules"
    assert {name: rate for name, rate in rates.items() if rate > 0.05} == {}
    assert rates["theft (score ≥ threshold)"] <= 0.05


def test_the_sample_is_the_whole_four_years_of_quarter_hours() -> None:
    h = load()
    assert h.kwh.shape == h.amps.shape == (1440, 96)
    assert 25 < h.kwh.sum(axis=1).mean() < 27  # the house's 1.09 kW average
