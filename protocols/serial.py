"""The async serial transport and the per-bus lock every RS-485 protocol shares.

RS-485 is half-duplex and multi-drop: two requests in flight on one pair of wires
collide, whatever protocol each speaks. So the lock lives with the bus, not with a
protocol client, and DL/T 645 and Modbus RTU clients on one bus take turns through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import termios
import time
from dataclasses import dataclass, field

import serial

from protocols.errors import ResponseTimeout, TransportError

PARITIES = {"N": serial.PARITY_NONE, "E": serial.PARITY_EVEN, "O": serial.PARITY_ODD}


@dataclass(frozen=True, slots=True)
class LineSettings:
    baud: int = 2400
    parity: str = "E"
    bytesize: int = 8
    stopbits: int = 1

    @property
    def bits_per_byte(self) -> int:
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_seconds(self, nbytes: int) -> float:
        return nbytes * self.bits_per_byte / self.baud


PTY_MAJORS = range(136, 144)
"""Linux's Unix98 pseudo-terminal slaves (/dev/pts/N)."""


def is_pty(port: str) -> bool:
    try:
        return os.major(os.stat(port).st_rdev) in PTY_MAJORS
    except OSError:
        return False


class SerialPort:
    """A thin asyncio adapter over a pyserial port: the loop watches the fd, no threads."""

    def __init__(self, port: str, settings: LineSettings) -> None:
        self.port = port
        self.settings = settings
        self._serial: serial.Serial | None = None
        self._buffer = bytearray()
        self._data = asyncio.Event()
        self._error: BaseException | None = None

    async def open(self) -> None:
        # A pseudo-terminal has no line to carry parity: Linux clears PARENB, and glibc's
        # tcsetattr then reports EINVAL once the pty has been configured before (every
        # open after the first). The simulator's buses are ptys, so open those plain.
        parity = "N" if is_pty(self.port) else self.settings.parity
        try:
            self._serial = serial.Serial(
                self.port,
                baudrate=self.settings.baud,
                parity=PARITIES[parity],
                bytesize=self.settings.bytesize,
                stopbits=self.settings.stopbits,
                timeout=0,
                write_timeout=2,
            )
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            # termios.error: the device refused the line settings (a pty, or an adapter
            # that cannot do this parity or speed).
            raise TransportError(f"cannot open {self.port} at {self.settings.baud} baud "
                                 f"{self.settings.bytesize}{self.settings.parity}"
                                 f"{self.settings.stopbits}: {exc}", bus=self.port) from exc
        asyncio.get_running_loop().add_reader(self._serial.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        assert self._serial is not None
        try:
            chunk = os.read(self._serial.fileno(), 4096)
        except BlockingIOError:
            return
        except OSError as exc:
            self._error = exc
            chunk = b""
        if chunk:
            self._buffer += chunk
        elif self._error is None:
            self._error = TransportError(f"{self.port} closed", bus=self.port)
        if self._error is not None:
            asyncio.get_running_loop().remove_reader(self._serial.fileno())
        self._data.set()

    async def write(self, data: bytes) -> None:
        if self._serial is None:
            raise TransportError(f"{self.port} is not open", bus=self.port)
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise TransportError(f"write to {self.port} failed: {exc}", bus=self.port) from exc

    async def set_baud(self, baud: int) -> None:
        """Switch speed once what was written has left (IEC 62056-21 switches after the
        acknowledgement is sent, not while it is)."""
        if self._serial is None:
            raise TransportError(f"{self.port} is not open", bus=self.port)
        try:
            await asyncio.to_thread(self._serial.flush)
            self._serial.baudrate = baud
        except (serial.SerialException, OSError, ValueError, termios.error) as exc:
            raise TransportError(f"{self.port}: the adapter cannot switch to {baud} baud "
                                 f"({exc})", bus=self.port) from exc
        self.settings = LineSettings(baud, self.settings.parity, self.settings.bytesize,
                                     self.settings.stopbits)

    def discard_input(self) -> bytes:
        stale = bytes(self._buffer)
        self._buffer.clear()
        self._data.clear()
        return stale

    async def read_some(self, deadline: float) -> bytes:
        """Whatever has arrived, waiting until `deadline` (time.monotonic) for at least a byte."""
        while not self._buffer:
            if isinstance(self._error, TransportError):
                raise TransportError(self._error.message, bus=self.port)
            if self._error is not None:
                raise TransportError(f"{self.port}: {self._error}", bus=self.port)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # The loop may be late to notice bytes that arrived in time (a busy host,
                # a long callback): look in the kernel's buffer once before giving up.
                if self._serial is not None and self._error is None and select.select(
                        [self._serial.fileno()], [], [], 0)[0]:
                    self._on_readable()
                if self._buffer:
                    break
                raise ResponseTimeout(f"no bytes from {self.port} before the deadline")
            self._data.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data.wait(), remaining)
        return self.discard_input()

    async def close(self) -> None:
        if self._serial is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._serial.fileno())
            self._serial.close()
            self._serial = None


@dataclass
class BusStats:
    requests: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    error_replies: int = 0
    discarded_bytes: int = 0


@dataclass
class SerialBus:
    """One RS-485 bus: its port, line settings, the lock and counters."""

    name: str
    port: SerialPort
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    stats: BusStats = field(default_factory=BusStats)

    @property
    def settings(self) -> LineSettings:
        return self.port.settings

    @classmethod
    async def open(cls, name: str, port: str, settings: LineSettings) -> SerialBus:
        sp = SerialPort(port, settings)
        await sp.open()
        return cls(name, sp)

    async def close(self) -> None:
        await self.port.close()
