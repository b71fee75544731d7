"""A value is shown with the digits the meter gave it, no fewer and no noise."""

from __future__ import annotations

from collector.cli.tables import fmt_value
from model.resolution import decimals_in, decimals_of
from protocols.modbus.profile import RegisterSpec


def test_a_meters_text_says_its_resolution() -> None:
    assert decimals_of("001234.567") == 3
    assert decimals_of("0800.10") == 2
    assert decimals_of("42") == 0
    assert decimals_of("1.5e3") == 1
    assert decimals_of("F.F") is None


def test_stored_values_show_their_digits_and_not_float_noise() -> None:
    assert decimals_in([1234.567, 800.1]) == 3
    assert decimals_in([0.1 + 0.2]) == 1
    assert decimals_in([None, float("nan"), 12.0]) == 0


def test_a_value_is_shown_at_the_meters_resolution_even_past_the_units_usual() -> None:
    assert fmt_value(1234.567, "kWh", 3) == "1,234.567"
    assert fmt_value(800.1, "kWh", 2) == "800.10"
    assert fmt_value(5.23, "A", 2) == "5.23"
    # Not said by the protocol: the unit's usual decimals, never rounding a digit away.
    assert fmt_value(800.123, "kWh") == "800.123"
    assert fmt_value(12587.9, "kWh") == "12,587.90"


def test_a_modbus_registers_scale_or_float_says_its_resolution() -> None:
    scaled = RegisterSpec("1-0:1.8.0", 0, "holding", "uint32", "kWh", scale=0.01)
    assert scaled.decimals(1234.56) == 2
    whole = RegisterSpec("1-0:32.7.0", 0, "holding", "uint16", "V")
    assert whole.decimals(230.0) == 0
    single = RegisterSpec("1-0:32.7.0", 0, "input", "float32", "V")
    assert single.decimals(single.decode(single.encode(230.1))) == 1
