from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.dlt645 import data_ids
from protocols.dlt645.codec import FrameError

CST = timezone(timedelta(hours=8))
FORMATS = [data_ids.ENERGY, data_ids.VOLTAGE, data_ids.CURRENT, data_ids.POWER,
           data_ids.POWER_FACTOR, data_ids.FREQUENCY, data_ids.COUNT]


@pytest.mark.parametrize("fmt", FORMATS, ids=lambda f: f"{f.size}B{f.decimals}{'s' * f.signed}")
@given(data=st.data())
def test_every_bcd_format_round_trips_at_its_resolution(fmt: data_ids.Numeric,
                                                        data: st.DataObject) -> None:
    top = round(fmt.max_magnitude * 10**fmt.decimals)
    n = data.draw(st.integers(-top if fmt.signed else 0, top))
    value = n / 10**fmt.decimals
    assert fmt.decode(fmt.encode(value)) == value


def test_signed_current_sets_the_top_bit_of_the_last_wire_byte() -> None:
    assert data_ids.CURRENT.encode(-1.234) == bytes([0x34, 0x12, 0x80])


def test_value_too_large_for_its_format_is_refused() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        data_ids.VOLTAGE.encode(1000.0)


def test_energy_block_carries_total_and_as_many_tariffs_as_the_meter_has() -> None:
    block = data_ids.lookup(0x0001FF00)
    payload = data_ids.encode_values(block, [100.0, 10.0, 20.0])
    values = data_ids.decode_values(block, payload)
    assert [(v.obis, v.value) for v in values] == [
        ("1-0:1.8.0", 100.0), ("1-0:1.8.1", 10.0), ("1-0:1.8.2", 20.0)]


def test_block_with_a_ragged_length_is_a_frame_error() -> None:
    with pytest.raises(FrameError, match=r"is not 1\.\.5 × 4"):
        data_ids.decode_values(data_ids.lookup(0x0001FF00), b"\x00" * 6)


def test_plan_folds_tariff_registers_into_one_block_read() -> None:
    plan = data_ids.plan_reads(["1-0:1.8.0", "1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.0",
                                "1-0:32.7.0"])
    assert plan == [0x0001FF00, 0x00020000, 0x02010100]


def test_plan_names_quantities_dlt645_cannot_carry() -> None:
    with pytest.raises(data_ids.UnknownDataId, match=r"1-0:99\.99\.0"):
        data_ids.plan_reads(["1-0:1.8.0", "1-0:99.99.0"])


def test_meter_clock_is_read_in_the_meters_local_time() -> None:
    local = datetime(2026, 3, 8, 23, 59, 58, tzinfo=CST)
    got = data_ids.meter_clock(data_ids.encode_date(local), data_ids.encode_time(local), CST)
    assert got == local


def test_impossible_meter_date_is_a_frame_error() -> None:
    bad_date = bytes([0x00, 0x31, 0x02, 0x26])  # 2026-02-31
    with pytest.raises(FrameError, match="clock"):
        data_ids.meter_clock(bad_date, data_ids.encode_time(datetime(2026, 1, 1)), CST)


def test_frozen_time_round_trips_to_the_minute() -> None:
    t = datetime(2026, 11, 22, 0, 0, tzinfo=CST)
    assert data_ids.decode_frozen_time(data_ids.encode_frozen_time(t), CST) == t


def test_cover_open_record_round_trips_with_energies() -> None:
    rec = data_ids.CoverOpenRecord(
        datetime(2026, 11, 1, 3, 4, 5, tzinfo=CST), None, 1234.56, 0.5)
    assert data_ids.decode_cover_record(data_ids.encode_cover_record(rec), CST) == rec


def test_frozen_record_index_outside_what_meters_keep_is_refused() -> None:
    with pytest.raises(ValueError, match=r"1\.\.62"):
        data_ids.di_frozen_forward(63)
