"""AFN 0A/04 F10: the terminal's measuring-point table, pn → the meter it reads.

The head-end keeps its own idea of which meter each pn is; reading this table and
comparing is how a swapped meter or a re-numbered point shows up as a flag instead of
a month of one customer's energy billed to another.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocols.q1376.frame import FrameError

ENTRY = 27
PROTOCOL_DLT645_2007 = 30
PROTOCOL_DLT645_1997 = 1
PROTOCOL_AC_SAMPLING = 2
BAUDS = (0, 600, 1200, 2400, 4800, 7200, 9600, 19200)


@dataclass(frozen=True, slots=True)
class PointEntry:
    index: int
    pn: int
    port: int
    baud: int
    protocol: int
    meter_address: str
    """The meter's 12-digit communication address (its DL/T 645 address)."""
    tariffs: int = 4
    collector_address: str = "000000000000"

    def encode(self) -> bytes:
        code = BAUDS.index(self.baud) if self.baud in BAUDS else 3
        return (self.index.to_bytes(2, "little") + self.pn.to_bytes(2, "little")
                + bytes([code << 5 | (self.port & 0x1F), self.protocol])
                + _address(self.meter_address) + bytes(6) + bytes([self.tariffs, 0])
                + _address(self.collector_address) + b"\x00")


def _address(text: str) -> bytes:
    if len(text) != 12 or not text.isdigit():
        raise FrameError(f"meter address {text!r} must be 12 decimal digits")
    return bytes(int(text[i:i + 2], 16) for i in range(10, -2, -2))


def _text(raw: bytes) -> str:
    for b in raw:
        if b >> 4 > 9 or b & 0x0F > 9:
            raise FrameError(f"meter address {raw.hex(' ')} is not BCD", raw=bytes(raw))
    return "".join(f"{b:02X}" for b in reversed(raw))


def decode_entry(raw: bytes) -> PointEntry:
    if len(raw) < ENTRY:
        raise FrameError(f"a point entry needs {ENTRY} bytes, got {len(raw)}", raw=bytes(raw))
    rate = raw[4]
    return PointEntry(int.from_bytes(raw[0:2], "little"), int.from_bytes(raw[2:4], "little"),
                      rate & 0x1F, BAUDS[rate >> 5], raw[5], _text(raw[6:12]),
                      raw[18], _text(raw[20:26]))


def table_length(raw: bytes) -> int:
    if len(raw) < 2:
        raise FrameError("a point table needs its 2-byte count", raw=bytes(raw))
    return 2 + int.from_bytes(raw[:2], "little") * ENTRY


def decode_table(raw: bytes) -> tuple[PointEntry, ...]:
    n = int.from_bytes(raw[:2], "little")
    if len(raw) < 2 + n * ENTRY:
        raise FrameError(f"point table of {n} entries is cut short", raw=bytes(raw))
    return tuple(decode_entry(raw[2 + i * ENTRY:2 + (i + 1) * ENTRY]) for i in range(n))


def encode_table(entries: tuple[PointEntry, ...] | list[PointEntry]) -> bytes:
    return len(entries).to_bytes(2, "little") + b"".join(e.encode() for e in entries)


def encode_query(indexes: list[int]) -> bytes:
    return len(indexes).to_bytes(2, "little") + b"".join(
        i.to_bytes(2, "little") for i in indexes)


def query_length(raw: bytes) -> int:
    if len(raw) < 2:
        raise FrameError("a point query needs its 2-byte count", raw=bytes(raw))
    return 2 + int.from_bytes(raw[:2], "little") * 2


def decode_query(raw: bytes) -> list[int]:
    n = int.from_bytes(raw[:2], "little")
    if len(raw) < 2 + 2 * n:
        raise FrameError("point query is cut short", raw=bytes(raw))
    return [int.from_bytes(raw[2 + 2 * i:4 + 2 * i], "little") for i in range(n)]
