"""A DL/T 645-2007 meter: answers request frames from its register bank and load model.

It speaks through the same codec and data-ID table as the collector, so the wire format
is defined once; faults are injected here, per meter and deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from protocols.dlt645 import codec, data_ids
from protocols.dlt645.codec import Frame
from simulator.instant import instantaneous
from simulator.load import LoadModel
from simulator.registers import RegisterBank
from simulator.wiring import Miswiring

NO_SUCH_DATA = 0x02


@dataclass
class MeterFaults:
    silent: bool = False
    """Never answers (dead meter, cut cable)."""
    silent_between: tuple[datetime, datetime] | None = None
    """Silent only inside this window of simulated time (an outage)."""
    bad_checksum_every: int = 0
    """Corrupt the checksum of every n-th reply (0 = never)."""
    wrong_address: bool = False
    """Replies carry another meter's address (a mis-set comm address)."""
    error_dis: frozenset[int] = frozenset()
    """DIs answered with an error reply (item not supported)."""
    clock_offset_s: float = 0.0

    def describe(self) -> list[str]:
        out = []
        if self.silent:
            out.append("silent")
        if self.silent_between:
            a, b = self.silent_between
            out.append(f"silent {a:%H:%M}–{b:%H:%M}Z")
        if self.bad_checksum_every:
            out.append(f"bad CS 1 in {self.bad_checksum_every}")
        if self.wrong_address:
            out.append("wrong address")
        if self.error_dis:
            out.append("no DI " + ", ".join(f"{d:08X}" for d in sorted(self.error_dis)))
        if self.clock_offset_s:
            out.append(f"clock {self.clock_offset_s:+.0f} s")
        return out


@dataclass
class SimulatedDlt645Meter:
    address: str
    load: LoadModel
    registers: RegisterBank
    tz: tzinfo
    phases: int = 1
    faults: MeterFaults = field(default_factory=MeterFaults)
    max_payload: int = 200
    """Payloads longer than this go out as B1H + follow-up frames."""
    profile_every: timedelta = timedelta(minutes=15)
    """The load-profile record interval the meter keeps in memory."""
    profile_keep: timedelta = timedelta(days=10)
    cover_opens: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    power_downs: list[tuple[datetime, datetime | None]] = field(default_factory=list)
    """Power failures the meter recorded (start, end), oldest first."""
    clock_sets: list[tuple[datetime, datetime]] = field(default_factory=list)
    """Clock settings (meter time before, after), recorded by every time sync it obeys."""
    password: bytes = bytes.fromhex("02000000")
    """What a remote-control command must carry (the plain 2007 form, no ESAM)."""
    relay_open: bool = False
    wiring: Miswiring | None = None
    """How its CTs and voltage leads are connected, if not correctly (three-phase)."""
    commands: list[str] = field(default_factory=list)
    """Remote-control commands obeyed, in order ('trip', 'direct close', …)."""
    replies: int = 0
    _pending: dict[int, list[bytes]] = field(default_factory=dict)
    _scale_before_trip: float = 1.0

    def answers_to(self, pattern: str) -> bool:
        return codec.address_matches(pattern, self.address)

    def respond(self, request: Frame, now: datetime) -> bytes | None:
        """Raw reply bytes for a request addressed to us, or None to stay quiet."""
        if request.is_reply or self.silent_at(now):
            return None
        reply = self._reply(request, now)
        if reply is None:
            return None
        if self.faults.wrong_address:
            reply = Frame(_other_address(self.address), reply.control, reply.data)
        self.replies += 1
        raw = bytearray(codec.encode(reply, preamble=b""))
        every = self.faults.bad_checksum_every
        if every and self.replies % every == 0:
            raw[-2] ^= 0x5A
        return bytes(raw)

    def silent_at(self, now: datetime) -> bool:
        if self.faults.silent or now.timestamp() < self.registers.start_epoch:
            return True  # dead, or not installed yet
        window = self.faults.silent_between
        return window is not None and window[0] <= now < window[1]

    def _reply(self, request: Frame, now: datetime) -> Frame | None:
        fn = request.function
        if fn == codec.FN_READ_ADDRESS:
            return codec.address_reply(self.address)
        if fn == codec.FN_TIME_SYNC:
            self._apply_time_sync(request, now)
            return None
        if request.address.upper() == codec.BROADCAST_ADDRESS:
            return None
        if fn == codec.FN_READ and len(request.data) >= 4:
            di = int.from_bytes(request.data[:4], "little")
            if di == data_ids.DI_LOAD_PROFILE:
                payload = self._profile(request.data[4:], now)
            else:
                payload = self._payload(di, now)
            if payload is None:
                return codec.error_reply(self.address, NO_SUCH_DATA)
            size = self.max_payload
            chunks = [payload[i : i + size] for i in range(0, len(payload), size)] or [b""]
            self._pending[di] = chunks[1:]
            return codec.read_reply(self.address, di, chunks[0], more=len(chunks) > 1)
        if fn == codec.FN_READ_FOLLOWUP and len(request.data) >= 5:
            di = int.from_bytes(request.data[:4], "little")
            rest = self._pending.get(di)
            if not rest:
                return codec.error_reply(self.address, NO_SUCH_DATA, codec.FN_READ_FOLLOWUP)
            chunk = rest.pop(0)
            return codec.followup_reply(self.address, di, chunk, request.data[4], more=bool(rest))
        if fn == codec.FN_REMOTE_CONTROL:
            return self._remote_control(request, now)
        return codec.error_reply(self.address, 0x01, fn)

    def _remote_control(self, request: Frame, now: datetime) -> Frame:
        """Obey a 1CH trip or close: the relay opens and the registers stop, as a load
        switch cuts the customer off; a wrong password or an expired command is refused."""
        try:
            rc = codec.parse_remote_control(request)
            expires = datetime(*rc.valid_until, tzinfo=self.tz)
        except (codec.FrameError, ValueError):
            return codec.error_reply(self.address, 0x01, codec.FN_REMOTE_CONTROL)
        if rc.password != self.password:
            return codec.error_reply(self.address, 0x04, codec.FN_REMOTE_CONTROL)
        if expires < self.clock(now):
            return codec.error_reply(self.address, 0x01, codec.FN_REMOTE_CONTROL)
        if rc.command == codec.RC_TRIP:
            self.switch(True, now)
        elif rc.command in (codec.RC_CLOSE, codec.RC_CLOSE_PERMITTED):
            self.switch(False, now)
        self.commands.append(codec.RC_NAMES[rc.command])
        return codec.remote_control_reply(self.address)

    def switch(self, trip: bool, now: datetime) -> None:
        """Open or close the load switch, by whatever path the command came (a 1CH frame,
        or a concentrator's AFN 05 control)."""
        if trip and not self.relay_open:
            self.registers.forward(now.timestamp())  # what was used before the trip counts
            self.registers.scale, self._scale_before_trip = 0.0, self.registers.scale
            self.relay_open = True
        elif not trip and self.relay_open:
            self.registers.forward(now.timestamp())
            self.registers.scale = self._scale_before_trip
            self.relay_open = False

    def _apply_time_sync(self, request: Frame, now: datetime) -> None:
        try:
            ss, mi, hh, dd, mo, yy = (int(f"{b:02X}") for b in request.data[:6])
            target = datetime(2000 + yy, mo, dd, hh, mi, ss, tzinfo=self.tz)
        except ValueError:
            return
        self.clock_sets.append((self.clock(now), target))
        self.faults.clock_offset_s = round((target - now).total_seconds())

    # --- values ------------------------------------------------------------------------

    def _profile(self, params: bytes, now: datetime) -> bytes | None:
        """Energy records at each profile interval's end, as far as memory reaches: from
        when the meter started to its own clock's now, and no more than it keeps."""
        if data_ids.DI_LOAD_PROFILE in self.faults.error_dis:
            return None
        try:
            count, first = data_ids.decode_profile_request(params, self.tz)
        except (codec.FrameError, ValueError):
            return None
        every = self.profile_every.total_seconds()
        offset = self.faults.clock_offset_s  # records carry the meter's own (wrong) time
        t = -(-first.timestamp() // every) * every
        oldest = max(self.registers.start_epoch,
                     now.timestamp() - self.profile_keep.total_seconds())
        records: list[data_ids.ProfileRecord] = []
        while len(records) < count and t - offset <= now.timestamp():
            if t - offset >= oldest:
                fwd, rev = as_read([self.registers.forward(t - offset)[0],
                                  self.registers.reverse(t - offset)[0]])
                records.append(data_ids.ProfileRecord(datetime.fromtimestamp(t, self.tz),
                                                      fwd, rev))
            t += every
        return data_ids.encode_profile_records(records) if records else None

    def meter_number(self, epoch: float) -> int:
        """The number on the nameplate: the address, until a swap brings another meter."""
        number = int(self.address)
        for change in self.registers.changes:
            if change.meter_number is not None and change.start.timestamp() <= epoch:
                number = change.meter_number
        return number

    def clock(self, now: datetime) -> datetime:
        return (now + timedelta(seconds=self.faults.clock_offset_s)).astimezone(self.tz)

    def instant(self, now: datetime) -> dict[str, float]:
        """Instantaneous quantities by OBIS code."""
        return instantaneous(self.load, self.phases, now, self.wiring)

    def _frozen_instant(self, now: datetime, n: int) -> datetime | None:
        local = self.clock(now)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        frozen = midnight - timedelta(days=n - 1)
        if frozen.timestamp() < self.registers.start_epoch:
            return None
        return frozen

    def _payload(self, di: int, now: datetime) -> bytes | None:
        if di in self.faults.error_dis:
            return None
        epoch = now.timestamp()
        if di == data_ids.DI_DATE:
            return data_ids.encode_date(self.clock(now))
        if di == data_ids.DI_TIME:
            return data_ids.encode_time(self.clock(now))
        if di == data_ids.DI_ADDRESS:
            return data_ids.encode_comm_address(self.address)
        if di == data_ids.DI_STATUS_WORD_3:
            word = data_ids.RELAY_OPEN_BIT if self.relay_open else 0
            return word.to_bytes(2, "little")
        if di == data_ids.DI_COVER_RECORD:
            if not self.cover_opens:
                return None
            start, end = self.cover_opens[-1]
            fwd = self.registers.forward(start.timestamp())[0]
            rev = self.registers.reverse(start.timestamp())[0]
            record = data_ids.CoverOpenRecord(
                start.astimezone(self.tz), end.astimezone(self.tz) if end else None, fwd, rev
            )
            return data_ids.encode_cover_record(record)
        if di == data_ids.DI_POWER_DOWN_RECORD:
            if not self.power_downs:
                return None
            start, end = self.power_downs[-1]
            return data_ids.encode_power_down_record(data_ids.PowerDownRecord(
                start.astimezone(self.tz), end.astimezone(self.tz) if end else None))
        if di == data_ids.DI_TIME_SET_RECORD:
            if not self.clock_sets:
                return None
            before, after = self.clock_sets[-1]
            return data_ids.encode_time_set_record(data_ids.TimeSetRecord(
                "00000001", before.astimezone(self.tz), after.astimezone(self.tz)))
        if di >> 16 == 0x0506:
            return self._frozen_payload(di, now)
        item = data_ids.ITEMS.get(di)
        if item is None:
            return None
        values = self._values(item, epoch, now)
        return data_ids.encode_values(item, values) if values is not None else None

    def _frozen_payload(self, di: int, now: datetime) -> bytes | None:
        kind, n = (di >> 8) & 0xFF, di & 0xFF
        if not 1 <= n <= data_ids.FROZEN_DAYS or kind not in (0, 1, 2):
            return None
        instant = self._frozen_instant(now, n)
        if instant is None:
            return None
        if kind == 0:
            return data_ids.encode_frozen_time(instant)
        bank = self.registers.forward if kind == 1 else self.registers.reverse
        item = data_ids.FROZEN_FORWARD if kind == 1 else data_ids.FROZEN_REVERSE
        return data_ids.encode_values(item, as_read(bank(instant.timestamp())))

    def _values(self, item: data_ids.DataItem, epoch: float, now: datetime) -> list[float] | None:
        di2 = (item.di >> 16) & 0xFF
        if item.di >> 24 == 0x00:
            if di2 == 0x00:
                fwd, rev = self.registers.forward(epoch), self.registers.reverse(epoch)
                bank = [f + r for f, r in zip(fwd, rev, strict=True)]
            elif di2 == 0x01:
                bank = self.registers.forward(epoch)
            elif di2 == 0x02:
                bank = self.registers.reverse(epoch)
            else:
                bank = [v * 0.3 for v in self.registers.forward(epoch)]
            bank = as_read(bank)
            tariff = (item.di >> 8) & 0xFF
            return bank if item.is_block else [bank[tariff]]
        if item.obis[0] == "0-0:96.20.0":
            return [float(len(self.cover_opens))]
        if item.obis[0] == data_ids.METER_NUMBER_OBIS:
            return [float(self.meter_number(epoch))]
        values = self.instant(now)
        return [_clip(item, values[code]) for code in item.obis]


def as_read(bank: list[float]) -> list[float]:
    """The registers as the meter answers for them: to 0.01 kWh (XXXXXX.XX), rolling over
    at 999999.99 kWh like the real thing."""
    return [round(v % 1_000_000, 2) for v in bank]


def _clip(item: data_ids.DataItem, value: float) -> float:
    limit = item.fmt.max_magnitude
    return max(-limit if item.fmt.signed else 0.0, min(limit, value))


def _other_address(address: str) -> str:
    return f"{(int(address) + 1) % 10**12:012d}"
