"""IEC 62056-21 mode C codec, against byte vectors.

Vectors marked [pwitab] are from the test suite of pwitab/iec62056-21 (an independent
Python implementation: tests/test_bcc.py and tests/test_data.py), read, not copied:
only the bytes are used here. Vectors marked [62056-21] follow the message layouts of
IEC 62056-21:2002, clause 6.3 (sign-on, identification, option select, data readout).
"""

from __future__ import annotations

import pytest

from protocols.iec62056 import codec
from protocols.iec62056.codec import DataSet, Identification, Iec62056Error


@pytest.mark.parametrize("message", [
    bytes.fromhex("01573202433030332839313033323430393232333929031b"),  # [pwitab] W2 C003(…)
    b"\x01P0\x02(1234567)\x03P",  # [pwitab] password command
    b"\x023:171.0(0)\x03\x12",  # [pwitab] answer data message
    b'\x023:14(314*kWh)4:15(415*kWh)\r\n!\r\n\x03"',  # [pwitab] readout data message
])
def test_the_block_check_character_is_the_xor_after_the_first_byte(message: bytes) -> None:
    assert codec.bcc(message[1:-1]) == message[-1]


def test_sign_on_with_and_without_a_device_address() -> None:
    assert codec.sign_on() == b"/?!\r\n"  # [62056-21]
    assert codec.sign_on("45678903") == b"/?45678903!\r\n"  # [pwitab]
    with pytest.raises(ValueError):
        codec.sign_on("a/b")


def test_an_identification_gives_manufacturer_speed_and_type() -> None:
    # [pwitab] keeps "2EK280" as the identification; the standard reads "\\2" as the
    # enhanced-capability character W of "/XXXZ\\W Ident", so the type is "EK280".
    ident = codec.parse_identification(b"/Els6\\2EK280\r\n")
    assert ident == Identification("Els", "6", "EK280", "2") and ident.baud == 19200
    mine = Identification("LGZ", "5", "ZMD120AR", "")
    assert codec.encode_identification(mine) == b"/LGZ5ZMD120AR\r\n"
    assert codec.parse_identification(codec.encode_identification(mine)) == mine
    with pytest.raises(Iec62056Error, match="not a mode C speed"):
        codec.parse_identification(b"/ABCDtype\r\n")
    with pytest.raises(Iec62056Error, match="not an identification"):
        codec.parse_identification(b"garbage\r\n")


def test_the_option_select_acknowledges_the_speed() -> None:
    assert codec.ack("5", "1") == b"\x06051\r\n"  # [pwitab]
    assert codec.ack("5") == b"\x06050\r\n"  # [62056-21] data readout mode
    assert codec.parse_ack(b"\x06051\r\n") == ("5", "1")
    with pytest.raises(ValueError):
        codec.ack("9")


def test_a_readout_parses_its_data_sets_with_units_and_timestamps() -> None:
    message = b'\x023:14(314*kWh)4:15(415*kWh)\r\n!\r\n\x03"'  # [pwitab]
    assert codec.parse_readout(message) == [DataSet("3:14", "314", "kWh"),
                                            DataSet("4:15", "415", "kWh")]
    ours = codec.encode_readout(["0.0.0(000000000001)", "1.8.0(012345.67*kWh)",
                                 "1.6.0(0012.340*kW)(2611301215)", "F.F(00000000)"])
    sets = codec.parse_readout(ours)
    assert [s.obis for s in sets] == ["0-0:0.0.0", "1-0:1.8.0", "1-0:1.6.0", "F.F"]
    assert sets[1].number == 12345.67 and sets[1].unit == "kWh"
    assert sets[2].extra == ("2611301215",)
    assert codec.readout_complete(ours) and not codec.readout_complete(ours[:-1])


def test_a_corrupted_readout_is_refused_by_its_bcc() -> None:
    with pytest.raises(Iec62056Error, match="block check character 78H, expected 22H"):
        codec.parse_readout(b"\x023:14(314*kWh)4:15(415*kWh)\r\n!\r\n\x03x")  # [pwitab]
    with pytest.raises(Iec62056Error, match="incomplete"):
        codec.parse_readout(b"\x021.8.0(1*kWh)\r\n")


def test_short_addresses_become_full_obis_codes() -> None:
    assert codec.obis_of("1.8.0") == "1-0:1.8.0"
    assert codec.obis_of("1-0:2.8.0*255") == "1-0:2.8.0"
    assert codec.obis_of("0.9.1") == "0-0:0.9.1"
    assert codec.obis_of("96.1.0") == "0-0:96.1.0"
    assert codec.obis_of("C.1.0") == "C.1.0"
    with pytest.raises(Iec62056Error, match="does not parse"):
        codec.parse_line("1.8.0(12*kWh")
