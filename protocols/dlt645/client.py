"""The async DL/T 645 master: framing from codec.py, bytes through a SerialBus."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from protocols.dlt645 import codec, data_ids
from protocols.dlt645.codec import Frame, FrameError, FrameReader, MeterErrorReply
from protocols.errors import ProtocolError, ResponseTimeout
from protocols.serial import SerialBus

log = logging.getLogger(__name__)

MAX_FOLLOWUPS = 32
NO_SUCH_DATA = 0x02


@dataclass(frozen=True, slots=True)
class ClientSettings:
    latency_s: float = 0.5
    """Allowance for the meter's turnaround; the standard allows up to 500 ms."""
    retries: int = 2
    backoff_s: float = 0.2
    preamble: bytes = codec.PREAMBLE
    margin_s: float = 0.05
    """OS and USB-adapter scheduling slack added to every deadline."""


class Dlt645Client:
    def __init__(self, bus: SerialBus, settings: ClientSettings | None = None) -> None:
        self.bus = bus
        self.settings = settings or ClientSettings()

    def timeout_for(self, request_len: int, reply_len: int) -> float:
        line = self.bus.settings
        wire = line.wire_seconds(request_len + reply_len + len(codec.PREAMBLE))
        return wire + self.settings.latency_s + self.settings.margin_s

    async def _exchange(self, request: Frame, reply_data_len: int) -> Frame:
        """One request, one matching reply; held under the bus lock."""
        raw = codec.encode(request, preamble=self.settings.preamble)
        timeout = self.timeout_for(len(raw), codec.OVERHEAD + reply_data_len)
        reader = FrameReader()
        port = self.bus.port
        async with self.bus.lock:
            stale = port.discard_input()
            if stale:
                self.bus.stats.discarded_bytes += len(stale)
            self.bus.stats.requests += 1
            await port.write(raw)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    chunk = await port.read_some(deadline)
                except ResponseTimeout:
                    self.bus.stats.timeouts += 1
                    raise ResponseTimeout(
                        f"no reply within {timeout * 1000:.0f} ms", raw=raw
                    ) from None
                reader.feed(chunk)
                while (item := reader.next()) is not None:
                    if isinstance(item, FrameError):
                        # A frame-shaped reply that fails its checks is the meter's answer,
                        # corrupted on the line: it will not be resent, so retry now rather
                        # than wait out the deadline.
                        self.bus.stats.bad_frames += 1
                        self.bus.stats.discarded_bytes += reader.discarded
                        raise item
                    if _answers(request, item):
                        self.bus.stats.discarded_bytes += reader.discarded
                        return item

    async def _transact(self, request: Frame, reply_data_len: int) -> Frame:
        attempt = 0
        while True:
            try:
                return await self._exchange(request, reply_data_len)
            except MeterErrorReply:
                raise
            except ProtocolError as exc:
                if attempt >= self.settings.retries:
                    raise exc.with_context(meter=request.address, bus=self.bus.name) from None
                delay = self.settings.backoff_s * 2**attempt
                log.debug("retry %s on %s after %s", request.address, self.bus.name, exc)
                attempt += 1
                await asyncio.sleep(delay)

    async def read(self, address: str, di: int, extra: bytes = b"",
                   expected: int | None = None) -> bytes:
        """Read one DI, following B1H continuation frames until the last one."""
        expected = expected if expected is not None else _expected_payload(di)
        reply = await self._transact(codec.read_request(address, di, extra), 4 + expected)
        parsed = self._parse(reply, di, address)
        payload = bytearray(parsed.payload)
        seq = 0
        while parsed.more:
            seq += 1
            if seq > MAX_FOLLOWUPS:
                raise FrameError(
                    f"more than {MAX_FOLLOWUPS} follow-up frames", meter=address, bus=self.bus.name
                )
            request = codec.read_followup_request(address, di, seq)
            reply = await self._transact(request, 5 + expected)
            parsed = self._parse(reply, di, address)
            payload += parsed.payload
        return bytes(payload)

    def _parse(self, reply: Frame, di: int, address: str) -> codec.ReadReply:
        try:
            return codec.parse_read_reply(reply, expected_di=di)
        except MeterErrorReply as exc:
            self.bus.stats.error_replies += 1
            raise exc.with_context(meter=address, bus=self.bus.name) from None
        except FrameError as exc:
            self.bus.stats.bad_frames += 1
            raise exc.with_context(meter=address, bus=self.bus.name) from None

    async def read_values(self, address: str, di: int) -> list[data_ids.DecodedValue]:
        item = data_ids.lookup(di)
        payload = await self.read(address, di)
        try:
            return data_ids.decode_values(item, payload)
        except FrameError as exc:
            self.bus.stats.bad_frames += 1
            raise exc.with_context(meter=address, bus=self.bus.name) from None

    async def read_clock(self, address: str, tz: tzinfo) -> datetime:
        date_raw = await self.read(address, data_ids.DI_DATE)
        time_raw = await self.read(address, data_ids.DI_TIME)
        return data_ids.meter_clock(date_raw, time_raw, tz)

    async def read_load_profile(self, address: str, first: datetime, last: datetime,
                                every: timedelta, tz: tzinfo) -> list[data_ids.ProfileRecord]:
        """The meter's energy records stamped first…last (interval ends), in requests of a
        frame's worth each; stops early where the meter's memory ends. Records come back
        in the meter's local time; the arithmetic is done in UTC, so DST is no trap."""
        records: list[data_ids.ProfileRecord] = []
        start, last = first.astimezone(UTC), last.astimezone(UTC)
        while start <= last:
            count = min(data_ids.PROFILE_MAX_RECORDS, int((last - start) / every) + 1)
            try:
                raw = await self.read(address, data_ids.DI_LOAD_PROFILE,
                                      data_ids.encode_profile_request(count, start.astimezone(tz)),
                                      count * data_ids.PROFILE_RECORD_LEN)
            except MeterErrorReply as exc:
                if exc.code == NO_SUCH_DATA and records:
                    break  # the memory holds nothing newer
                raise
            batch = [r for r in data_ids.decode_profile_records(raw, tz)
                     if start <= r.ts.astimezone(UTC) <= last]
            if not batch:
                break
            records += batch
            start = batch[-1].ts.astimezone(UTC) + every
        return records

    async def read_address(self, pattern: str = codec.WILDCARD_ADDRESS) -> str:
        reply = await self._transact(codec.read_address_request(pattern), 6)
        return codec.parse_address_reply(reply)

    async def probe_address(self, pattern: str) -> str | None:
        """One read-address probe without retries: None for silence, FrameError for a clash."""
        try:
            reply = await self._exchange(codec.read_address_request(pattern), 6)
        except ResponseTimeout:
            return None
        return codec.parse_address_reply(reply)

    async def broadcast_time_sync(self, local_time: datetime) -> None:
        """Broadcast frames get no reply, so we only wait out their wire time."""
        raw = codec.encode(codec.time_sync_request(local_time), preamble=self.settings.preamble)
        async with self.bus.lock:
            self.bus.port.discard_input()
            await self.bus.port.write(raw)
            await asyncio.sleep(self.bus.settings.wire_seconds(len(raw)))


    async def remote_control(self, address: str, password: bytes, operator: str,
                             command: int, valid_until: datetime) -> None:
        """Send a 1CH command (trip, close, alarm…); raises MeterErrorReply if refused."""
        request = codec.remote_control_request(address, password, operator, command,
                                               valid_until)
        reply = await self._transact(request, 1)
        try:
            codec.check_remote_control_reply(reply)
        except (codec.MeterErrorReply, FrameError) as exc:
            self.bus.stats.error_replies += 1
            raise exc.with_context(meter=address, bus=self.bus.name) from None

    async def read_relay_open(self, address: str) -> bool:
        """Status word 3 (DI 04000503), bit 4: the load switch is open (tripped)."""
        payload = await self.read(address, data_ids.DI_STATUS_WORD_3, expected=2)
        if len(payload) < 2:
            raise FrameError(f"status word 3 has {len(payload)} bytes, needs 2",
                             meter=address, bus=self.bus.name)
        return bool(int.from_bytes(payload[:2], "little") & data_ids.RELAY_OPEN_BIT)


def _answers(request: Frame, reply: Frame) -> bool:
    """Echoes of our own request, stray replies from other meters and a late reply to our
    previous read (another data ID) are not answers: we keep listening until the deadline."""
    if not reply.is_reply or reply.function != request.function:
        return False
    if not codec.address_matches(request.address, reply.address):
        return False
    if request.function in (codec.FN_READ, codec.FN_READ_FOLLOWUP) and not reply.is_abnormal:
        return reply.data[:4] == request.data[:4]
    return True


def _expected_payload(di: int) -> int:
    item = data_ids.ITEMS.get(di)
    if item is not None:
        return item.fmt.size * len(item.obis)
    return 64
