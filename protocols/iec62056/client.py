"""The optical probe's transport: a thin async adapter around the codec. It opens the
port at 300 baud 7E1, signs on, switches to the speed the meter offers (or less), and
takes the data readout."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from protocols.errors import ResponseTimeout
from protocols.iec62056 import codec
from protocols.iec62056.codec import BAUD_RATES, DataSet, Identification
from protocols.serial import LineSettings, SerialPort

OPENING = LineSettings(codec.INITIAL_BAUD, "E", bytesize=7)


@dataclass(frozen=True, slots=True)
class Readout:
    identification: Identification
    baud: int
    data: list[DataSet]


async def _until(port: SerialPort, done: Callable[[bytes], bool], deadline: float,
                 what: str) -> bytes:
    got = b""
    while True:
        try:
            got += await port.read_some(deadline)
        except ResponseTimeout:
            raise ResponseTimeout(what, bus=port.port, raw=got) from None
        if done(got):
            return got


async def read_out(port: SerialPort, address: str = "", max_baud: int | None = None,
                   answer_s: float = 2.0, readout_s: float = 20.0) -> Readout:
    """One mode C data readout through an open port (at 300 baud 7E1)."""
    request = codec.sign_on(address)
    port.discard_input()
    await port.write(request)
    lines = await _until(
        port, lambda b: b.count(b"\r\n") >= (2 if b.startswith(request) else 1),
        time.monotonic() + answer_s,
        "no answer to the sign-on: is the probe on the meter's optical port, its cable "
        "pointing down, and the meter one that speaks IEC 62056-21?")
    if lines.startswith(request):
        lines = lines[len(request):]  # a half-duplex probe hears itself
    ident = codec.parse_identification(lines.split(b"\r\n")[0] + b"\r\n")
    char = ident.baud_char
    if max_baud is not None and ident.baud > max_baud:
        char = max(c for c, b in BAUD_RATES.items() if b <= max_baud)
    await port.write(codec.ack(char))
    if BAUD_RATES[char] != port.settings.baud:
        await port.set_baud(BAUD_RATES[char])
    data = await _until(port, codec.readout_complete, time.monotonic() + readout_s,
                        f"the meter ({ident.manufacturer} {ident.identification}) stopped "
                        f"answering after the switch to {BAUD_RATES[char]} baud: try "
                        f"--max-baud {BAUD_RATES[char] // 2 or 300}")
    return Readout(ident, BAUD_RATES[char], codec.parse_readout(data))


async def open_probe(path: str) -> SerialPort:
    """The probe's port at the opening speed, 300 baud 7E1."""
    port = SerialPort(path, OPENING)
    await port.open()
    return port
