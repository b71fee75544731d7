"""IEC 62056-21 mode C messages as pure functions over bytes.

The exchange, at 300 baud 7E1: the reader sends a sign-on request (`/?!` CR LF, or
with a device address `/?ADDR!`); the meter answers with its identification
(`/XXXZ` ident CR LF: manufacturer, the baud rate it offers as a character, its type);
the reader acknowledges with the option select (ACK 0 Z 0 CR LF: normal protocol, the
baud character, data readout mode) and both switch to that speed; the meter sends the
data readout: STX, lines of data sets `1.8.0(001234.56*kWh)`, `!` CR LF, ETX and the
block check character (the XOR of every byte after STX up to and including ETX).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model.resolution import decimals_of
from protocols.errors import ProtocolError

SOH, STX, ETX, ACK, NAK = 0x01, 0x02, 0x03, 0x06, 0x15
CRLF = b"\r\n"
BAUD_RATES = {"0": 300, "1": 600, "2": 1200, "3": 2400, "4": 4800, "5": 9600, "6": 19200}
"""Mode C baud characters."""
INITIAL_BAUD = 300


class Iec62056Error(ProtocolError):
    """A message that does not parse, or whose block check character is wrong."""


@dataclass(frozen=True, slots=True)
class Identification:
    manufacturer: str
    """Three letters (a lower-case third letter means the meter needs 20 ms answers)."""
    baud_char: str
    identification: str
    enhanced: str = ""
    """The enhanced-capability character after a backslash, if any."""

    @property
    def baud(self) -> int:
        return BAUD_RATES[self.baud_char]


@dataclass(frozen=True, slots=True)
class DataSet:
    address: str
    """As the meter wrote it: `1.8.0`, `1-0:1.8.0*255`, `F.F`, `C.1.0`."""
    value: str
    unit: str = ""
    extra: tuple[str, ...] = ()
    """Further parenthesised fields on the same set, e.g. a timestamp."""

    @property
    def obis(self) -> str:
        return obis_of(self.address)

    @property
    def number(self) -> float | None:
        try:
            return float(self.value)
        except ValueError:
            return None

    @property
    def decimals(self) -> int | None:
        """The digits after the point as the meter wrote them: `001234.567` has three."""
        return decimals_of(self.value)


def sign_on(address: str = "") -> bytes:
    if len(address) > 32 or not re.fullmatch(r"[0-9A-Za-z ]*", address):
        raise ValueError(f"device address {address!r}: up to 32 letters and digits")
    return f"/?{address}!".encode("ascii") + CRLF


def encode_identification(ident: Identification) -> bytes:
    enhanced = f"\\{ident.enhanced}" if ident.enhanced else ""
    return (f"/{ident.manufacturer}{ident.baud_char}{enhanced}{ident.identification}"
            .encode("ascii") + CRLF)


def parse_identification(line: bytes) -> Identification:
    text = line.decode("ascii", "replace").rstrip("\r\n")
    m = re.fullmatch(r"/([A-Za-z]{3})([0-9A-Z])(\\\w)?(.{1,16})", text)
    if m is None:
        raise Iec62056Error(f"not an identification message: {text[:40]!r}", raw=line)
    if m.group(2) not in BAUD_RATES:
        raise Iec62056Error(f"baud character {m.group(2)!r} is not a mode C speed (0–6): "
                            "the meter may speak mode A or B", raw=line)
    return Identification(m.group(1), m.group(2), m.group(4),
                          m.group(3)[1:] if m.group(3) else "")


def ack(baud_char: str, mode: str = "0") -> bytes:
    """The option select: normal protocol (0), this speed, data readout (0)."""
    if baud_char not in BAUD_RATES:
        raise ValueError(f"baud character {baud_char!r} is not 0–6")
    return bytes([ACK]) + f"0{baud_char}{mode}".encode("ascii") + CRLF


def parse_ack(message: bytes) -> tuple[str, str]:
    """(baud character, mode character) of an option select."""
    if len(message) < 6 or message[0] != ACK or not message.endswith(CRLF):
        raise Iec62056Error("not an acknowledgement/option select message", raw=message)
    return chr(message[2]), chr(message[3])


def bcc(data: bytes) -> int:
    out = 0
    for b in data:
        out ^= b
    return out


def encode_readout(lines: list[str]) -> bytes:
    body = "".join(f"{line}\r\n" for line in lines).encode("ascii") + b"!\r\n" + bytes([ETX])
    return bytes([STX]) + body + bytes([bcc(body)])


def readout_complete(buffer: bytes) -> bool:
    """Whether a data readout (through its BCC) has fully arrived."""
    at = buffer.find(bytes([ETX]))
    return at >= 0 and len(buffer) > at + 1


def parse_readout(message: bytes) -> list[DataSet]:
    """The data sets of a data readout, its block check character checked."""
    start = message.find(bytes([STX]))
    end = message.find(bytes([ETX]), start + 1)
    if start < 0 or end < 0 or end + 1 >= len(message):
        raise Iec62056Error("incomplete data readout (no STX … ETX BCC)", raw=message)
    body = message[start + 1:end + 1]
    got, want = message[end + 1], bcc(body)
    if got != want:
        raise Iec62056Error(f"block check character {got:02X}H, expected {want:02X}H: the "
                            "readout was corrupted on the way", raw=message)
    text = body[:-1].decode("ascii", "replace")
    out: list[DataSet] = []
    for line in text.split("\r\n"):
        if line in ("!", ""):
            continue
        out += parse_line(line)
    return out


_SET = re.compile(r"([^()]*)((?:\([^()]*\))+)")


def parse_line(line: str) -> list[DataSet]:
    """A data line: one or more data sets, each an address and its (value*unit) fields."""
    sets = []
    pos = 0
    for m in _SET.finditer(line):
        if m.start() != pos:
            break
        pos = m.end()
        fields = re.findall(r"\(([^()]*)\)", m.group(2))
        value, _, unit = fields[0].partition("*")
        sets.append(DataSet(m.group(1).strip(), value, unit, tuple(fields[1:])))
    if pos != len(line):
        raise Iec62056Error(f"data line does not parse: {line[:60]!r}")
    return sets


_SHORT = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})")


def obis_of(address: str) -> str:
    """The full OBIS code of a data set address: electricity (1-0:) for the short forms
    meters print (1.8.0 → 1-0:1.8.0), abstract (0-0:) for C = 0 or 96–99, and the
    address as written when it is neither (F.F, C.1.0). A billing period (`1.8.0*01`,
    the register at the last reset) stays on the code, so it is never taken for the
    current register; `*255` means the current value and is dropped."""
    code, _, period = address.partition("*")
    suffix = f"*{period}" if period and period != "255" else ""
    if re.fullmatch(r"\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}", code):
        return code + suffix
    m = _SHORT.fullmatch(code)
    if m is None:
        return address
    c = int(m.group(1))
    group = "0-0" if c == 0 or 96 <= c <= 99 else "1-0"
    return f"{group}:{code}{suffix}"
