"""DL/T 645-2007 framing as pure functions over bytes (sans-I/O, in the style of h11).

Nothing here touches a port or a clock, so every rule of the standard can be pinned by
byte vectors and property tests, and the simulator can speak the same language.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocols.errors import ProtocolError

PREAMBLE = b"\xfe\xfe\xfe\xfe"
START = 0x68
END = 0x16
SCRAMBLE = 0x33
WILDCARD_ADDRESS = "AAAAAAAAAAAA"
BROADCAST_ADDRESS = "999999999999"
MAX_DATA = 255
HEADER_LEN = 10  # 68 A0..A5 68 C L
OVERHEAD = 12  # header + CS + 16

# Function codes (D4..D0 of the control byte).
FN_TIME_SYNC = 0x08
FN_READ = 0x11
FN_READ_FOLLOWUP = 0x12
FN_READ_ADDRESS = 0x13
FN_REMOTE_CONTROL = 0x1C

# Remote-control commands (N1 of a 1CH frame), DL/T 645-2007 as amended for cost control.
RC_TRIP = 0x1A
RC_CLOSE_PERMITTED = 0x1B
RC_CLOSE = 0x1C
RC_ALARM = 0x2A
RC_ALARM_CLEAR = 0x2B
RC_KEEP_POWER = 0x3A
RC_KEEP_POWER_CLEAR = 0x3B
RC_NAMES = {RC_TRIP: "trip", RC_CLOSE_PERMITTED: "close permitted", RC_CLOSE: "direct close",
            RC_ALARM: "alarm", RC_ALARM_CLEAR: "alarm cleared", RC_KEEP_POWER: "keep power",
            RC_KEEP_POWER_CLEAR: "keep power cleared"}

DIR_REPLY = 0x80
ABNORMAL = 0x40
FOLLOWS = 0x20

ERROR_BITS = {
    0: "other error",
    1: "no data requested / no such item",
    2: "password error / unauthorised",
    3: "baud rate cannot be changed",
    4: "too many annual time zones",
    5: "too many daily periods",
    6: "too many tariffs",
}


class FrameError(ProtocolError):
    """The bytes are not a valid DL/T 645 frame; the message says what and where."""


class MeterErrorReply(ProtocolError):
    """The meter answered with an abnormal (D1H-style) reply."""

    def __init__(self, code: int, *, meter: str = "", bus: str = "", raw: bytes = b"") -> None:
        self.code = code
        self.reasons = describe_error(code)
        super().__init__(
            f"meter error reply {code:02X}H: {', '.join(self.reasons)}",
            meter=meter,
            bus=bus,
            raw=raw,
        )


def describe_error(code: int) -> list[str]:
    words = [text for bit, text in ERROR_BITS.items() if code & (1 << bit)]
    return words or ["unspecified error"]


@dataclass(frozen=True, slots=True)
class Frame:
    """A frame with its data already unscrambled (the +33H removed)."""

    address: str
    control: int
    data: bytes = b""

    @property
    def function(self) -> int:
        return self.control & 0x1F

    @property
    def is_reply(self) -> bool:
        return bool(self.control & DIR_REPLY)

    @property
    def is_abnormal(self) -> bool:
        return bool(self.control & ABNORMAL)

    @property
    def has_followup(self) -> bool:
        return bool(self.control & FOLLOWS)


# --- addresses -------------------------------------------------------------------------


def _check_address_text(address: str) -> str:
    text = address.upper()
    if len(text) != 12:
        raise FrameError(f"address {address!r} must have 12 digits")
    for i in range(0, 12, 2):
        pair = text[i : i + 2]
        if pair != "AA" and not pair.isdigit():
            raise FrameError(f"address {address!r}: {pair!r} is neither BCD digits nor AA")
    return text


def encode_address(address: str) -> bytes:
    """Address as printed on the meter → 6 wire bytes, low byte first."""
    text = _check_address_text(address)
    return bytes(int(text[i : i + 2], 16) for i in range(10, -1, -2))


def decode_address(raw: bytes) -> str:
    if len(raw) != 6:
        raise FrameError(f"address needs 6 bytes, got {len(raw)}", raw=raw)
    out = []
    for pos, byte in enumerate(reversed(raw)):
        if byte == 0xAA:
            out.append("AA")
        elif (byte >> 4) > 9 or (byte & 0x0F) > 9:
            raise FrameError(f"address byte {5 - pos} is {byte:02X}H, not BCD", raw=raw)
        else:
            out.append(f"{byte:02X}")
    return "".join(out)


def address_matches(pattern: str, address: str) -> bool:
    """Per-byte wildcard match, as meters apply AAH in the address field."""
    p, a = pattern.upper(), address.upper()
    return all(p[i : i + 2] in ("AA", a[i : i + 2]) for i in range(0, 12, 2))


# --- frames ----------------------------------------------------------------------------


def checksum(body: bytes) -> int:
    return sum(body) & 0xFF


def encode(frame: Frame, *, preamble: bytes = PREAMBLE) -> bytes:
    if len(frame.data) > MAX_DATA:
        raise FrameError(f"data is {len(frame.data)} bytes, at most {MAX_DATA} fit")
    if not 0 <= frame.control <= 0xFF:
        raise FrameError(f"control code {frame.control} does not fit a byte")
    body = (
        bytes([START])
        + encode_address(frame.address)
        + bytes([START, frame.control, len(frame.data)])
        + bytes((b + SCRAMBLE) & 0xFF for b in frame.data)
    )
    return preamble + body + bytes([checksum(body), END])


def frame_length_at(buf: bytes, start: int) -> int | None:
    """Total length of the frame starting at `start`, or None while the header is short."""
    if len(buf) - start < HEADER_LEN:
        return None
    return OVERHEAD + buf[start + 9]


def decode(raw: bytes) -> Frame:
    """Decode exactly one frame (leading FE preamble allowed)."""
    i = 0
    while i < len(raw) and raw[i] == 0xFE:
        i += 1
    frame, used = _decode_at(raw, i)
    if i + used != len(raw):
        raise FrameError(
            f"{len(raw) - i - used} trailing bytes after the frame end at offset {i + used}",
            raw=raw,
        )
    return frame


def _decode_at(raw: bytes, i: int) -> tuple[Frame, int]:
    if len(raw) - i < OVERHEAD:
        raise FrameError(f"frame too short: {len(raw) - i} bytes from offset {i}", raw=raw)
    if raw[i] != START:
        raise FrameError(f"expected start 68H at offset {i}, got {raw[i]:02X}H", raw=raw)
    if raw[i + 7] != START:
        raise FrameError(
            f"expected second 68H at offset {i + 7}, got {raw[i + 7]:02X}H", raw=raw
        )
    length = raw[i + 9]
    total = OVERHEAD + length
    if len(raw) - i < total:
        raise FrameError(
            f"length byte says {length} data bytes but only {len(raw) - i - OVERHEAD} follow",
            raw=raw,
        )
    cs_at = i + HEADER_LEN + length
    expected = checksum(raw[i:cs_at])
    if raw[cs_at] != expected:
        raise FrameError(
            f"bad checksum at offset {cs_at}: got {raw[cs_at]:02X}H, expected {expected:02X}H",
            raw=raw,
        )
    if raw[cs_at + 1] != END:
        raise FrameError(
            f"expected end 16H at offset {cs_at + 1}, got {raw[cs_at + 1]:02X}H", raw=raw
        )
    address = decode_address(raw[i + 1 : i + 7])
    data = bytes((b - SCRAMBLE) & 0xFF for b in raw[i + HEADER_LEN : cs_at])
    return Frame(address, raw[i + 8], data), total


class FrameReader:
    """Resynchronising stream decoder: skips preambles and line garbage between frames.

    RS-485 buses pick up noise and half-frames from collisions; a reader that gave up on
    the first bad byte would lose the good frame right behind it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.discarded = 0

    def feed(self, data: bytes) -> None:
        self._buf += data

    def __len__(self) -> int:
        return len(self._buf)

    def next(self) -> Frame | FrameError | None:
        """The next frame, an error for a frame-shaped run of bad bytes, or None for 'need more'."""
        while True:
            start = self._buf.find(START)
            if start < 0:
                self.discarded += len(self._buf)
                self._buf.clear()
                return None
            if start:
                self.discarded += start
                del self._buf[:start]
            if len(self._buf) >= 8 and self._buf[7] != START:
                # Not a header: drop this 68H and look for the next one.
                self.discarded += 1
                del self._buf[:1]
                continue
            total = frame_length_at(bytes(self._buf), 0)
            if total is None or len(self._buf) < total:
                return None
            candidate = bytes(self._buf[:total])
            try:
                frame, _ = _decode_at(candidate, 0)
            except FrameError as exc:
                self.discarded += 1
                del self._buf[:1]
                return exc
            del self._buf[:total]
            return frame


# --- requests --------------------------------------------------------------------------


def di_bytes(di: int) -> bytes:
    """Data identifier DI3..DI0 as written in the standard → wire order DI0 first."""
    return di.to_bytes(4, "little")


def read_request(address: str, di: int, extra: bytes = b"") -> Frame:
    """`extra` follows the DI for items that take parameters (a load-profile block)."""
    return Frame(address, FN_READ, di_bytes(di) + extra)


def read_followup_request(address: str, di: int, seq: int) -> Frame:
    return Frame(address, FN_READ_FOLLOWUP, di_bytes(di) + bytes([seq & 0xFF]))


def read_address_request(pattern: str = WILDCARD_ADDRESS) -> Frame:
    return Frame(pattern, FN_READ_ADDRESS)


def time_sync_request(local_time: datetime) -> Frame:
    """Broadcast time sync, data ssmmhhDDMMYY in the meters' own local time."""
    fields = (
        local_time.second,
        local_time.minute,
        local_time.hour,
        local_time.day,
        local_time.month,
        local_time.year % 100,
    )
    return Frame(BROADCAST_ADDRESS, FN_TIME_SYNC, bytes(to_bcd_byte(v) for v in fields))


def to_bcd_byte(value: int) -> int:
    return ((value // 10) << 4) | (value % 10)


# --- replies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadReply:
    di: int
    payload: bytes
    more: bool
    seq: int | None = None


def parse_read_reply(frame: Frame, *, expected_di: int | None = None) -> ReadReply:
    """Interpret a 91H/B1H or 92H/B2H reply; raise MeterErrorReply on D1H/D2H."""
    if not frame.is_reply:
        raise FrameError(f"control {frame.control:02X}H is a request, not a reply")
    if frame.function not in (FN_READ, FN_READ_FOLLOWUP):
        raise FrameError(f"control {frame.control:02X}H is not a read reply")
    if frame.is_abnormal:
        code = frame.data[0] if frame.data else 0
        raise MeterErrorReply(code, meter=frame.address)
    if len(frame.data) < 4:
        raise FrameError(f"read reply has {len(frame.data)} data bytes, needs a 4-byte DI")
    di = int.from_bytes(frame.data[:4], "little")
    if expected_di is not None and di != expected_di:
        raise FrameError(f"reply is for DI {di:08X}, asked for {expected_di:08X}")
    payload = frame.data[4:]
    seq = None
    if frame.function == FN_READ_FOLLOWUP:
        if not payload:
            raise FrameError("follow-up reply has no sequence byte")
        payload, seq = payload[:-1], payload[-1]
    return ReadReply(di, payload, frame.has_followup, seq)


def read_reply(address: str, di: int, payload: bytes, *, more: bool = False) -> Frame:
    control = DIR_REPLY | FN_READ | (FOLLOWS if more else 0)
    return Frame(address, control, di_bytes(di) + payload)


def followup_reply(address: str, di: int, payload: bytes, seq: int, *, more: bool) -> Frame:
    control = DIR_REPLY | FN_READ_FOLLOWUP | (FOLLOWS if more else 0)
    return Frame(address, control, di_bytes(di) + payload + bytes([seq & 0xFF]))


def error_reply(address: str, code: int, function: int = FN_READ) -> Frame:
    return Frame(address, DIR_REPLY | ABNORMAL | function, bytes([code]))


def address_reply(address: str) -> Frame:
    return Frame(address, DIR_REPLY | FN_READ_ADDRESS, encode_address(address))


def parse_address_reply(frame: Frame) -> str:
    if frame.control != DIR_REPLY | FN_READ_ADDRESS:
        raise FrameError(f"control {frame.control:02X}H is not an address reply (93H)")
    return decode_address(frame.data)


@dataclass(frozen=True, slots=True)
class RemoteControl:
    password: bytes
    """PA P0 P1 P2: the password level and three bytes."""
    operator: str
    """Eight digits."""
    command: int
    valid_until: tuple[int, int, int, int, int, int]
    """(year, month, day, hour, minute, second) in the meter's local time."""


def remote_control_request(address: str, password: bytes, operator: str, command: int,
                           valid_until: datetime) -> Frame:
    """A 1CH frame: password, operator code, N1 command, a reserved byte and the 6-byte
    BCD time after which the meter must refuse the command (the plain 2007 form; field
    meters wrap it in ESAM encryption)."""
    if len(password) != 4:
        raise FrameError(f"a remote-control password is 4 bytes, got {len(password)}")
    if len(operator) != 8 or not operator.isdigit():
        raise FrameError(f"the operator code is 8 digits, got {operator!r}")
    if command not in RC_NAMES:
        raise FrameError(f"{command:02X}H is not a remote-control command")
    op = bytes(int(operator[i:i + 2], 16) for i in range(6, -1, -2))
    t = valid_until
    when = bytes(to_bcd_byte(v) for v in (t.second, t.minute, t.hour, t.day, t.month,
                                          t.year % 100))
    return Frame(address, FN_REMOTE_CONTROL, password + op + bytes([command, 0]) + when)


def parse_remote_control(frame: Frame) -> RemoteControl:
    if frame.function != FN_REMOTE_CONTROL or frame.is_reply:
        raise FrameError(f"control {frame.control:02X}H is not a remote-control request")
    if len(frame.data) != 16:
        raise FrameError(f"a remote-control request has 16 data bytes, got {len(frame.data)}")
    d = frame.data
    operator = "".join(f"{b:02X}" for b in reversed(d[4:8]))
    ss, mi, hh, dd, mo, yy = (int(f"{b:02X}") for b in d[10:16])
    return RemoteControl(bytes(d[:4]), operator, d[8], (2000 + yy, mo, dd, hh, mi, ss))


def remote_control_reply(address: str) -> Frame:
    return Frame(address, DIR_REPLY | FN_REMOTE_CONTROL, b"")


def check_remote_control_reply(frame: Frame) -> None:
    """Return on a 9CH acknowledgement; raise MeterErrorReply on DCH."""
    if frame.function != FN_REMOTE_CONTROL or not frame.is_reply:
        raise FrameError(f"control {frame.control:02X}H is not a remote-control reply")
    if frame.is_abnormal:
        raise MeterErrorReply(frame.data[0] if frame.data else 0, meter=frame.address)
