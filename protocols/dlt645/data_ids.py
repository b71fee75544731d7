"""DL/T 645-2007 data identifiers: their BCD formats and the OBIS quantities they carry.

The table works in both directions: the collector decodes replies with it and the
simulator encodes them, so a format mistake shows up as a failed round trip in tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo

from protocols import bcd
from protocols.dlt645.codec import FrameError, decode_address, encode_address, to_bcd_byte

# --- BCD numbers -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Numeric:
    """A BCD number of `size` bytes, low byte first, with an optional sign in the top bit."""

    size: int
    decimals: int
    signed: bool = False

    @property
    def max_magnitude(self) -> float:
        return bcd.max_magnitude(self.size, self.decimals, self.signed)

    def decode(self, raw: bytes) -> float:
        if len(raw) != self.size:
            raise FrameError(f"expected {self.size} value bytes, got {len(raw)}", raw=raw)
        try:
            return bcd.decode(raw, self.decimals, self.signed)
        except bcd.BcdError as exc:
            raise FrameError(f"value {exc}", raw=raw) from None

    def encode(self, value: float) -> bytes:
        return bcd.encode(value, self.size, self.decimals, self.signed)


ENERGY = Numeric(4, 2)
VOLTAGE = Numeric(2, 1)
CURRENT = Numeric(3, 3, signed=True)
POWER = Numeric(3, 4, signed=True)
POWER_FACTOR = Numeric(2, 3, signed=True)
ANGLE = Numeric(2, 1)
FREQUENCY = Numeric(2, 2)
COUNT = Numeric(3, 0)
METER_NUMBER = Numeric(6, 0)
"""表号, the meter's own number (12 digits, exact in a float)."""


# --- the table -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DataItem:
    """One identifier. A block (FF) item repeats `fmt` once per OBIS code in `obis`.

    `open_ended` blocks (energy total + tariffs) carry as many elements as the meter has
    tariffs, so the payload length decides, up to len(obis).
    """

    di: int
    name: str
    fmt: Numeric
    obis: tuple[str, ...]
    unit: str
    open_ended: bool = False

    @property
    def is_block(self) -> bool:
        return len(self.obis) > 1


ITEMS: dict[int, DataItem] = {}


def _add(item: DataItem) -> None:
    ITEMS[item.di] = item


_ENERGY_KINDS = (
    (0x00, 15, "combined active energy", "kWh"),
    (0x01, 1, "forward active energy", "kWh"),
    (0x02, 2, "reverse active energy", "kWh"),
    (0x03, 3, "combined reactive energy 1", "kvarh"),
    (0x04, 4, "combined reactive energy 2", "kvarh"),
)
MAX_TARIFFS = 4
for _di2, _c, _name, _unit in _ENERGY_KINDS:
    for _tariff in range(MAX_TARIFFS + 1):
        _label = "total" if _tariff == 0 else f"tariff {_tariff}"
        _add(
            DataItem(
                (_di2 << 16) | (_tariff << 8),
                f"{_name}, {_label}",
                ENERGY,
                (f"1-0:{_c}.8.{_tariff}",),
                _unit,
            )
        )
    _add(
        DataItem(
            (_di2 << 16) | 0xFF00,
            f"{_name} block",
            ENERGY,
            tuple(f"1-0:{_c}.8.{t}" for t in range(MAX_TARIFFS + 1)),
            _unit,
            open_ended=True,
        )
    )

# Instantaneous values: (DI2, name, format, unit, OBIS per element index).
_PHASES = ("A", "B", "C")
_INSTANT: tuple[tuple[int, str, Numeric, str, dict[int, str]], ...] = (
    (0x01, "voltage", VOLTAGE, "V", {1: "1-0:32.7.0", 2: "1-0:52.7.0", 3: "1-0:72.7.0"}),
    (0x02, "current", CURRENT, "A", {1: "1-0:31.7.0", 2: "1-0:51.7.0", 3: "1-0:71.7.0"}),
    (
        0x03,
        "active power",
        POWER,
        "kW",
        {0: "1-0:16.7.0", 1: "1-0:36.7.0", 2: "1-0:56.7.0", 3: "1-0:76.7.0"},
    ),
    (
        0x04,
        "reactive power",
        POWER,
        "kvar",
        {0: "1-0:131.7.0", 1: "1-0:151.7.0", 2: "1-0:171.7.0", 3: "1-0:191.7.0"},
    ),
    (
        0x06,
        "power factor",
        POWER_FACTOR,
        "",
        {0: "1-0:13.7.0", 1: "1-0:33.7.0", 2: "1-0:53.7.0", 3: "1-0:73.7.0"},
    ),
    (0x07, "phase angle", ANGLE, "°", {1: "1-0:81.7.4", 2: "1-0:81.7.15", 3: "1-0:81.7.26"}),
)
for _di2, _name, _fmt, _unit, _elements in _INSTANT:
    for _index, _obis in _elements.items():
        _label = "total" if _index == 0 else f"phase {_PHASES[_index - 1]}"
        _add(DataItem(0x02000000 | (_di2 << 16) | (_index << 8), f"{_name}, {_label}",
                      _fmt, (_obis,), _unit))
    _add(DataItem(0x02000000 | (_di2 << 16) | 0xFF00, f"{_name} block", _fmt,
                  tuple(_elements[i] for i in sorted(_elements)), _unit))

_add(DataItem(0x02800001, "neutral current", CURRENT, ("1-0:91.7.0",), "A"))
_add(DataItem(0x02800002, "grid frequency", FREQUENCY, ("1-0:14.7.0",), "Hz"))
_add(DataItem(0x03300D00, "cover-open count", COUNT, ("0-0:96.20.0",), "count"))
_add(DataItem(0x04000402, "meter number", METER_NUMBER, (METER_NUMBER_OBIS := "0-0:96.1.0",),
              "number"))

DI_DATE = 0x04000101
DI_TIME = 0x04000102
DI_ADDRESS = 0x04000401
DI_COVER_RECORD = 0x03300D01
DI_STATUS_WORD_3 = 0x04000503
RELAY_OPEN_BIT = 0x0010
"""Status word 3, bit 4: the load switch (relay) is open."""
FROZEN_DAYS = 62


def di_frozen_time(n: int) -> int:
    """Daily frozen time, n-th most recent (1..62)."""
    _check_frozen(n)
    return 0x05060000 | n


def di_frozen_forward(n: int) -> int:
    _check_frozen(n)
    return 0x05060100 | n


def di_frozen_reverse(n: int) -> int:
    _check_frozen(n)
    return 0x05060200 | n


def _check_frozen(n: int) -> None:
    if not 1 <= n <= FROZEN_DAYS:
        raise ValueError(f"daily frozen record index must be 1..{FROZEN_DAYS}, got {n}")


FROZEN_FORWARD = ITEMS[0x0001FF00]
FROZEN_REVERSE = ITEMS[0x0002FF00]

# OBIS for clock values stored as readings: the meter clock's offset from the server.
CLOCK_OFFSET_OBIS = "0-0:1.0.0"


class UnknownDataId(FrameError):
    """The collector has no decoding for this identifier."""


def lookup(di: int) -> DataItem:
    item = ITEMS.get(di)
    if item is None and di >> 16 == 0x0506 and 1 <= di & 0xFF <= FROZEN_DAYS:
        item = {1: FROZEN_FORWARD, 2: FROZEN_REVERSE}.get((di >> 8) & 0xFF)
    if item is None:
        raise UnknownDataId(f"no decoding known for DI {di:08X}")
    return item


@dataclass(frozen=True, slots=True)
class DecodedValue:
    obis: str
    value: float
    unit: str
    decimals: int | None = None
    """The resolution the meter gave the value at; None where the wire does not say."""


def decode_values(item: DataItem, payload: bytes) -> list[DecodedValue]:
    size = item.fmt.size
    if item.open_ended:
        if not payload or len(payload) % size or len(payload) // size > len(item.obis):
            raise FrameError(
                f"DI {item.di:08X}: {len(payload)} bytes is not 1..{len(item.obis)} × {size}",
                raw=payload,
            )
        count = len(payload) // size
    else:
        count = len(item.obis)
        if len(payload) != size * count:
            raise FrameError(
                f"DI {item.di:08X}: expected {size * count} value bytes, got {len(payload)}",
                raw=payload,
            )
    return [
        DecodedValue(item.obis[i], item.fmt.decode(payload[i * size : (i + 1) * size]), item.unit,
                     item.fmt.decimals)
        for i in range(count)
    ]


def encode_values(item: DataItem, values: Sequence[float]) -> bytes:
    if not item.open_ended and len(values) != len(item.obis):
        raise ValueError(f"DI {item.di:08X} needs {len(item.obis)} values, got {len(values)}")
    return b"".join(item.fmt.encode(v) for v in values)


# --- dates and times (the meter keeps local time) -------------------------------------


def _bcd_fields(raw: bytes, count: int, what: str) -> list[int]:
    if len(raw) != count:
        raise FrameError(f"{what}: expected {count} bytes, got {len(raw)}", raw=raw)
    out = []
    for byte in reversed(raw):
        if byte >> 4 > 9 or byte & 0x0F > 9:
            raise FrameError(f"{what}: byte {byte:02X}H is not BCD", raw=raw)
        out.append((byte >> 4) * 10 + (byte & 0x0F))
    return out


def _local(fields: Iterable[int], tz: tzinfo, what: str, raw: bytes) -> datetime:
    year, month, day, hour, minute, second = fields
    try:
        return datetime(2000 + year, month, day, hour, minute, second, tzinfo=tz)
    except ValueError as exc:
        raise FrameError(f"{what}: {exc}", raw=raw) from None


def decode_date(raw: bytes) -> tuple[int, int, int]:
    """YYMMDDWW → (year, month, day); the weekday byte is informative only."""
    yy, mm, dd, _ww = _bcd_fields(raw, 4, "date")
    return 2000 + yy, mm, dd


def decode_time(raw: bytes) -> tuple[int, int, int]:
    hh, mi, ss = _bcd_fields(raw, 3, "time")
    return hh, mi, ss


def meter_clock(date_raw: bytes, time_raw: bytes, tz: tzinfo) -> datetime:
    year, month, day = decode_date(date_raw)
    hour, minute, second = decode_time(time_raw)
    return _local((year - 2000, month, day, hour, minute, second), tz, "clock", date_raw + time_raw)


def decode_frozen_time(raw: bytes, tz: tzinfo) -> datetime:
    yy, mm, dd, hh, mi = _bcd_fields(raw, 5, "frozen time")
    return _local((yy, mm, dd, hh, mi, 0), tz, "frozen time", raw)


def _bcd(values: Iterable[int]) -> bytes:
    return bytes(reversed([to_bcd_byte(v) for v in values]))


def encode_date(local: datetime) -> bytes:
    weekday = (local.weekday() + 1) % 7  # the standard counts Sunday as 0
    return _bcd((local.year % 100, local.month, local.day, weekday))


def encode_time(local: datetime) -> bytes:
    return _bcd((local.hour, local.minute, local.second))


def encode_frozen_time(local: datetime) -> bytes:
    return _bcd((local.year % 100, local.month, local.day, local.hour, local.minute))


def decode_comm_address(raw: bytes) -> str:
    return decode_address(raw)


def encode_comm_address(address: str) -> bytes:
    return encode_address(address)


# --- event records ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoverOpenRecord:
    start: datetime
    end: datetime | None
    forward_before_kwh: float | None
    reverse_before_kwh: float | None


def decode_cover_record(raw: bytes, tz: tzinfo) -> CoverOpenRecord:
    """Start ssmmhhDDMMYY, end likewise (zeros while still open), then energies before.

    Meters differ in how many energy fields follow; we keep the first two (forward and
    reverse active before opening) when present and ignore the rest.
    """
    if len(raw) < 12:
        raise FrameError(f"cover record needs at least 12 bytes, got {len(raw)}", raw=raw)
    start = _record_time(raw[0:6], tz)
    if start is None:
        raise FrameError("cover record has no start time", raw=raw)
    end = _record_time(raw[6:12], tz)
    forward = ENERGY.decode(raw[12:16]) if len(raw) >= 16 else None
    reverse = ENERGY.decode(raw[16:20]) if len(raw) >= 20 else None
    return CoverOpenRecord(start, end, forward, reverse)


def _record_time(raw: bytes, tz: tzinfo) -> datetime | None:
    if raw == bytes(6):
        return None
    yy, mm, dd, hh, mi, ss = _bcd_fields(raw, 6, "record time")
    return _local((yy, mm, dd, hh, mi, ss), tz, "record time", raw)


def _stamp(t: datetime | None) -> bytes:
    if t is None:
        return bytes(6)
    return _bcd((t.year % 100, t.month, t.day, t.hour, t.minute, t.second))


def encode_cover_record(rec: CoverOpenRecord) -> bytes:
    out = _stamp(rec.start) + _stamp(rec.end)
    if rec.forward_before_kwh is not None:
        out += ENERGY.encode(rec.forward_before_kwh)
        if rec.reverse_before_kwh is not None:
            out += ENERGY.encode(rec.reverse_before_kwh)
    return out


DI_POWER_DOWN_RECORD = 0x03110001
"""The last power failure (掉电): start and end, ssmmhhDDMMYY each (end zeros while off)."""
DI_TIME_SET_RECORD = 0x03300401
"""The last clock setting (校时): operator code (4 bytes), then the time before and the
time after, ssmmhhDDMMYY each."""


@dataclass(frozen=True, slots=True)
class PowerDownRecord:
    start: datetime
    end: datetime | None


@dataclass(frozen=True, slots=True)
class TimeSetRecord:
    operator: str
    before: datetime
    after: datetime


def decode_power_down_record(raw: bytes, tz: tzinfo) -> PowerDownRecord:
    if len(raw) < 12:
        raise FrameError(f"power-down record needs 12 bytes, got {len(raw)}", raw=raw)
    start = _record_time(raw[0:6], tz)
    if start is None:
        raise FrameError("power-down record has no start time", raw=raw)
    return PowerDownRecord(start, _record_time(raw[6:12], tz))


def encode_power_down_record(rec: PowerDownRecord) -> bytes:
    return _stamp(rec.start) + _stamp(rec.end)


def decode_time_set_record(raw: bytes, tz: tzinfo) -> TimeSetRecord:
    if len(raw) < 16:
        raise FrameError(f"time-setting record needs 16 bytes, got {len(raw)}", raw=raw)
    before, after = _record_time(raw[4:10], tz), _record_time(raw[10:16], tz)
    if before is None or after is None:
        raise FrameError("time-setting record has no times", raw=raw)
    return TimeSetRecord(f"{int.from_bytes(raw[0:4], 'little'):08X}", before, after)


def encode_time_set_record(rec: TimeSetRecord) -> bytes:
    return int(rec.operator, 16).to_bytes(4, "little") + _stamp(rec.before) + _stamp(rec.after)


# --- load profile ----------------------------------------------------------------------
#
# The meter's own memory of interval energy, read after downtime so that a slot the
# collector missed is still filled with what the meter measured. We read the energy class
# of the load-profile records, "given time" block (DI 06040001): the request carries, after
# the DI, a record count NN (BCD) and the first record's local time mmhhDDMMYY; each record
# in the reply is its local time YYMMDDhhmm followed by forward and reverse active energy
# totals (XXXXXX.XX kWh). Meters vary in what else a record holds; we ask for this class
# only.

DI_LOAD_PROFILE = 0x06040001
LOAD_PROFILE_OBIS = ("1-0:1.8.0", "1-0:2.8.0")
PROFILE_RECORD_LEN = 5 + 2 * ENERGY.size
PROFILE_MAX_RECORDS = 12
"""Records per request: twelve keep a reply (160 data bytes) inside one frame."""


@dataclass(frozen=True, slots=True)
class ProfileRecord:
    ts: datetime
    """Local time of the interval's end, as the meter stamps it."""
    forward_kwh: float
    reverse_kwh: float


def encode_profile_request(count: int, first: datetime) -> bytes:
    if not 1 <= count <= 99:
        raise ValueError(f"a load-profile request asks for 1..99 records, not {count}")
    return bytes([to_bcd_byte(count)]) + encode_frozen_time(first)


def decode_profile_request(raw: bytes, tz: tzinfo) -> tuple[int, datetime]:
    if len(raw) != 6:
        raise FrameError(f"load-profile request needs 6 bytes after the DI, got {len(raw)}",
                         raw=raw)
    (count,) = _bcd_fields(raw[:1], 1, "record count")
    return count, decode_frozen_time(raw[1:], tz)


def encode_profile_records(records: Sequence[ProfileRecord]) -> bytes:
    return b"".join(encode_frozen_time(r.ts) + ENERGY.encode(r.forward_kwh)
                    + ENERGY.encode(r.reverse_kwh) for r in records)


def decode_profile_records(raw: bytes, tz: tzinfo) -> list[ProfileRecord]:
    if len(raw) % PROFILE_RECORD_LEN:
        raise FrameError(f"load-profile reply of {len(raw)} bytes is not whole records of "
                         f"{PROFILE_RECORD_LEN}", raw=raw)
    out = []
    for i in range(0, len(raw), PROFILE_RECORD_LEN):
        rec = raw[i:i + PROFILE_RECORD_LEN]
        out.append(ProfileRecord(decode_frozen_time(rec[:5], tz), ENERGY.decode(rec[5:9]),
                                 ENERGY.decode(rec[9:13])))
    return out


# --- read planning ---------------------------------------------------------------------

OBIS_TO_DI: dict[str, int] = {
    item.obis[0]: item.di for item in ITEMS.values() if not item.is_block
}
BLOCKS: list[DataItem] = [item for item in ITEMS.values() if item.is_block]


def plan_reads(quantities: Iterable[str]) -> list[int]:
    """The fewest DIs that cover the wanted OBIS codes: a block wherever it saves a read.

    On a 2400-baud bus each read costs ~200 ms, so folding five tariff registers into one
    FF read is the difference between a bus that keeps up and one that does not.
    """
    wanted = list(dict.fromkeys(quantities))
    unknown = [q for q in wanted if q not in OBIS_TO_DI]
    if unknown:
        raise UnknownDataId(f"no DL/T 645 data identifier carries {', '.join(unknown)}")
    plan: list[int] = []
    covered: set[str] = set()
    for block in BLOCKS:
        members = [q for q in wanted if q in block.obis]
        if len(members) >= 2:
            plan.append(block.di)
            covered.update(members)
    plan.extend(OBIS_TO_DI[q] for q in wanted if q not in covered)
    return plan
