"""IEC 62056-21 mode C codec, against byte vectors.

Vectors marked [pwitab] are from the test suite of pwitab/iec62056-21 (an independent
Python implementation: tests/test_bcc.py and tests/test_data.py), read, not copied:
only the bytes are used here. Vectors marked [EMH] are the exchanges printed in a meter
vendor's manual (LEM EM4T II, V1.0, 2020, 4.2.9), BCCs included: a second independent
source, from a shipping meter. Vectors marked [62056-21] follow the message layouts of
IEC 62056-21:2002, clause 6.3 (sign-on, identification, option select, data readout);
the standard's own worked examples could not be read from here.
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


# [EMH] LEM EM4T II user manual (V1.0, 5 November 2020), 4.2.9 "Examples of read-outs":
# an EMH-built meter's readout and programming exchanges as printed there, BCCs included.
EMH_READOUT = ("1-0:1.8.0*255(000000000.0*kWh)", "1-0:2.8.0*255(000000000.0*kWh)",
               "1-0:3.8.0*255(000000000.0*kvarh)", "1-0:4.8.0*255(000000000.0*kvarh)",
               "0-0:F.F.0*255(00000000)", "1-0:0.0.1*255()", "1-0:0.2.0*255(10600000)",
               "1-0:0.9.1*255(140253)", "1-0:0.9.2*255(121221)", "0-0:C.1.0*255(03878504)",
               "0-0:C.72.1*255()", "0-0:C.72.2*255()", "1-0:0.8.4*255(5*min)",
               "1-0:0.3.0*255(6.00*Imp/kWh)", "1-0:0.2.1*1(121120??)",
               "1-0:0.2.1*50(121120??)", "0-0:C.90.2*255(9F139CC2)", "1-0:C.1.9*255(Point-ID)")


@pytest.mark.parametrize("message", [
    b"\x01B0\x03q",  # [EMH] break
    b"\x01P0\x02()\x03`",  # [EMH] operand request
    b"\x01P1\x02(00000000)\x03a",  # [EMH] password
    b"\x01R5\x020.9.2()\x03\\",  # [EMH] read date
    b"\x020.9.2(130103)\x039",  # [EMH] its answer
    b"\x01R5\x020.9.1()\x03_",  # [EMH] read time
    b"\x020.9.1(101415)\x03:",  # [EMH] its answer
    b"\x01W5\x021-0:0.9.129*255(1301031605000002)(00000000)\x03^",  # [EMH] write clock
    b"\x02" + "".join(f"{line}\r\n" for line in EMH_READOUT).encode() + b"!\r\n\x03+",
])
def test_a_vendor_manuals_exchanges_carry_the_block_check_characters_we_compute(
        message: bytes) -> None:
    assert codec.bcc(message[1:-1]) == message[-1]


def test_a_vendor_manuals_readout_parses_set_by_set() -> None:
    body = "".join(f"{line}\r\n" for line in EMH_READOUT).encode() + b"!\r\n\x03"
    sets = codec.parse_readout(b"\x02" + body + b"+")
    assert len(sets) == len(EMH_READOUT)
    first = sets[0]
    assert (first.obis, first.number, first.unit) == ("1-0:1.8.0", 0.0, "kWh")
    assert (sets[12].obis, sets[12].value, sets[12].unit) == ("1-0:0.8.4", "5", "min")
    assert sets[13].unit == "Imp/kWh" and sets[17].value == "Point-ID"
    ident = codec.parse_identification(b"/EMH5\\@D4EM4TIIW001--\r\n")  # [EMH]
    assert (ident.manufacturer, ident.baud) == ("EMH", 9600)
    assert codec.parse_ack(b"\x06050\r\n") == ("5", "0")  # [EMH] readout at 9600
    assert codec.parse_ack(b"\x06051\r\n") == ("5", "1")  # [EMH] programming mode


def test_a_billing_period_value_keeps_its_own_code() -> None:
    assert codec.obis_of("1-0:0.2.1*50") == "1-0:0.2.1*50"
    assert codec.obis_of("1.8.0*01") == "1-0:1.8.0*01"  # the register at the last reset
    assert codec.obis_of("1.8.0") == "1-0:1.8.0"
    sets = codec.parse_readout(codec.encode_readout(["1.8.0(001234.5*kWh)",
                                                     "1.8.0*01(001100.0*kWh)"]))
    assert {s.obis: s.number for s in sets} == {"1-0:1.8.0": 1234.5, "1-0:1.8.0*01": 1100.0}
