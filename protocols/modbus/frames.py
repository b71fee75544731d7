"""Modbus PDUs and their RTU and TCP (MBAP) envelopes, as pure functions over bytes.

Only what a meter reader needs: read holding (03) and input (04) registers, and
exception replies. The same code frames requests in the collector and replies in the
RTU simulator, so a framing mistake fails a round-trip test.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from protocols.errors import ProtocolError

FC_READ_HOLDING = 0x03
FC_READ_INPUT = 0x04
FUNCTIONS = {"holding": FC_READ_HOLDING, "input": FC_READ_INPUT}
MAX_READ = 125

EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


MBAP_HEADER_LEN = 7


class ModbusFrameError(ProtocolError):
    """Bytes that are not a valid Modbus frame or reply."""


class ModbusExceptionReply(ProtocolError):
    """The device answered with a Modbus exception."""

    def __init__(self, function: int, code: int, *, meter: str = "", bus: str = "") -> None:
        self.function = function
        self.code = code
        text = EXCEPTIONS.get(code, "unknown exception")
        super().__init__(f"modbus exception {code} ({text}) to function {function:02X}H",
                         meter=meter, bus=bus)


@dataclass(frozen=True, slots=True)
class ReadRequest:
    unit: int
    function: int
    address: int
    count: int

    def __post_init__(self) -> None:
        if self.function not in (FC_READ_HOLDING, FC_READ_INPUT):
            raise ModbusFrameError(f"function {self.function:02X}H is not a register read")
        if not 1 <= self.count <= MAX_READ:
            raise ModbusFrameError(f"register count {self.count} outside 1..{MAX_READ}")
        if not 0 <= self.address <= 0xFFFF or self.address + self.count > 0x10000:
            raise ModbusFrameError(f"address range {self.address}+{self.count} outside 0..65535")
        if not 0 <= self.unit <= 247:
            raise ModbusFrameError(f"unit id {self.unit} outside 0..247")


def request_pdu(req: ReadRequest) -> bytes:
    return struct.pack(">BHH", req.function, req.address, req.count)


def parse_request_pdu(unit: int, pdu: bytes) -> ReadRequest:
    if len(pdu) != 5:
        raise ModbusFrameError(f"read request PDU must be 5 bytes, got {len(pdu)}", raw=pdu)
    function, address, count = struct.unpack(">BHH", pdu)
    return ReadRequest(unit, function, address, count)


def reply_pdu(function: int, registers: list[int]) -> bytes:
    body = struct.pack(f">{len(registers)}H", *registers)
    return bytes([function, len(body)]) + body


def exception_pdu(function: int, code: int) -> bytes:
    return bytes([function | 0x80, code])


def parse_reply_pdu(req: ReadRequest, pdu: bytes) -> list[int]:
    """Registers from a reply PDU; raise on exceptions, wrong function or wrong length."""
    if not pdu:
        raise ModbusFrameError("empty reply PDU")
    if pdu[0] == req.function | 0x80:
        if len(pdu) != 2:
            raise ModbusFrameError(f"exception reply must be 2 bytes, got {len(pdu)}", raw=pdu)
        raise ModbusExceptionReply(req.function, pdu[1])
    if pdu[0] != req.function:
        raise ModbusFrameError(f"reply function {pdu[0]:02X}H to a {req.function:02X}H request",
                               raw=pdu)
    if len(pdu) < 2 or pdu[1] != 2 * req.count or len(pdu) != 2 + pdu[1]:
        got = pdu[1] if len(pdu) > 1 else 0
        raise ModbusFrameError(
            f"reply carries {got} data bytes ({len(pdu) - 2} present), "
            f"expected {2 * req.count} for {req.count} registers",
            raw=pdu,
        )
    return list(struct.unpack(f">{req.count}H", pdu[2:]))


# --- RTU -------------------------------------------------------------------------------


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def rtu_frame(unit: int, pdu: bytes) -> bytes:
    body = bytes([unit]) + pdu
    return body + struct.pack("<H", crc16(body))


def rtu_unwrap(frame: bytes) -> tuple[int, bytes]:
    if len(frame) < 4:
        raise ModbusFrameError(f"RTU frame too short: {len(frame)} bytes", raw=frame)
    body, (crc,) = frame[:-2], struct.unpack("<H", frame[-2:])
    if crc16(body) != crc:
        raise ModbusFrameError(f"bad RTU CRC: got {crc:04X}H, expected {crc16(body):04X}H",
                               raw=frame)
    return body[0], body[1:]


def rtu_reply_length(buf: bytes, function: int) -> int | None:
    """Length of the RTU reply at the start of `buf`, or None while it is incomplete."""
    if len(buf) < 3:
        return None
    if buf[1] == function | 0x80:
        return 5
    return 5 + buf[2]


RTU_REQUEST_LEN = 8


# --- TCP (MBAP) ------------------------------------------------------------------------


def mbap_frame(transaction: int, unit: int, pdu: bytes) -> bytes:
    return struct.pack(">HHHB", transaction & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


MBAP_HEADER = 7


def mbap_unwrap_header(header: bytes) -> tuple[int, int, int]:
    """(transaction id, unit, PDU length) from the 7-byte MBAP header."""
    if len(header) != MBAP_HEADER_LEN:
        raise ModbusFrameError(f"MBAP header has {len(header)} bytes, needs "
                               f"{MBAP_HEADER_LEN}", raw=header)
    transaction, protocol, length, unit = struct.unpack(">HHHB", header)
    if protocol != 0:
        raise ModbusFrameError(f"MBAP protocol id {protocol} is not Modbus (0)", raw=header)
    if not 2 <= length <= 254:
        raise ModbusFrameError(f"MBAP length {length} out of range", raw=header)
    return transaction, unit, length - 1
