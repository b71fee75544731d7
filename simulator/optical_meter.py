"""A meter's optical port on a pty, speaking IEC 62056-21 mode C: it answers a sign-on
with its identification, honours the baud switch (it sends the readout only once the
reader's side of the pty runs at the agreed speed, as a real meter's bytes would be
noise at any other), and sends its data readout from a register bank."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from protocols.iec62056 import codec
from protocols.iec62056.codec import BAUD_RATES, Identification
from simulator.instant import instantaneous
from simulator.load import LoadModel
from simulator.registers import RegisterBank

SPEEDS = {300: termios.B300, 600: termios.B600, 1200: termios.B1200, 2400: termios.B2400,
          4800: termios.B4800, 9600: termios.B9600, 19200: termios.B19200}


@dataclass
class SimulatedOpticalMeter:
    serial: str
    load: LoadModel
    registers: RegisterBank
    now: Callable[[], datetime]
    identification: Identification = field(
        default_factory=lambda: Identification("SIM", "5", "MC-OPTICAL-1"))
    answer_sign_on: bool = True
    """False: a probe that never gets an answer (wrong port, meter without IEC 62056-21)."""
    corrupt_bcc: bool = False
    readouts: int = 0
    path: str = ""
    _master: int = -1
    _slave: int = -1
    _buffer: bytearray = field(default_factory=bytearray)
    _agreed: int | None = None

    async def start(self) -> str:
        self._master, self._slave = os.openpty()
        tty.setraw(self._master)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self._master, False)
        asyncio.get_running_loop().add_reader(self._master, self._readable)
        return self.path

    async def stop(self) -> None:
        self._agreed = None
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().remove_reader(self._master)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._master = self._slave = -1

    def lines(self) -> list[str]:
        now = self.now()
        epoch = now.timestamp()
        fwd, rev = self.registers.forward(epoch), self.registers.reverse(epoch)
        inst = instantaneous(self.load, 1, now)
        local = now.astimezone()
        out = [f"0.0.0({self.serial})", f"1.8.0({fwd[0]:010.3f}*kWh)"]
        out += [f"1.8.{t}({fwd[t]:010.3f}*kWh)" for t in range(1, 5)]
        out += [f"2.8.0({rev[0]:010.3f}*kWh)", f"32.7.0({inst['1-0:32.7.0']:05.1f}*V)",
                f"31.7.0({inst['1-0:31.7.0']:06.2f}*A)", f"16.7.0({inst['1-0:16.7.0']:07.3f}*kW)",
                f"0.9.1({local:%H%M%S})", f"0.9.2({local:%y%m%d})", "F.F(00000000)"]
        return out

    def _readable(self) -> None:
        try:
            chunk = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        self._buffer += chunk
        while b"\r\n" in self._buffer:
            line, _, rest = bytes(self._buffer).partition(b"\r\n")
            self._buffer = bytearray(rest)
            self._line(line + b"\r\n")

    def _speed(self) -> int:
        return int(termios.tcgetattr(self._master)[5])

    def _line(self, line: bytes) -> None:
        if line.startswith(b"/?") and line.endswith(b"!\r\n"):
            if not self.answer_sign_on or self._speed() != SPEEDS[codec.INITIAL_BAUD]:
                return
            self._agreed = None
            os.write(self._master, codec.encode_identification(self.identification))
        elif line[:1] == bytes([codec.ACK]):
            char, mode = codec.parse_ack(line)
            if char > self.identification.baud_char or mode != "0":
                return  # a speed it did not offer, or programming mode: stays silent
            self._agreed = BAUD_RATES[char]
            asyncio.get_running_loop().call_later(0.02, self._send_readout)

    def _send_readout(self, tries: int = 1500) -> None:
        """Once the reader has switched: a real meter's bytes at the wrong speed are noise.
        It waits for the switch (up to half a minute, however busy the machine), where a
        real meter would send at once and be misheard; a reader that never switches
        gets nothing, as it would from a real one."""
        if self._agreed is None or self._master < 0:
            return
        if self._speed() != SPEEDS[self._agreed]:
            if tries:
                asyncio.get_running_loop().call_later(0.02, self._send_readout, tries - 1)
            return
        message = bytearray(codec.encode_readout(self.lines()))
        if self.corrupt_bcc:
            message[-1] ^= 0x21
        self.readouts += 1
        os.write(self._master, bytes(message))
