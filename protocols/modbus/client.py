"""Thin async Modbus transports around frames.py: TCP with pooled connections, RTU on a bus.

TCP gateways often front dozens of unit ids behind one IP and serve one request at a
time per connection, so each host gets a small pool of connections and a concurrency
limit; a broken connection is dropped and reopened on the next request. RTU goes
through the SerialBus lock it shares with DL/T 645.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import Protocol

from protocols.errors import ProtocolError, ResponseTimeout, TransportError
from protocols.modbus import frames
from protocols.modbus.frames import ModbusExceptionReply, ModbusFrameError, ReadRequest
from protocols.serial import SerialBus


class RegisterReader(Protocol):
    """What a Modbus meter reader needs, whatever carries the bytes."""

    async def read_registers(self, request: ReadRequest) -> list[int]: ...


@dataclass
class HostStats:
    requests: int = 0
    timeouts: int = 0
    reconnects: int = 0
    errors: int = 0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.ids = itertools.count(1)

    async def exchange(self, request: ReadRequest) -> list[int]:
        tid = next(self.ids) & 0xFFFF
        self.writer.write(frames.mbap_frame(tid, request.unit, frames.request_pdu(request)))
        await self.writer.drain()
        while True:
            header = await self.reader.readexactly(frames.MBAP_HEADER)
            got_tid, unit, length = frames.mbap_unwrap_header(header)
            pdu = await self.reader.readexactly(length)
            if got_tid == tid and unit == request.unit:
                return frames.parse_reply_pdu(request, pdu)
            # A late reply to an earlier, timed-out request: skip it.

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass
class ModbusTcpHost:
    """One host:port: a pool of at most `concurrency` connections, reused and repaired."""

    host: str
    port: int = 502
    concurrency: int = 4
    timeout_s: float = 2.0
    stats: HostStats = field(default_factory=HostStats)
    _idle: list[_Connection] = field(default_factory=list)
    _slots: asyncio.Semaphore | None = None

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.timeout_s):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {self.name}: {exc}", bus=self.name) from exc
        return _Connection(reader, writer)

    async def read_registers(self, request: ReadRequest) -> list[int]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            self.stats.requests += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    registers = await conn.exchange(request)
            except TimeoutError:
                self.stats.timeouts += 1
                conn.close()  # a late reply would desynchronise this connection
                raise ResponseTimeout(f"no reply within {self.timeout_s * 1000:.0f} ms",
                                      meter=str(request.unit), bus=self.name) from None
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.stats.reconnects += 1
                conn.close()
                raise TransportError(f"connection to {self.name} lost: {exc!r}",
                                     meter=str(request.unit), bus=self.name) from None
            except ModbusExceptionReply:
                self._idle.append(conn)
                raise
            except ProtocolError:
                self.stats.errors += 1
                conn.close()
                raise
            self._idle.append(conn)
            return registers

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


class ModbusRtuClient:
    """Modbus RTU on a SerialBus, one request at a time under the bus lock."""

    def __init__(self, bus: SerialBus, *, latency_s: float = 0.2, retries: int = 1,
                 margin_s: float = 0.05) -> None:
        self.bus = bus
        self.latency_s = latency_s
        self.retries = retries
        self.margin_s = margin_s

    async def read_registers(self, request: ReadRequest) -> list[int]:
        attempt = 0
        while True:
            try:
                return await self._exchange(request)
            except ModbusExceptionReply:
                raise
            except ProtocolError as exc:
                if attempt >= self.retries:
                    raise exc.with_context(meter=str(request.unit), bus=self.bus.name) from None
                attempt += 1
                await asyncio.sleep(0.05 * attempt)

    async def _exchange(self, request: ReadRequest) -> list[int]:
        raw = frames.rtu_frame(request.unit, frames.request_pdu(request))
        reply_len = 5 + 2 * request.count
        timeout = (self.bus.settings.wire_seconds(len(raw) + reply_len) + self.latency_s
                   + self.margin_s)
        port = self.bus.port
        async with self.bus.lock:
            self.bus.stats.discarded_bytes += len(port.discard_input())
            self.bus.stats.requests += 1
            await port.write(raw)
            deadline = time.monotonic() + timeout
            buf = b""
            while True:
                try:
                    buf += await port.read_some(deadline)
                except ResponseTimeout:
                    self.bus.stats.timeouts += 1
                    if buf:
                        raise ModbusFrameError(f"incomplete RTU reply ({len(buf)} bytes)",
                                               raw=buf) from None
                    raise
                # Skip any echo of our own request (common on 2-wire adapters).
                if buf.startswith(raw):
                    buf = buf[len(raw):]
                length = frames.rtu_reply_length(buf, request.function)
                if length is None or len(buf) < length:
                    continue
                unit, pdu = frames.rtu_unwrap(buf[:length])
                if unit != request.unit:
                    raise ModbusFrameError(f"reply from unit {unit}, asked unit {request.unit}",
                                           raw=buf)
                return frames.parse_reply_pdu(request, pdu)
