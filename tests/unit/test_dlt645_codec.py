from __future__ import annotations

import contextlib
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.dlt645 import codec, data_ids
from protocols.dlt645.codec import Frame, FrameError, FrameReader, MeterErrorReply
from protocols.errors import ProtocolError

CST = timezone(timedelta(hours=8))


def hx(text: str) -> bytes:
    return bytes.fromhex(text)


# --- the shared vectors (../shared/docs/dlt645.md) -------------------------------------

READ_ADDRESS = hx("FE FE FE FE 68 AA AA AA AA AA AA 68 13 00 DF 16")
ADDRESS_REPLY = hx("68 12 90 78 56 34 12 68 93 06 45 C3 AB 89 67 45 07 16")
READ_FORWARD = hx("68 01 00 00 00 00 00 68 11 04 33 33 34 33 B3 16")
REPLY_ENERGY = hx("68 01 00 00 00 00 00 68 91 08 33 33 34 33 89 67 45 33 9F 16")
REPLY_VOLTAGE = hx("68 01 00 00 00 00 00 68 91 06 33 34 34 35 34 55 C1 16")
REPLY_CURRENT = hx("68 01 00 00 00 00 00 68 91 07 33 34 35 35 67 45 B3 99 16")
ERROR_REPLY = hx("68 01 00 00 00 00 00 68 D1 01 35 D8 16")
TIME_SYNC = hx("68 99 99 99 99 99 99 68 08 06 78 63 48 55 44 59 89 16")


def test_wildcard_read_address_request_matches_the_standard_bytes() -> None:
    assert codec.encode(codec.read_address_request()) == READ_ADDRESS


def test_address_reply_decodes_to_the_printed_address() -> None:
    assert codec.parse_address_reply(codec.decode(ADDRESS_REPLY)) == "123456789012"
    assert codec.encode(codec.address_reply("123456789012"), preamble=b"") == ADDRESS_REPLY


def test_read_forward_active_request_matches_the_standard_bytes() -> None:
    frame = codec.read_request("000000000001", 0x00010000)
    assert codec.encode(frame, preamble=b"") == READ_FORWARD


@pytest.mark.parametrize(
    ("raw", "di", "obis", "value", "unit", "decimals"),
    [
        (REPLY_ENERGY, 0x00010000, "1-0:1.8.0", 1234.56, "kWh", 2),
        (REPLY_VOLTAGE, 0x02010100, "1-0:32.7.0", 220.1, "V", 1),
        (REPLY_CURRENT, 0x02020100, "1-0:31.7.0", -1.234, "A", 3),
    ],
)
def test_read_replies_decode_to_obis_value_unit_and_the_formats_resolution(
    raw: bytes, di: int, obis: str, value: float, unit: str, decimals: int
) -> None:
    reply = codec.parse_read_reply(codec.decode(raw), expected_di=di)
    (decoded,) = data_ids.decode_values(data_ids.lookup(di), reply.payload)
    assert decoded == data_ids.DecodedValue(obis, value, unit, decimals)
    encoded = codec.read_reply("000000000001", di, data_ids.encode_values(data_ids.lookup(di),
                                                                          [value]))
    assert codec.encode(encoded, preamble=b"") == raw


def test_error_reply_raises_with_its_bits_in_words() -> None:
    with pytest.raises(MeterErrorReply) as info:
        codec.parse_read_reply(codec.decode(ERROR_REPLY))
    assert info.value.code == 0x02
    assert info.value.reasons == ["no data requested / no such item"]
    assert codec.encode(codec.error_reply("000000000001", 0x02), preamble=b"") == ERROR_REPLY


def test_broadcast_time_sync_matches_the_standard_bytes() -> None:
    frame = codec.time_sync_request(datetime(2026, 11, 22, 15, 30, 45, tzinfo=CST))
    assert codec.encode(frame, preamble=b"") == TIME_SYNC


# --- malformed frames name what is wrong and where ------------------------------------


def test_bad_checksum_names_offset_and_both_values() -> None:
    raw = bytearray(REPLY_ENERGY)
    raw[-2] ^= 0xFF
    with pytest.raises(FrameError, match=r"bad checksum at offset 18: got 60H, expected 9FH"):
        codec.decode(bytes(raw))


def test_missing_second_start_byte_is_named() -> None:
    raw = bytearray(READ_FORWARD)
    raw[7] = 0x00
    with pytest.raises(FrameError, match="second 68H at offset 7"):
        codec.decode(bytes(raw))


def test_truncated_frame_says_how_many_bytes_are_missing() -> None:
    with pytest.raises(FrameError, match="length byte says 8 data bytes"):
        codec.decode(REPLY_ENERGY[:-4])


def test_non_bcd_value_byte_is_rejected_for_that_item() -> None:
    with pytest.raises(FrameError, match="not BCD"):
        data_ids.ENERGY.decode(bytes([0x5A, 0x34, 0x12, 0x00]))


def test_reply_for_a_different_di_is_rejected() -> None:
    with pytest.raises(FrameError, match="asked for 00020000"):
        codec.parse_read_reply(codec.decode(REPLY_ENERGY), expected_di=0x00020000)


# --- properties ------------------------------------------------------------------------

addresses = st.lists(st.integers(0, 99), min_size=6, max_size=6).map(
    lambda parts: "".join(f"{p:02d}" for p in parts)
)


@given(addresses, st.integers(0, 255), st.binary(max_size=200))
def test_any_frame_round_trips(address: str, control: int, data: bytes) -> None:
    frame = Frame(address, control, data)
    assert codec.decode(codec.encode(frame)) == frame


@given(st.binary(max_size=300))
def test_random_bytes_raise_only_the_codec_error(raw: bytes) -> None:
    with contextlib.suppress(FrameError):
        codec.decode(raw)


@given(st.binary(max_size=300))
def test_random_bytes_in_a_reply_raise_only_protocol_errors(raw: bytes) -> None:
    frame = Frame("000000000001", 0x91, raw)
    try:
        reply = codec.parse_read_reply(frame)
        data_ids.decode_values(data_ids.lookup(reply.di), reply.payload)
    except ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_random_bytes_fed_to_the_stream_reader_never_escape_as_other_errors(raw: bytes) -> None:
    reader = FrameReader()
    reader.feed(raw)
    for _ in range(len(raw) + 1):
        item = reader.next()
        if item is None:
            break
        assert isinstance(item, Frame | FrameError)


@given(
    st.lists(st.tuples(addresses, st.binary(max_size=40)), min_size=1, max_size=5),
    st.lists(st.binary(max_size=12).filter(lambda b: 0x68 not in b), min_size=6, max_size=6),
    st.integers(1, 7),
)
def test_stream_reader_recovers_every_frame_between_garbage_and_preambles(
    frames: list[tuple[str, bytes]], garbage: list[bytes], chunk: int
) -> None:
    expected = [Frame(a, 0x91, d) for a, d in frames]
    stream = b"".join(g + codec.encode(f) for g, f in zip(garbage, expected, strict=False))
    reader = FrameReader()
    got: list[Frame] = []
    for i in range(0, len(stream), chunk):
        reader.feed(stream[i : i + chunk])
        while (item := reader.next()) is not None:
            if isinstance(item, Frame):
                got.append(item)
    assert got == expected


def test_stream_reader_skips_a_corrupt_frame_and_keeps_the_next_one() -> None:
    bad = bytearray(REPLY_ENERGY)
    bad[-2] ^= 0x01
    reader = FrameReader()
    reader.feed(bytes(bad) + REPLY_VOLTAGE)
    items = []
    while (item := reader.next()) is not None:
        items.append(item)
    assert isinstance(items[0], FrameError)
    assert items[-1] == codec.decode(REPLY_VOLTAGE)


def test_follow_up_reply_carries_its_sequence_number() -> None:
    frame = codec.followup_reply("000000000001", 0x0001FF00, b"\x01\x02", 3, more=False)
    reply = codec.parse_read_reply(codec.decode(codec.encode(frame)))
    assert (reply.payload, reply.seq, reply.more) == (b"\x01\x02", 3, False)


def test_wildcard_address_matching_is_per_byte() -> None:
    assert codec.address_matches("AAAAAAAAAA12", "000000000012")
    assert not codec.address_matches("AAAAAAAAAA12", "000000000013")
    assert codec.address_matches(codec.WILDCARD_ADDRESS, "123456789012")


def test_a_late_reply_to_the_previous_data_id_is_not_taken_as_the_answer() -> None:
    from protocols.dlt645.client import _answers

    request = codec.read_request("000000000001", 0x02010100)
    stale = codec.read_reply("000000000001", 0x00010000, b"\x00\x00\x00\x00")
    fresh = codec.read_reply("000000000001", 0x02010100, b"\x00\x22")
    assert not _answers(request, stale)
    assert _answers(request, fresh)


def test_power_down_and_time_setting_records_round_trip() -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    down = data_ids.PowerDownRecord(datetime(2026, 11, 30, 21, 5, 9, tzinfo=tz),
                                    datetime(2026, 11, 30, 23, 0, 0, tzinfo=tz))
    raw = data_ids.encode_power_down_record(down)
    assert raw[:6] == bytes([0x09, 0x05, 0x21, 0x30, 0x11, 0x26])  # ssmmhhDDMMYY, low first
    assert data_ids.decode_power_down_record(raw, tz) == down
    still_off = data_ids.PowerDownRecord(down.start, None)
    assert data_ids.decode_power_down_record(
        data_ids.encode_power_down_record(still_off), tz) == still_off
    sets = data_ids.TimeSetRecord("00000001", datetime(2026, 12, 1, 8, 0, 5, tzinfo=tz),
                                  datetime(2026, 12, 1, 8, 0, 0, tzinfo=tz))
    raw = data_ids.encode_time_set_record(sets)
    assert len(raw) == 16 and data_ids.decode_time_set_record(raw, tz) == sets
