"""The 1376.1 link frame: `68 L L 68 C A AFN SEQ units [AUX] CS 16`.

A frame is self-delimiting (the length is sent twice), so a TCP byte stream is cut into
frames here too (`FrameBuffer`), with the length bounded before any byte of the body is
awaited: a terminal claiming a 16 KB frame must not make the front end wait or buffer
for it unless the operator allows frames that long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.errors import ProtocolError

START = 0x68
END = 0x16
PROTOCOL_ID = 2
"""D0–D1 of the length field for 1376.1 (1 was the 2005 draft; 0 is forbidden)."""
MAX_LENGTH = 0x3FFF
"""The length field's 14 bits: C + A + user data."""
HEADER = 6
FIXED = 1 + 5 + 1 + 1  # C, A, AFN, SEQ

PW_LEN = 16
EC_LEN = 2
TP_LEN = 6

# AFN
AFN_CONFIRM = 0x00
AFN_RESET = 0x01
AFN_LINK = 0x02
AFN_SET = 0x04
AFN_CONTROL = 0x05
AFN_AUTH = 0x06
AFN_QUERY = 0x0A
AFN_CLASS1 = 0x0C
AFN_CLASS2 = 0x0D
AFN_CLASS3 = 0x0E
AFN_FILE = 0x0F
AFN_FORWARD = 0x10
PW_AFNS = frozenset({AFN_RESET, AFN_SET, AFN_CONTROL, AFN_AUTH, AFN_FILE, AFN_FORWARD})
"""Downlink AFNs that carry the 16-byte message authentication (PW)."""

# Function codes, PRM = 1 (from the initiating station).
FN_RESET = 1
FN_USER_DATA = 4
FN_LINK_TEST = 9
FN_REQUEST_CLASS1 = 10
FN_REQUEST_CLASS2 = 11
# PRM = 0 (the responding station).
FN_CONFIRM = 0
FN_RESPONSE = 8
FN_NO_DATA = 9
FN_LINK_STATUS = 11

DIR_UP = 0x80
PRM = 0x40
FCB_ACD = 0x20
FCV = 0x10

TPV = 0x80
FIR = 0x40
FIN = 0x20
CON = 0x10


class FrameError(ProtocolError):
    """The bytes are not a valid 1376.1 frame; the message says what and where."""


@dataclass(frozen=True, slots=True)
class Address:
    """A1 area code (4 BCD digits as text), A2 terminal number, A3 master and group flag."""

    area: str
    terminal: int
    master: int = 0
    group: bool = False

    def __post_init__(self) -> None:
        if len(self.area) != 4 or not self.area.isdigit():
            raise FrameError(f"area code {self.area!r} must be 4 decimal digits")
        if not 0 <= self.terminal <= 0xFFFF:
            raise FrameError(f"terminal address {self.terminal} is outside 0–65535")
        if not 0 <= self.master <= 127:
            raise FrameError(f"master address {self.master} is outside 0–127")

    @property
    def text(self) -> str:
        """How the address is written in configuration: area code and terminal number."""
        return f"{self.area}-{self.terminal:05d}"

    @classmethod
    def parse(cls, text: str, master: int = 0) -> Address:
        area, sep, number = text.partition("-")
        if not sep or not number.isdigit():
            raise FrameError(f"terminal address {text!r} must look like 4101-00001")
        return cls(area, int(number), master)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame. `body` holds the data units; the auxiliary fields are split off."""

    control: int
    address: Address
    afn: int
    seq: int
    body: bytes = b""
    pw: bytes | None = None
    ec: tuple[int, int] | None = None
    tp: bytes | None = None
    """The raw 6-byte time tag (PFC, send time s m h d, allowed delay in minutes)."""

    @property
    def is_uplink(self) -> bool:
        return bool(self.control & DIR_UP)

    @property
    def from_initiator(self) -> bool:
        return bool(self.control & PRM)

    @property
    def function(self) -> int:
        return self.control & 0x0F

    @property
    def pseq(self) -> int:
        return self.seq & 0x0F

    @property
    def first(self) -> bool:
        return bool(self.seq & FIR)

    @property
    def last(self) -> bool:
        return bool(self.seq & FIN)

    @property
    def wants_confirm(self) -> bool:
        return bool(self.seq & CON)

    @property
    def events_pending(self) -> bool:
        """ACD: the terminal has important events waiting (uplink only)."""
        return self.is_uplink and bool(self.control & FCB_ACD)


def control(*, up: bool, prm: bool, function: int, fcb_acd: bool = False,
            fcv: bool = False) -> int:
    if not 0 <= function <= 15:
        raise FrameError(f"function code {function} is outside 0–15")
    return ((DIR_UP if up else 0) | (PRM if prm else 0) | (FCB_ACD if fcb_acd else 0)
            | (FCV if fcv else 0) | function)


def seq_field(pseq: int, *, first: bool = True, last: bool = True, con: bool = False,
              tpv: bool = False) -> int:
    return ((TPV if tpv else 0) | (FIR if first else 0) | (FIN if last else 0)
            | (CON if con else 0) | (pseq & 0x0F))


def encode_address(address: Address) -> bytes:
    a1 = bytes([int(address.area[2:], 16), int(address.area[:2], 16)])
    return a1 + address.terminal.to_bytes(2, "little") + bytes(
        [(address.master << 1) | int(address.group)])


def decode_address(raw: bytes) -> Address:
    lo, hi = raw[0], raw[1]
    for b in (lo, hi):
        if (b >> 4) > 9 or (b & 0x0F) > 9:
            raise FrameError(f"area code bytes {raw[:2].hex(' ')} are not BCD", raw=raw)
    area = f"{hi:02X}{lo:02X}"
    return Address(area, int.from_bytes(raw[2:4], "little"), raw[4] >> 1, bool(raw[4] & 1))


def _aux_lengths(c: int, afn: int, seq: int) -> tuple[int, int, int]:
    up = bool(c & DIR_UP)
    pw = PW_LEN if (not up and afn in PW_AFNS) else 0
    ec = EC_LEN if (up and c & FCB_ACD) else 0
    tp = TP_LEN if seq & TPV else 0
    return pw, ec, tp


def encode(frame: Frame) -> bytes:
    pw_len, ec_len, tp_len = _aux_lengths(frame.control, frame.afn, frame.seq)
    aux = b""
    if pw_len:
        pw = frame.pw if frame.pw is not None else bytes(PW_LEN)
        if len(pw) != PW_LEN:
            raise FrameError(f"PW must be {PW_LEN} bytes, got {len(pw)}")
        aux += pw
    if ec_len:
        ec = frame.ec or (0, 0)
        aux += bytes(ec)
    if tp_len:
        if frame.tp is None or len(frame.tp) != TP_LEN:
            raise FrameError("TpV is set but no 6-byte time tag was given")
        aux += frame.tp
    user = (bytes([frame.control]) + encode_address(frame.address)
            + bytes([frame.afn, frame.seq]) + frame.body + aux)
    if len(user) > MAX_LENGTH:
        raise FrameError(f"frame length {len(user)} exceeds {MAX_LENGTH}")
    ln = ((len(user) << 2) | PROTOCOL_ID).to_bytes(2, "little")
    return bytes([START]) + ln + ln + bytes([START]) + user + bytes([sum(user) & 0xFF, END])


def declared_length(head: bytes) -> int:
    """The whole frame's length from its 6-byte header, after checking the header."""
    if head[0] != START or head[5] != START:
        raise FrameError("frame does not start with 68 L L 68", raw=bytes(head[:6]))
    l1, l2 = head[1:3], head[3:5]
    if l1 != l2:
        raise FrameError(f"the two length fields differ ({l1.hex()} / {l2.hex()})",
                         raw=bytes(head[:6]))
    value = int.from_bytes(l1, "little")
    if value & 0x03 != PROTOCOL_ID:
        raise FrameError(f"protocol identifier {value & 3} is not 2 (1376.1)",
                         raw=bytes(head[:6]))
    length = value >> 2
    if length < FIXED:
        raise FrameError(f"length {length} is shorter than C + A + AFN + SEQ",
                         raw=bytes(head[:6]))
    return HEADER + length + 2


def decode(raw: bytes) -> Frame:
    """One whole frame; any flaw is a FrameError naming it."""
    if len(raw) < HEADER + FIXED + 2:
        raise FrameError(f"{len(raw)} bytes is too short for a frame", raw=raw)
    total = declared_length(raw)
    if len(raw) != total:
        raise FrameError(f"frame is {len(raw)} bytes but its length field says {total}",
                         raw=raw)
    user = raw[HEADER:-2]
    if raw[-1] != END:
        raise FrameError(f"frame ends with {raw[-1]:02X}, not 16", raw=raw)
    if sum(user) & 0xFF != raw[-2]:
        raise FrameError(f"checksum {raw[-2]:02X} != {sum(user) & 0xFF:02X}", raw=raw)
    c, afn, seq = user[0], user[6], user[7]
    pw_len, ec_len, tp_len = _aux_lengths(c, afn, seq)
    aux = pw_len + ec_len + tp_len
    if FIXED + aux > len(user):
        raise FrameError(f"frame too short for its auxiliary field ({aux} bytes)", raw=raw)
    end = len(user) - aux
    body = bytes(user[FIXED:end])
    at = end
    pw = ec = tp = None
    if pw_len:
        pw = bytes(user[at:at + pw_len])
        at += pw_len
    if ec_len:
        ec = (user[at], user[at + 1])
        at += ec_len
    if tp_len:
        tp = bytes(user[at:at + tp_len])
    return Frame(c, decode_address(user[1:6]), afn, seq, body, pw, ec, tp)


@dataclass
class FrameBuffer:
    """Cuts a byte stream into frames; garbage before a frame is skipped and reported.

    `max_frame` bounds what one peer can make us hold: a header declaring more is a
    FrameError before its body is awaited, and the stream resynchronises at the next 68.
    """

    max_frame: int = 2048
    _data: bytearray = field(default_factory=bytearray)
    skipped: int = 0
    _resyncing: bool = False
    """A fault was reported and no good frame has come since: more garbage of the same
    run is skipped without a second report."""

    def feed(self, chunk: bytes) -> None:
        self._data += chunk

    def __len__(self) -> int:
        return len(self._data)

    def next_frame(self) -> bytes | None:
        """The next whole frame's bytes, None if more are needed; FrameError on a bad one
        (its bytes are dropped so the caller can carry on with the rest)."""
        data = self._data
        error: FrameError | None = None
        while True:
            start = data.find(START)
            if start < 0:
                self.skipped += len(data)
                data.clear()
                break
            if start:
                self.skipped += start
                del data[:start]
            if len(data) < HEADER:
                break
            try:
                total = declared_length(bytes(data[:HEADER]))
                if total > self.max_frame:
                    raise FrameError(f"declared frame length {total} exceeds the limit of "
                                     f"{self.max_frame}", raw=bytes(data[:HEADER]))
            except FrameError as exc:
                # Resynchronise at the next plausible header; report the first fault once.
                if not self._resyncing:
                    error = error or exc
                del data[:1]
                self.skipped += 1
                continue
            if error is not None:
                self._resyncing = True
                raise error
            if len(data) < total:
                return None
            raw = bytes(data[:total])
            del data[:total]
            self._resyncing = False
            return raw
        if error is not None:
            self._resyncing = True
            raise error
        return None
