"""One terminal's connection: frames in, frames out, one request in flight.

The link answers what the terminal starts (login, heartbeat, logout, reports that want
a confirm) and matches our requests to replies by sequence number, assembling a
multi-frame (FIR…FIN) reply before handing it back. A reply to a request we have given
up on is dropped: after a retry it would otherwise be taken for the retry's answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from protocols.errors import ProtocolError, ResponseTimeout, TransportError
from protocols.q1376 import frame as fr
from protocols.q1376 import items

log = logging.getLogger(__name__)


class RequestDenied(ProtocolError):
    """The terminal answered AFN 00 F2: it will not (or cannot) do what was asked."""


@dataclass(frozen=True, slots=True)
class LinkLimits:
    timeout_s: float = 30.0
    retries: int = 2
    max_frame: int = 4096
    max_frames_per_minute: int = 600
    trace: bool = False
    """Log every frame, both directions, as hex (the analyser's view of the wire)."""


Initiated = Callable[["TerminalLink", fr.Frame], Awaitable[bool]]
"""Called for each frame the terminal starts (PRM = 1); True: confirm it (CON set)."""


class TerminalLink:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 limits: LinkLimits, on_initiated: Initiated, master: int = 1) -> None:
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.on_initiated = on_initiated
        self.master = master
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.address: fr.Address | None = None
        self.logged_in_at: datetime | None = None
        self.last_frame = time.monotonic()
        self.frames_in = 0
        self.bad_frames = 0
        self._pseq = 0
        self._lock = asyncio.Lock()
        self._waiting: tuple[int, asyncio.Future[list[fr.Frame]]] | None = None
        self._parts: list[fr.Frame] = []
        self._window: deque[float] = deque()
        self.closed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.address.text if self.address else f"(not logged in, {self.peer})"

    async def serve(self) -> None:
        """Read until the peer hangs up or the link is closed; never raises."""
        buffer = fr.FrameBuffer(max_frame=self.limits.max_frame)
        try:
            while not self.closed.is_set():
                chunk = await self.reader.read(4096)
                if not chunk:
                    break
                buffer.feed(chunk)
                while True:
                    try:
                        raw = buffer.next_frame()
                    except fr.FrameError as exc:
                        self.bad_frames += 1
                        log.warning("terminal %s: %s; skipped", self.name, exc)
                        continue
                    if raw is None:
                        break
                    await self._on_raw(raw)
        except (ConnectionError, OSError) as exc:
            log.info("terminal %s: connection lost (%s)", self.name, exc)
        finally:
            await self.close()

    async def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        if self._waiting is not None and not self._waiting[1].done():
            self._waiting[1].set_exception(TransportError(
                f"terminal {self.name}: connection closed", meter=self.name))
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()

    async def _on_raw(self, raw: bytes) -> None:
        if self.limits.trace:
            log.info("q1376 trace %s <- %s", self.name, raw.hex(" "))
        try:
            frame = fr.decode(raw)
        except fr.FrameError as exc:
            # A bad frame costs only the request it answered: that one times out.
            self.bad_frames += 1
            log.warning("terminal %s: %s", self.name, exc)
            return
        if not frame.is_uplink:
            self.bad_frames += 1
            log.warning("terminal %s sent a downlink frame (DIR 0); ignored", self.name)
            return
        if self.address is not None and frame.address.text != self.address.text:
            self.bad_frames += 1
            log.warning("terminal %s: a frame from %s on its link; ignored", self.name,
                        frame.address.text)
            return
        self.frames_in += 1
        self.last_frame = time.monotonic()
        if frame.from_initiator:
            if not self._within_rate():
                log.warning("terminal %s: more than %d frames a minute; closing the link",
                            self.name, self.limits.max_frames_per_minute)
                await self.close()
                return
            confirm = await self.on_initiated(self, frame)
            if confirm and frame.wants_confirm:
                await self.send(items.confirm(frame.address, frame.pseq, True))
            return
        self._on_reply(frame)

    def _within_rate(self) -> bool:
        now = time.monotonic()
        while self._window and now - self._window[0] >= 60.0:
            self._window.popleft()
        self._window.append(now)
        return len(self._window) <= self.limits.max_frames_per_minute

    def _on_reply(self, frame: fr.Frame) -> None:
        if self._waiting is None:
            log.debug("terminal %s: a reply nobody waits for (RSEQ %d)", self.name, frame.pseq)
            return
        pseq, future = self._waiting
        expected = (pseq + len(self._parts)) & 0x0F
        if frame.pseq != expected:
            log.debug("terminal %s: RSEQ %d, waiting for %d; dropped", self.name, frame.pseq,
                      expected)
            return
        self._parts.append(frame)
        # A single frame is FIR+FIN; terminals in the field also send FIN alone.
        if frame.last and not future.done():
            future.set_result(list(self._parts))

    async def send(self, raw: bytes) -> None:
        if self.closed.is_set():
            raise TransportError(f"terminal {self.name}: connection closed", meter=self.name)
        if self.limits.trace:
            log.info("q1376 trace %s -> %s", self.name, raw.hex(" "))
        self.writer.write(raw)
        await self.writer.drain()

    def mark_login(self, frame: fr.Frame) -> None:
        self.address = frame.address
        self.logged_in_at = datetime.now(UTC)

    async def request(self, afn: int, units: list[items.Unit], *,
                      pw: bytes | None = None) -> list[fr.Frame]:
        """The reply frames (FIR…FIN) to one request; retried on silence, then
        ResponseTimeout; RequestDenied on AFN 00 F2."""
        if self.address is None:
            raise TransportError("no request before the terminal has logged in")
        address = fr.Address(self.address.area, self.address.terminal, self.master)
        async with self._lock:
            last: ProtocolError | None = None
            for _ in range(self.limits.retries + 1):
                self._pseq = (self._pseq + 1) & 0x0F
                raw = items.request(address, afn, self._pseq, units, pw=pw)
                future: asyncio.Future[list[fr.Frame]] = (
                    asyncio.get_running_loop().create_future())
                self._waiting, self._parts = (self._pseq, future), []
                try:
                    await self.send(raw)
                    frames = await asyncio.wait_for(future, self.limits.timeout_s)
                except TimeoutError:
                    last = ResponseTimeout(
                        f"terminal {self.name}: no reply to AFN {afn:02X} within "
                        f"{self.limits.timeout_s:g} s", meter=self.name)
                    continue
                finally:
                    self._waiting = None
                first = frames[0]
                if first.afn == fr.AFN_CONFIRM:
                    found = items.split_units(first)
                    if found and found[0].fn == items.F_ALL_DENIED:
                        raise RequestDenied(f"terminal {self.name} denied AFN {afn:02X}",
                                            meter=self.name)
                return frames
            assert last is not None
            raise last
