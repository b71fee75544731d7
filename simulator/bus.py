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
from protocols.dlt645.codec import FrameError, FrameReader
from simulator.dlt645_meter import SimulatedDlt645Meter


@dataclass(frozen=True, slots=True)
class WireTiming:
    """Physical timing to emulate; `baud=0` means as fast as the pty goes."""

    baud: int = 0
    bits_per_byte: int = 11
    latency_s: float = 0.0

    def seconds(self, nbytes: int) -> float:
        return nbytes * self.bits_per_byte / self.baud if self.baud else 0.0


class SimulatedBus:
    def __init__(
        self,
        meters: Sequence[SimulatedDlt645Meter],
        now: Callable[[], datetime],
        timing: WireTiming | None = None,
    ) -> None:
        self.meters = list(meters)
        self.now = now
        self.timing = timing or WireTiming()
        self.requests = 0
        self.collisions = 0
        self._master = -1
        self._slave = -1
        self.path = ""
        self._reader = FrameReader()
        self._queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
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
        if not len(self._reader):
            self._arrival = time.monotonic()
        self._reader.feed(chunk)
        while (item := self._reader.next()) is not None:
            if isinstance(item, FrameError):
                continue
            raw = codec.encode(item, preamble=b"")
            self._queue.put_nowait((self._arrival, raw))
            self._arrival = time.monotonic()

    async def _serve(self) -> None:
        while True:
            arrival, raw = await self._queue.get()
            request = codec.decode(raw)
            self.requests += 1
            now = self.now()
            replies = [
                reply
                for meter in self.meters
                if meter.answers_to(request.address)
                or request.address.upper() == codec.BROADCAST_ADDRESS
                if (reply := meter.respond(request, now)) is not None
            ]
            if not replies:
                continue
            if len(replies) > 1:
                # Two transmitters on one pair: the receiver sees a wired-AND of both.
                self.collisions += 1
                out = bytes(_collide(replies))
            else:
                out = replies[0]
            t = self.timing
            ready = arrival + t.seconds(len(raw) + 4) + t.latency_s + t.seconds(len(out))
            delay = ready - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            with contextlib.suppress(OSError):
                os.write(self._master, out)

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
