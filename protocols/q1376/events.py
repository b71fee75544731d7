"""Class 3 data (AFN 0E): the terminal's event records (ERC) and the page that holds them.

A page is `EC1 EC2 Pm Pn` then (Pn − Pm) mod 256 records, each `ERC Le data`. Every
record is kept with its raw bytes; the codes a head-end acts on are parsed further
(when, which point, started or ended). An unknown code is still a record: a terminal
from a newer edition must not make its page unreadable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocols.q1376 import formats as fm
from protocols.q1376.frame import FrameError

ERC_INIT = 1
ERC_VOLTAGE_LOOP = 10
ERC_CLOCK_DRIFT = 12
ERC_METER_FAULT = 13
ERC_POWER = 14
ERC_READ_FAILURE = 31
ERC_CLOCK_SET = 41

KINDS = {
    ERC_INIT: "terminal_reset",
    ERC_VOLTAGE_LOOP: "voltage_loss",
    ERC_CLOCK_DRIFT: "clock_drift",
    ERC_METER_FAULT: "meter_fault",
    ERC_POWER: "power_down",
    ERC_READ_FAILURE: "read_failure",
    ERC_CLOCK_SET: "clock_set",
}
"""ERC code → the Event kind the head-end stores."""

POINT_RECORDS = {ERC_VOLTAGE_LOOP, ERC_CLOCK_DRIFT, ERC_METER_FAULT, ERC_READ_FAILURE}
"""Records that carry `Tm` then the point (D0–D11) and a start flag (D15)."""


@dataclass(frozen=True, slots=True)
class Record:
    code: int
    data: bytes
    start: datetime | None = None
    end: datetime | None = None
    pn: int = 0
    began: bool = True
    """D15 of the point field: the condition started (True) or ended (False)."""
    before: datetime | None = None
    after: datetime | None = None

    @property
    def kind(self) -> str:
        return KINDS.get(self.code, f"erc{self.code}")

    def encode(self) -> bytes:
        return bytes([self.code, len(self.data)]) + self.data


def parse_record(code: int, data: bytes) -> Record:
    if code == ERC_POWER and len(data) >= 10:
        return Record(code, data, fm.decode_a15(data[:5]), fm.decode_a15(data[5:10]))
    if code in POINT_RECORDS and len(data) >= 7:
        point = int.from_bytes(data[5:7], "little")
        return Record(code, data, fm.decode_a15(data[:5]), pn=point & 0x0FFF,
                      began=bool(point & 0x8000))
    if code == ERC_CLOCK_SET and len(data) >= 14:
        point = int.from_bytes(data[:2], "little")
        before, after = fm.decode_a1(data[2:8]), fm.decode_a1(data[8:14])
        return Record(code, data, after, pn=point & 0x0FFF, before=before, after=after)
    if len(data) >= 5 and code != ERC_CLOCK_SET:
        return Record(code, data, fm.decode_a15(data[:5]))
    return Record(code, data)


def point_record(code: int, at: datetime, pn: int, *, began: bool = True,
                 extra: bytes = b"") -> Record:
    """A record of one of the point-carrying codes, as the simulator raises them."""
    field = (pn & 0x0FFF) | (0x8000 if began else 0)
    return parse_record(code, fm.encode_a15(at) + field.to_bytes(2, "little") + extra)


def power_record(down: datetime, up: datetime | None) -> Record:
    return parse_record(ERC_POWER, fm.encode_a15(down) + fm.encode_a15(up))


@dataclass(frozen=True, slots=True)
class EventPage:
    """EC1/EC2: the terminal's important and normal event counters; Pm..Pn the page."""

    ec1: int
    ec2: int
    pm: int
    pn: int
    records: tuple[Record, ...]

    @staticmethod
    def length(raw: bytes) -> int:
        if len(raw) < 4:
            raise FrameError(f"an event page needs 4 bytes, got {len(raw)}", raw=bytes(raw))
        count = (raw[3] - raw[2]) % 256
        at = 4
        for _ in range(count):
            if len(raw) < at + 2:
                raise FrameError("event page ends inside a record header", raw=bytes(raw))
            at += 2 + raw[at + 1]
        return at

    @classmethod
    def decode(cls, raw: bytes) -> EventPage:
        end = cls.length(raw)
        if len(raw) < end:
            raise FrameError("event page ends inside a record", raw=bytes(raw))
        records = []
        at = 4
        while at < end:
            code, le = raw[at], raw[at + 1]
            records.append(parse_record(code, bytes(raw[at + 2:at + 2 + le])))
            at += 2 + le
        return cls(raw[0], raw[1], raw[2], raw[3], tuple(records))

    def encode(self) -> bytes:
        return bytes([self.ec1, self.ec2, self.pm, self.pn]) + b"".join(
            r.encode() for r in self.records)
