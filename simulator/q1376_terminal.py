"""A concentrator (集中器) that dials the master station over TCP and speaks 1376.1.

It holds simulated DL/T 645 meters as its measuring points and answers from their
registers, so a test can read the same meter both ways and compare. Like a deployed
terminal it logs in, beats its heart, answers one request at a time, splits long replies
into FIR/FIN frames, and keeps its own event records. Faults a front end must survive
are switches: silence, a corrupt reply, a wrong point table, a duplicate login.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo

from protocols.q1376 import events as ev
from protocols.q1376 import formats as fm
from protocols.q1376 import frame as fr
from protocols.q1376 import items
from protocols.q1376 import points as table
from protocols.q1376.items import Unit
from protocols.q1376.values import Curve, CurveRequest, Frozen, Present, Registers
from simulator.dlt645_meter import SimulatedDlt645Meter, as_read
from simulator.instant import instantaneous

log = logging.getLogger(__name__)
CURVE_FORMATS = items.CURVES
VOLTAGE_OBIS = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
CURRENT_OBIS = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")


@dataclass
class TerminalFaults:
    silent: bool = False
    """Logs in, then answers nothing (a modem that lost its PDP context)."""
    corrupt_every: int = 0
    """Every n-th reply goes out with its checksum broken."""
    wrong_table: dict[int, str] = field(default_factory=dict)
    """pn → the meter address the terminal's point table claims (a swapped meter)."""
    latency_s: float = 0.0
    jitter_s: float = 0.0
    """GPRS: each reply waits latency ± jitter (seeded) before it goes out."""
    duplicate_every: int = 0
    """Every n-th reply frame is sent twice (a retransmission the network duplicated)."""
    drop_mid_reply: bool = False
    """The link dies after the first frame of a multi-frame reply (a cell handover)."""
    seed: int = 1


@dataclass
class SimulatedTerminal:
    address: fr.Address
    points: dict[int, SimulatedDlt645Meter]
    now: Callable[[], datetime]
    tz: tzinfo
    heartbeat_s: float = 60.0
    max_body: int = 1024
    """Replies longer than this are split into FIR/FIN frames, one unit per frame or more."""
    password: bytes = bytes(16)
    faults: TerminalFaults = field(default_factory=TerminalFaults)
    records: list[ev.Record] = field(default_factory=list)
    """Important events (ERC), oldest first; the page pointer wraps at 256."""
    clock_offset_s: float = 0.0
    requests: int = 0
    frames_out: int = 0
    logins: int = 0
    _pseq: int = 0
    _writer: asyncio.StreamWriter | None = None
    _confirmed: asyncio.Event = field(default_factory=asyncio.Event)

    def clock(self) -> datetime:
        return (self.now() + timedelta(seconds=self.clock_offset_s)).astimezone(self.tz)

    # --- the link ------------------------------------------------------------------------

    async def run(self, host: str, port: int, *, stay: float | None = None) -> None:
        """Dial, log in, answer until the master hangs up or `stay` seconds pass."""
        reader, writer = await asyncio.open_connection(host, port)
        self._writer = writer
        beat = asyncio.create_task(self._heartbeats())
        try:
            await self._send_link(items.F_LOGIN)
            self.logins += 1
            buffer = fr.FrameBuffer(max_frame=65536)
            loop = asyncio.get_running_loop()
            deadline = None if stay is None else loop.time() + stay
            while True:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    chunk = await asyncio.wait_for(reader.read(4096), timeout)
                except TimeoutError:
                    await self._send_link(items.F_LOGOUT)
                    return
                if not chunk:
                    return
                buffer.feed(chunk)
                while True:
                    try:
                        raw = buffer.next_frame()
                    except fr.FrameError:
                        continue
                    if raw is None:
                        break
                    await self._on_frame(raw)
        finally:
            beat.cancel()
            with contextlib.suppress(BaseException):
                await beat
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            await self._send_link(items.F_HEARTBEAT)

    async def _send_link(self, fn: int) -> None:
        await self.report(fr.AFN_LINK, [Unit(0, fn)])

    async def report(self, afn: int, units: list[Unit]) -> None:
        """Send a frame unasked with CON set: a login, a heartbeat, or data (主动上报)
        as terminals send events."""
        self._pseq = (self._pseq + 1) & 0x0F
        await self._write(items.reply(self.address, afn, self._pseq, units, prm=True,
                                      con=True))

    async def _write(self, raw: bytes) -> None:
        if self._writer is None:
            return
        self._writer.write(raw)
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()

    async def _on_frame(self, raw: bytes) -> None:
        try:
            frame = fr.decode(raw)
        except fr.FrameError:
            return
        if frame.is_uplink or frame.address.terminal != self.address.terminal:
            return
        if frame.afn == fr.AFN_CONFIRM:
            self._confirmed.set()
            return
        self.requests += 1
        if self.faults.silent:
            return
        try:
            replies = self.answer(frame)
        except fr.FrameError as exc:
            log.info("terminal %s: cannot answer (%s)", self.address.text, exc)
            replies = [items.confirm(self.address, frame.pseq, ok=False, up=True)]
        faults = self.faults
        if faults.latency_s or faults.jitter_s:
            rng = random.Random(faults.seed * 7919 + self.requests)
            await asyncio.sleep(max(0.0, faults.latency_s + rng.uniform(-1, 1) * faults.jitter_s))
        for i, out in enumerate(replies):
            if faults.corrupt_every and self.requests % faults.corrupt_every == 0:
                out = out[:-2] + bytes([out[-2] ^ 0x55, 0x16])
            if faults.drop_mid_reply and len(replies) > 1 and i == 1:
                if self._writer is not None:
                    self._writer.close()
                self._writer = None
                return
            await self._write(out)
            self.frames_out += 1
            if faults.duplicate_every and self.frames_out % faults.duplicate_every == 0:
                await self._write(out)

    # --- answers -------------------------------------------------------------------------

    def answer(self, frame: fr.Frame) -> list[bytes]:
        """The reply frames to one request (pure apart from obeying controls)."""
        units = items.split_units(frame)
        if frame.afn == fr.AFN_CONTROL:
            return [self._control(frame, units)]
        out: list[Unit] = []
        for unit in units:
            out.extend(self._data(frame.afn, unit))
        if not out:
            return [items.confirm(self.address, frame.pseq, ok=False, up=True)]
        return self._split(frame.afn, frame.pseq, out)

    def _split(self, afn: int, rseq: int, out: list[Unit]) -> list[bytes]:
        chunks: list[list[Unit]] = [[]]
        size = 0
        for unit in out:
            if chunks[-1] and size + len(unit.data) + 4 > self.max_body:
                chunks.append([])
                size = 0
            chunks[-1].append(unit)
            size += len(unit.data) + 4
        n = len(chunks)
        return [items.reply(self.address, afn, (rseq + i) & 0x0F, chunk, first=i == 0,
                            last=i == n - 1) for i, chunk in enumerate(chunks)]

    def _control(self, frame: fr.Frame, units: list[Unit]) -> bytes:
        if frame.pw != self.password:
            return items.confirm(self.address, frame.pseq, ok=False, up=True)
        verdicts = []
        now = self.now()
        for unit in units:
            ok = True
            if unit.fn == items.F_TIME_SYNC:
                target = fm.decode_a1(unit.data)
                ok = target is not None
                if target is not None:
                    before = self.clock()
                    aware = target.replace(tzinfo=self.tz)
                    self.clock_offset_s = round((aware - now).total_seconds())
                    self.records.append(ev.parse_record(ev.ERC_CLOCK_SET, (0).to_bytes(
                        2, "little") + fm.encode_a1(before.replace(tzinfo=None))
                        + fm.encode_a1(target)))
            elif unit.fn in (items.F_TRIP, items.F_ALLOW_CLOSE) and unit.pn in self.points:
                self.points[unit.pn].switch(unit.fn == items.F_TRIP, now)
            else:
                ok = False
            verdicts.append(items.ItemVerdict(unit.pn, unit.fn, ok))
        if all(v.ok for v in verdicts):
            return items.confirm(self.address, frame.pseq, ok=True, up=True)
        return items.reply(self.address, fr.AFN_CONFIRM, frame.pseq, [Unit(
            0, items.F_ITEMISED, items.encode_itemised(fr.AFN_CONTROL, verdicts))])

    def _data(self, afn: int, unit: Unit) -> list[Unit]:
        pn, fn = unit.pn, unit.fn
        if afn == fr.AFN_CLASS1 and fn == items.F_CLOCK:
            return [Unit(0, fn, fm.encode_a1(self.clock().replace(tzinfo=None)))]
        if afn == fr.AFN_QUERY and fn == items.F_POINT_TABLE:
            return [Unit(0, fn, table.encode_table(self.point_table()))]
        if afn == fr.AFN_CLASS3 and fn in (items.F_IMPORTANT_EVENTS, items.F_NORMAL_EVENTS):
            return [Unit(0, fn, self._events(unit.data).encode())]
        meter = self.points.get(pn)
        if meter is None:
            return []
        if afn == fr.AFN_CLASS1:
            return self._present(meter, pn, fn)
        if afn == fr.AFN_CLASS2:
            return self._history(meter, pn, fn, unit.data)
        return []

    def point_table(self) -> list[table.PointEntry]:
        return [table.PointEntry(pn, pn, 2, 2400, table.PROTOCOL_DLT645_2007,
                                  self.faults.wrong_table.get(pn, meter.address))
                for pn, meter in sorted(self.points.items())]

    def _local(self, t: datetime) -> datetime:
        return t.astimezone(self.tz).replace(tzinfo=None)

    def _registers(self, meter: SimulatedDlt645Meter, at: datetime, reverse: bool,
                   read_at: datetime) -> Registers:
        if meter.silent_at(at):  # dead, or not installed yet
            return Registers(self._local(read_at), (None,) * 5)
        # The terminal reads its meters over DL/T 645, so A.14's four decimals carry the
        # meter's 0.01 kWh: a bill from these freezes is the bill from the meter itself.
        bank = meter.registers.reverse if reverse else meter.registers.forward
        return Registers(self._local(read_at), tuple(as_read(bank(at.timestamp()))))

    def _present(self, meter: SimulatedDlt645Meter, pn: int, fn: int) -> list[Unit]:
        now = self.now()
        if fn in (items.F_FORWARD, items.F_REVERSE):
            return [Unit(pn, fn, self._registers(meter, now, fn == items.F_REVERSE,
                                                 now).encode())]
        if fn == items.F_PRESENT and meter.silent_at(now):
            return [Unit(pn, fn, b"\xee" * Present.LENGTH)]
        if fn == items.F_PRESENT:
            v = instantaneous(meter.load, meter.phases, now, meter.wiring)
            kw = v["1-0:16.7.0"]
            pf = v["1-0:13.7.0"] * 100
            volts = tuple(v.get(code) for code in VOLTAGE_OBIS)
            amps = tuple(v.get(code) for code in CURRENT_OBIS)
            present = Present(self._local(now), (round(kw, 4), None, None, None),
                              (round(v["1-0:131.7.0"], 4), None, None, None),
                              (round(pf, 1), None, None, None),
                              (volts[0], volts[1], volts[2]), (amps[0], amps[1], amps[2]),
                              None, (None, None, None, None))
            return [Unit(pn, fn, present.encode())]
        return []

    def _history(self, meter: SimulatedDlt645Meter, pn: int, fn: int,
                 ask: bytes) -> list[Unit]:
        now = self.now()
        if fn in items.DAILY:
            day = fm.decode_a20(ask)
            if day is None:
                return []
            at = datetime.combine(day + timedelta(days=1), time(0), self.tz)
            if at > now:
                return []
            regs = self._registers(meter, at, fn == items.F_DAILY_REVERSE, at)
            return [Unit(pn, fn, Frozen(day, regs).encode())]
        if fn in items.MONTHLY:
            month = fm.decode_a21(ask)
            if month is None:
                return []
            nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
            at = datetime.combine(nxt, time(0), self.tz)
            if at > now:
                return []
            regs = self._registers(meter, at, fn == items.F_MONTHLY_REVERSE, at)
            return [Unit(pn, fn, Frozen(month, regs, monthly=True).encode())]
        if fn in CURVE_FORMATS:
            request = CurveRequest.decode(ask)
            values = [self._curve_point(meter, fn, t.replace(tzinfo=self.tz), now)
                      for t in request.times()]
            return [Unit(pn, fn, Curve(request, tuple(values), CURVE_FORMATS[fn]).encode())]
        return []

    def _curve_point(self, meter: SimulatedDlt645Meter, fn: int, at: datetime,
                     now: datetime) -> float | None:
        if at > now or meter.silent_at(at):
            return None
        if fn in (items.F_CURVE_FORWARD, items.F_CURVE_REVERSE):
            bank = (meter.registers.reverse if fn == items.F_CURVE_REVERSE
                    else meter.registers.forward)
            return as_read(bank(at.timestamp()))[0]
        v = instantaneous(meter.load, meter.phases, at, meter.wiring)
        if fn in items.F_VOLTAGE_CURVES:
            return v.get(VOLTAGE_OBIS[items.F_VOLTAGE_CURVES.index(fn)])
        return v.get(CURRENT_OBIS[items.F_CURRENT_CURVES.index(fn)])

    def _events(self, ask: bytes) -> ev.EventPage:
        """Records Pm..Pn−1 of the ring (the master asks from where it stopped)."""
        pm, pn = ask[0], ask[1]
        total = len(self.records)
        want = [(i % 256) for i in range(pm, pm + (pn - pm) % 256)]
        chosen = tuple(self.records[i] for i in want if i < total)
        end = (pm + len(chosen)) % 256
        return ev.EventPage(total % 256, 0, pm, end, chosen)


async def run_concentrators(host: str, port: int, count: int, points: int, *, seed: int = 1,
                            latency_s: float = 0.0, redial_s: float = 5.0,
                            tz: tzinfo | None = None) -> None:
    """`collector simulate --q1376`: terminals 4101-00001… with `points` meters each
    (meter n of terminal t is address t·points + n), dialling and redialling for ever."""
    from datetime import UTC
    from zoneinfo import ZoneInfo

    from simulator.fleet import FleetSpec, build_fleet

    zone = tz or ZoneInfo("Asia/Shanghai")

    def now() -> datetime:
        return datetime.now(UTC)

    fleet = build_fleet(FleetSpec(meters=count * points, buses=1, seed=seed, tz=zone), now,
                        now() - timedelta(days=2))
    group = [SimulatedTerminal(
        fr.Address("4101", t + 1),
        {pn: fleet.meters[t * points + pn] for pn in range(1, points + 1)}, now, zone,
        faults=TerminalFaults(latency_s=latency_s, jitter_s=latency_s / 2, seed=seed + t))
        for t in range(count)]

    async def dial(terminal: SimulatedTerminal) -> None:
        while True:
            with contextlib.suppress(OSError):
                await terminal.run(host, port)
            await asyncio.sleep(redial_s)

    await asyncio.gather(*(dial(t) for t in group))
