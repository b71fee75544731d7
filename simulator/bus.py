"""A multi-drop RS-485 bus on a pty pair: the collector opens the slave path like a real port.

Optionally the bus emulates wire time at a baud rate and a meter turnaround latency, so
benchmarks measure something physical rather than how fast a pty copies bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import tty
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from protocols.dlt645 import codec
from protocols.dlt645.codec import FrameError
from protocols.modbus import frames
from simulator.dlt645_meter import SimulatedDlt645Meter
from simulator.modbus_meter import SimulatedModbusMeter


@dataclass(frozen=True, slots=True)
class WireTiming:
    """Physical timing to emulate; `baud=0` means as fast as the pty goes."""

    baud: int = 0
    bits_per_byte: int = 11
    latency_s: float = 0.0

    def seconds(self, nbytes: int) -> float:
        return nbytes * self.bits_per_byte / self.baud if self.baud else 0.0


class SimulatedBus:
    """DL/T 645 meters and Modbus RTU meters may share one bus, as on a real RS-485 pair."""

    def __init__(
        self,
        meters: Sequence[SimulatedDlt645Meter],
        now: Callable[[], datetime],
        timing: WireTiming | None = None,
        modbus: Sequence[SimulatedModbusMeter] = (),
    ) -> None:
        self.meters = list(meters)
        self.modbus = {m.unit: m for m in modbus}
        self.now = now
        self.timing = timing or WireTiming()
        self.requests = 0
        self.collisions = 0
        self._master = -1
        self._slave = -1
        self.path = ""
        self._buf = bytearray()
        self._queue: asyncio.Queue[tuple[float, str, bytes]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._arrival = 0.0

    async def start(self) -> str:
        self._master, self._slave = os.openpty()
        # Raw mode on the slave so the line discipline neither echoes nor rewrites bytes
        # before a client has opened it.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        asyncio.get_running_loop().add_reader(self._master, self._on_readable)
        self._worker = asyncio.create_task(self._serve(), name=f"simbus {self.path}")
        return self.path

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self._master, 4096)
        except (BlockingIOError, OSError):
            return
        if not chunk:
            return
        if not self._buf:
            self._arrival = time.monotonic()
        self._buf += chunk
        while (request := self._next_request()) is not None:
            if self.timing.baud or self.timing.latency_s:
                self._queue.put_nowait((self._arrival, *request))
            else:
                # No wire time to emulate: answer now, so the reply is in the kernel
                # buffer before any timer of the client's runs, as a real meter's would be.
                self.requests += 1
                reply = self._reply(*request)
                if reply is not None:
                    with contextlib.suppress(OSError):
                        os.write(self._master, reply)
            self._arrival = time.monotonic()

    def _next_request(self) -> tuple[str, bytes] | None:
        """Split the byte stream into DL/T 645 frames and Modbus RTU read requests."""
        buf = self._buf
        while buf:
            if buf[0] == 0xFE:
                del buf[:1]
                continue
            if buf[0] == codec.START and (len(buf) < 8 or buf[7] == codec.START):
                total = codec.frame_length_at(bytes(buf), 0)
                if total is None or len(buf) < total:
                    if buf[0] not in self.modbus or len(buf) < frames.RTU_REQUEST_LEN:
                        return None
                else:
                    try:
                        frame = codec.decode(bytes(buf[:total]))
                    except FrameError:
                        pass
                    else:
                        del buf[:total]
                        return "dlt645", codec.encode(frame, preamble=b"")
            if buf[0] in self.modbus:
                if len(buf) < frames.RTU_REQUEST_LEN:
                    return None
                raw = bytes(buf[: frames.RTU_REQUEST_LEN])
                try:
                    frames.rtu_unwrap(raw)
                except frames.ModbusFrameError:
                    pass
                else:
                    del buf[: frames.RTU_REQUEST_LEN]
                    return "modbus", raw
            del buf[:1]  # line noise
        return None

    async def _serve(self) -> None:
        while True:
            arrival, protocol, raw = await self._queue.get()
            self.requests += 1
            reply = self._reply(protocol, raw)
            if reply is not None:
                await self._send(arrival, raw, reply,
                                 preamble=4 if protocol == "dlt645" else 0)

    def _reply(self, protocol: str, raw: bytes) -> bytes | None:
        now = self.now()
        if protocol == "modbus":
            unit, pdu = frames.rtu_unwrap(raw)
            reply = self.modbus[unit].respond_pdu(pdu, now)
            return None if reply is None else frames.rtu_frame(unit, reply)
        request = codec.decode(raw)
        replies = [
            reply
            for meter in self.meters
            if meter.answers_to(request.address)
            or request.address.upper() == codec.BROADCAST_ADDRESS
            if (reply := meter.respond(request, now)) is not None
        ]
        if not replies:
            return None
        if len(replies) > 1:
            # Two transmitters on one pair: the receiver sees a wired-AND of both.
            self.collisions += 1
            return bytes(_collide(replies))
        return replies[0]

    async def _send(self, arrival: float, request: bytes, reply: bytes, preamble: int = 0) -> None:
        """Write the reply when a real bus would have delivered it."""
        t = self.timing
        ready = (arrival + t.seconds(len(request) + preamble) + t.latency_s
                 + t.seconds(len(reply)))
        delay = ready - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        with contextlib.suppress(OSError):
            os.write(self._master, reply)

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._master >= 0:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            os.close(self._slave)
            self._master = self._slave = -1


def _collide(replies: list[bytes]) -> bytearray:
    size = max(len(r) for r in replies)
    out = bytearray([0xFF] * size)
    for reply in replies:
        for i, b in enumerate(reply):
            out[i] &= b
    return out
