from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus import frames
from protocols.modbus.frames import ModbusExceptionReply, ModbusFrameError, ReadRequest
from protocols.modbus.plan import plan_blocks
from protocols.modbus.profile import (
    TYPES,
    ProfileError,
    RegisterSpec,
    builtin_profiles,
    load_profile_file,
)

# The "read holding registers" example of the Modbus application protocol spec
# (server 0x11, registers 108-110), framed for RTU and for TCP.
REQUEST = ReadRequest(unit=0x11, function=0x03, address=0x006B, count=3)
RTU_REQUEST = bytes.fromhex("11 03 00 6B 00 03 76 87")
RTU_REPLY = bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD")
TCP_REQUEST = bytes.fromhex("00 01 00 00 00 06 11 03 00 6B 00 03")


def test_rtu_request_matches_the_specification_example() -> None:
    assert frames.rtu_frame(0x11, frames.request_pdu(REQUEST)) == RTU_REQUEST


def test_rtu_reply_decodes_to_the_specification_registers() -> None:
    unit, pdu = frames.rtu_unwrap(RTU_REPLY)
    assert unit == 0x11
    assert frames.parse_reply_pdu(REQUEST, pdu) == [0xAE41, 0x5652, 0x4340]


def test_tcp_request_carries_the_mbap_header() -> None:
    assert frames.mbap_frame(1, 0x11, frames.request_pdu(REQUEST)) == TCP_REQUEST
    assert frames.mbap_unwrap_header(TCP_REQUEST[:7]) == (1, 0x11, 5)


def test_bad_crc_is_named_with_both_values() -> None:
    bad = RTU_REPLY[:-1] + b"\x00"
    with pytest.raises(ModbusFrameError, match="bad RTU CRC: got 0049H, expected AD49H"):
        frames.rtu_unwrap(bad)


def test_exception_reply_is_raised_with_its_name() -> None:
    with pytest.raises(ModbusExceptionReply, match=r"exception 2 \(illegal data address\)"):
        frames.parse_reply_pdu(REQUEST, frames.exception_pdu(0x03, 2))


def test_reply_with_one_register_too_few_is_a_frame_error() -> None:
    short = frames.reply_pdu(0x03, [1, 2])
    with pytest.raises(ModbusFrameError, match="expected 6 for 3 registers"):
        frames.parse_reply_pdu(REQUEST, short)


def test_a_read_of_more_than_125_registers_is_refused() -> None:
    with pytest.raises(ModbusFrameError, match=r"outside 1\.\.125"):
        ReadRequest(1, 3, 0, 126)


@given(st.binary(max_size=40))
def test_random_reply_bytes_raise_only_protocol_errors(pdu: bytes) -> None:
    with contextlib.suppress(ModbusFrameError, ModbusExceptionReply):
        frames.parse_reply_pdu(REQUEST, pdu)


@pytest.mark.parametrize("kind", sorted(TYPES))
@pytest.mark.parametrize("words", ["big", "little"])
@pytest.mark.parametrize("byteorder", ["big", "little"])
def test_every_type_and_order_round_trips(kind: str, words: str, byteorder: str) -> None:
    spec = RegisterSpec("1-0:1.8.0", 0, "holding", kind, "kWh", 0.5, words, byteorder)
    value = 1234.5 if kind.startswith("float") or kind.startswith("uint") else -1234.5
    if kind.endswith("16"):
        value = value / 100
        value = round(value / 0.5) * 0.5
    assert spec.decode(spec.encode(value)) == pytest.approx(value, rel=1e-6)


def test_word_order_little_swaps_the_words_of_a_float() -> None:
    big = RegisterSpec("x", 0, "input", "float32", "V", word_order="big")
    little = RegisterSpec("x", 0, "input", "float32", "V", word_order="little")
    assert little.encode(230.0) == list(reversed(big.encode(230.0)))


def spec(address: int, kind: str = "float32", function: str = "input") -> RegisterSpec:
    return RegisterSpec(f"1-0:{address}.7.0", address, function, kind, "V")


def test_plan_merges_neighbours_and_bridges_small_gaps() -> None:
    blocks = plan_blocks([spec(0), spec(2), spec(10)], max_gap=6)
    assert [(b.start, b.count, len(b.specs)) for b in blocks] == [(0, 12, 3)]


def test_plan_splits_where_the_gap_is_too_wide() -> None:
    blocks = plan_blocks([spec(0), spec(20)], max_gap=6)
    assert [(b.start, b.count) for b in blocks] == [(0, 2), (20, 2)]


def test_plan_never_exceeds_the_block_limit() -> None:
    specs = [spec(a) for a in range(0, 300, 2)]
    blocks = plan_blocks(specs, max_block=125)
    assert all(b.count <= 125 for b in blocks)
    assert sum(len(b.specs) for b in blocks) == 150
    assert [b.start for b in blocks] == [0, 124, 248]


def test_plan_keeps_holding_and_input_registers_apart() -> None:
    blocks = plan_blocks([spec(0, function="holding"), spec(2, function="input")])
    assert sorted((b.function, b.start) for b in blocks) == [(3, 0), (4, 2)]


def test_plan_covers_overlapping_registers_once() -> None:
    blocks = plan_blocks([spec(0, "float64"), spec(2, "uint16")])
    assert [(b.start, b.count) for b in blocks] == [(0, 4)]


def test_every_shipped_profile_loads_and_cites_its_source() -> None:
    profiles = builtin_profiles()
    assert {"sdm120", "sdm630", "dtsu666", "generic"} <= set(profiles)
    assert all(p.source for p in profiles.values())


def test_a_profile_error_names_the_file_the_register_and_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[profile]\nname = "mine"\nsource = "x"\n\n[[register]]\n'
                    'obis = "1-0:1.8.0"\naddress = 0\ntype = "float16"\nunit = "kWh"\n')
    with pytest.raises(ProfileError) as info:
        load_profile_file(path)
    assert str(info.value).startswith(f"{path}: register[0] (1-0:1.8.0).type: 'float16' is not")
