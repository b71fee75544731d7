"""The 1376.1 codec against frames from elsewhere, and its own rules.

Vector sources, named per test:
- "ksy capture": terminal captures in the public repository liangminhua/qgdw376.1.ksy,
  `packet-sample/` (a real terminal, area 0171, terminal 2082).
- "C peer": frames packed by the C library of the public repository xiangruipuzhao/3761
  (`./1 -t ID`), and values as its unpacker (`./1 -u`) prints them.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from protocols.q1376 import events as ev
from protocols.q1376 import formats as fm
from protocols.q1376 import frame as fr
from protocols.q1376 import items, points, units
from protocols.q1376.values import Curve, CurveRequest, Frozen, Present, Registers

# ksy capture: login.3761, heartBeat.3761, loginOut.3761
LOGIN = "683200320068c97101220800027800000100e016"
HEARTBEAT = "683200320068c97101220800027900000400e416"
LOGOUT = "683200320068c97101220800027100000200da16"
# ksy capture: qafn12f129.3761 (the master's request) and rafn12f129.3761 (the reply)
F129_REQUEST = "684a004a00684b71012208020ce2010101100239191628007c16"
F129_REPLY = ("68c600c600688871012208020ca2010101101816280818040001000000" + "ee" * 20
              + "0239191628008c16")
# ksy capture: rafn12f34.3761, a reverse-register reply mostly filled with EE
F34_REPLY = ("68b601b601688871012208020cad0101020449162808180400" + "ee" * 84
             + "0d22511628006816")
# C peer: ./1 -t 0C81, 0D65, 0C19, 0C02
PEER_F129 = ("68CE00CE0068AA00110100F60CE0010101102310160913046587999999907856341276982143"
             "652310213312351287997800000048491403FF6B16")
PEER_F101 = ("68CE00CE0068A800110100F60DE00101100C4618190612FF0656341200999999000100000055"
             "666600982385000000300000000048491403FFEF16")
PEER_F25 = ("685E015E0168AA00110100020CE000000103121212121256341256341256341256341278563478"
            "5634785634785634349234923492349234123412341256349256349256349256349256349256"
            "349256349256349200000048491403FFF116")
PEER_F2 = "686A006A0068EA00110100020CE00000020013131324491300000048491403FF4C16"


def _decode(hex_frame: str) -> tuple[fr.Frame, list[items.Unit]]:
    frame = fr.decode(bytes.fromhex(hex_frame))
    return frame, items.split_units(frame)


def test_a_captured_login_heartbeat_and_logout_name_the_terminal_and_the_function() -> None:
    for raw, fn in ((LOGIN, 1), (HEARTBEAT, 3), (LOGOUT, 2)):
        frame, found = _decode(raw)
        assert frame.address == fr.Address("0171", 2082, 0, False)
        assert frame.afn == fr.AFN_LINK and frame.is_uplink and frame.from_initiator
        assert frame.wants_confirm and frame.first and frame.last
        assert found == [items.Unit(0, fn)]


def test_our_login_encodes_to_the_captured_bytes() -> None:
    address = fr.Address("0171", 2082)
    ours = items.reply(address, fr.AFN_LINK, 8, [items.Unit(0, items.F_LOGIN)], prm=True,
                       con=True)
    assert ours.hex() == LOGIN


def test_a_captured_request_carries_its_time_tag_and_master_address() -> None:
    frame, found = _decode(F129_REQUEST)
    assert frame.address.master == 1 and not frame.is_uplink
    assert frame.tp == bytes.fromhex("023919162800") and frame.pseq == 2
    assert found == [items.Unit(1, 129, b"")]
    again = items.request(frame.address, fr.AFN_CLASS1, 2, found, tp=frame.tp)
    assert again.hex() == F129_REQUEST


def test_a_captured_register_reply_gives_the_total_and_no_tariff_where_ee() -> None:
    frame, [unit] = _decode(F129_REPLY)
    value = items.decode_value(frame.afn, unit)
    assert isinstance(value, Registers)
    assert value.read_at == datetime(2018, 8, 28, 16, 18)
    # The C peer prints 0.0100 for the total, and 1555555.5554 for each EE tariff.
    assert value.values == (0.01, None, None, None, None)


def test_a_field_only_partly_filled_with_ee_is_no_data_rather_than_a_number() -> None:
    frame, [unit] = _decode(F34_REPLY)
    value = items.decode_value(frame.afn, unit)
    assert value.active == (None,) * 5  # first field is 00 EE EE EE EE in the capture
    assert value.read_at == datetime(2018, 8, 28, 16, 49)


def test_the_c_peers_register_reply_decodes_to_the_values_it_prints() -> None:
    frame, [unit] = _decode(PEER_F129)
    assert frame.address == fr.Address("1100", 1, 123) and frame.events_pending
    value = items.decode_value(frame.afn, unit)
    # ./1 -u: 正向有功总电能示值 999999.8765, 费率 1–4 …
    assert value.values == (999999.8765, 123456.789, 654321.9876, 123321.1023, 789987.1235)
    assert frame.ec == (0, 0)


def test_the_c_peers_register_curve_decodes_to_its_points() -> None:
    frame, [unit] = _decode(PEER_F101)
    curve = items.decode_value(frame.afn, unit)
    assert isinstance(curve, Curve) and unit.fn == 101
    assert curve.request == CurveRequest(datetime(2012, 6, 19, 18, 46), 1, 6)
    # ./1 -u: 1234.56, 9999.99, 0.01, 6666.55, 8523.98, 3000.00
    assert curve.values == (1234.56, 9999.99, 0.01, 6666.55, 8523.98, 3000.0)


def test_the_c_peers_present_values_decode_with_their_signs() -> None:
    frame, [unit] = _decode(PEER_F25)
    value = items.decode_value(frame.afn, unit)
    assert isinstance(value, Present) and unit.pn == 0
    assert value.active_kw == (12.3456,) * 4 and value.voltage == (123.4,) * 3
    assert value.current == (-123.456,) * 3 and value.power_factor == (-123.4,) * 4


def test_the_c_peers_clock_reply_decodes_to_the_terminal_time() -> None:
    frame, [unit] = _decode(PEER_F2)
    assert items.decode_value(frame.afn, unit) == datetime(2013, 9, 24, 13, 13, 13)


@pytest.mark.parametrize("fmt", [fm.A5, fm.A7, fm.A9, fm.A11, fm.A13, fm.A14, fm.A23, fm.A25])
def test_no_data_is_none_and_never_zero(fmt: fm.Number) -> None:
    assert fmt.decode(fmt.encode(None)) is None
    assert fmt.decode(b"\xee" * fmt.width) is None
    assert fmt.decode(fmt.encode(0.0)) == 0.0


@pytest.mark.parametrize("value", [0.0, 1.5, 12.3, -7.7])
def test_signed_formats_round_trip(value: float) -> None:
    for fmt in (fm.A5, fm.A9, fm.A25):
        assert fmt.decode(fmt.encode(value)) == pytest.approx(value)


def test_a_value_too_large_for_its_format_is_refused_not_wrapped() -> None:
    with pytest.raises(fr.FrameError):
        fm.A7.encode(1000.0)
    with pytest.raises(fr.FrameError):
        fm.A11.encode(-1.0)


def test_frames_with_flaws_raise_frame_errors_that_say_what() -> None:
    good = bytearray(bytes.fromhex(LOGIN))
    cases = {
        "checksum": (good[:-2] + bytes([good[-2] ^ 1, 0x16])),
        "differ": good[:3] + b"\x33" + good[4:],
        "protocol identifier": good[:1] + b"\x31\x00\x31\x00" + good[5:],
        "not 16": good[:-1] + b"\x17",
        "length field": good[:-3] + good[-2:],
    }
    for words, raw in cases.items():
        with pytest.raises(fr.FrameError, match=words):
            fr.decode(bytes(raw))


def test_captured_confirms_that_break_the_dt_rules_are_refused() -> None:
    # ksy captures nonStandardConfirm.3761 and separateConfirm.3761: DT 0300 is F1 + F2,
    # followed by bytes no layout explains.
    for raw in ("684a004a0068107101220800006800000100000000000000" "1516",
                "684a004a0068000444610600006a000003000200000100001f16"):
        with pytest.raises(fr.FrameError):
            items.split_units(fr.decode(bytes.fromhex(raw)))


def test_da_and_dt_name_every_point_and_function_of_their_groups() -> None:
    assert units.decode_da(units.encode_da([1])) == (1,)
    assert units.decode_da(units.encode_da([9, 12, 16])) == (9, 12, 16)
    assert units.decode_da(b"\x00\x00") == (0,)
    assert units.decode_dt(units.encode_dt([161, 163])) == (161, 163)
    assert units.pairs(units.unit_id([1, 2], [129, 131])) == [(1, 129), (1, 131), (2, 129),
                                                                (2, 131)]
    with pytest.raises(fr.FrameError):
        units.encode_da([8, 9])


def test_several_points_and_functions_in_one_unit_split_in_order() -> None:
    address = fr.Address("4101", 7)
    r1 = Registers(datetime(2026, 11, 1, 0, 5), (1.0, 0.5, 0.5))
    r2 = Registers(datetime(2026, 11, 1, 0, 5), (2.0, 1.0, 1.0))
    body = units.unit_id([1, 2], [129, 131]) + r1.encode() + r2.encode() + r2.encode() \
        + r1.encode()
    raw = fr.encode(fr.Frame(fr.control(up=True, prm=False, function=fr.FN_RESPONSE),
                             address, fr.AFN_CLASS1, fr.seq_field(3), body))
    found = items.split_units(fr.decode(raw))
    assert [(u.pn, u.fn) for u in found] == [(1, 129), (1, 131), (2, 129), (2, 131)]
    assert items.decode_value(fr.AFN_CLASS1, found[1]) == r2


def test_freezes_curves_events_and_the_point_table_round_trip() -> None:
    read = datetime(2026, 11, 21, 0, 1)
    daily = Frozen(date(2026, 11, 20), Registers(read, (12.5, 1, 2, 3, 6.5)))
    monthly = Frozen(date(2026, 10, 1), daily.registers, monthly=True)
    curve = Curve(CurveRequest(datetime(2026, 11, 20, 0, 15), 15, 3), (1.0, None, 1.5), fm.A11)
    page = ev.EventPage(3, 0, 0, 2, (ev.power_record(datetime(2026, 11, 20, 3, 0),
                                                     datetime(2026, 11, 20, 3, 40)),
                                     ev.point_record(ev.ERC_METER_FAULT,
                                                     datetime(2026, 11, 20, 5, 0), 4,
                                                     extra=b"\x01")))
    table = (points.PointEntry(1, 1, 2, 2400, points.PROTOCOL_DLT645_2007, "000000000101"),)
    cases = [(fr.AFN_CLASS2, items.F_DAILY_FORWARD, daily.encode(), daily),
             (fr.AFN_CLASS2, items.F_MONTHLY_FORWARD, monthly.encode(), monthly),
             (fr.AFN_CLASS2, items.F_CURVE_FORWARD, curve.encode(), curve),
             (fr.AFN_CLASS3, items.F_IMPORTANT_EVENTS, page.encode(), page),
             (fr.AFN_QUERY, items.F_POINT_TABLE, points.encode_table(table), table)]
    for afn, fn, data, want in cases:
        raw = items.reply(fr.Address("4101", 7), afn, 1, [items.Unit(1, fn, data)])
        [unit] = items.split_units(fr.decode(raw))
        assert items.decode_value(afn, unit) == want
    decoded = ev.EventPage.decode(page.encode())
    assert [r.kind for r in decoded.records] == ["power_down", "meter_fault"]
    assert decoded.records[1].pn == 4 and decoded.records[1].began


def test_the_stream_buffer_cuts_frames_skips_garbage_and_bounds_a_claimed_length() -> None:
    buf = fr.FrameBuffer(max_frame=64)
    login = bytes.fromhex(LOGIN)
    buf.feed(b"\x00\x01" + login[:7])
    assert buf.next_frame() is None
    buf.feed(login[7:] + login)
    assert buf.next_frame() == login and buf.next_frame() == login and buf.skipped == 2
    buf.feed(bytes.fromhex("68fe3ffe3f68"))  # claims a 4 KB frame
    with pytest.raises(fr.FrameError, match="exceeds the limit"):
        buf.next_frame()
    buf.feed(login)
    assert buf.next_frame() == login


def test_an_unknown_function_ends_the_walk_with_its_name() -> None:
    with pytest.raises(items.UnsupportedUnit, match="F167"):
        items.split_units(fr.decode(bytes.fromhex(
            "684a004a00684b71012208020ce301014014035921162800e916")))


def test_random_and_mutated_frames_raise_nothing_but_frame_errors() -> None:
    import contextlib
    import random

    from bench.fuzz_q1376 import decode_all, inputs

    for raw in inputs(3000, random.Random(5)):
        with contextlib.suppress(fr.FrameError):
            decode_all(raw)
