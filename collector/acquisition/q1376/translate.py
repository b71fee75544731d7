"""A terminal's data units → readings and events of the one data model.

Times on the wire are the terminal's local wall time; here they become UTC with the
collector's time zone. Stamps follow the house rule: a register curve's point is the
register at the slot's end; a daily freeze of day D is the register at the end of D
(local midnight after it); a monthly freeze of month M at the end of M. A None (0xEE on
the wire) becomes no reading at all, so VEE sees a gap and never a zero.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, tzinfo

from collector.acquisition.clock import local_midnight
from collector.acquisition.pipeline import scaled, source_tag
from model import Event, Meter, Reading, ReadKind
from protocols.q1376 import items
from protocols.q1376.events import POINT_RECORDS, EventPage, Record
from protocols.q1376.values import Curve, Frozen, Present, Registers

ENERGY_OBIS = {
    items.F_FORWARD: 1, items.F_REVERSE: 2, items.F_CURVE_FORWARD: 1,
    items.F_CURVE_REVERSE: 2, items.F_DAILY_FORWARD: 1, items.F_DAILY_REVERSE: 2,
    items.F_MONTHLY_FORWARD: 1, items.F_MONTHLY_REVERSE: 2,
}
CURVE_OBIS = {
    items.F_CURVE_FORWARD: ("1-0:1.8.0", "kWh"), items.F_CURVE_REVERSE: ("1-0:2.8.0", "kWh"),
    89: ("1-0:32.7.0", "V"), 90: ("1-0:52.7.0", "V"), 91: ("1-0:72.7.0", "V"),
    92: ("1-0:31.7.0", "A"), 93: ("1-0:51.7.0", "A"), 94: ("1-0:71.7.0", "A"),
}


def utc(local: datetime, tz: tzinfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(UTC)


def day_end(day: date, tz: tzinfo) -> datetime:
    return local_midnight(day + timedelta(days=1), tz)


def month_end(month: date, tz: tzinfo) -> datetime:
    return local_midnight(date(month.year + month.month // 12, month.month % 12 + 1, 1), tz)


def _tag(meter: Meter, extra: str) -> str:
    return source_tag("q1376", meter.bus, meter.multiplier, extra)


def register_readings(meter: Meter, fn: int, regs: Registers, ts: datetime,
                      kind: ReadKind, extra: str) -> list[Reading]:
    c = ENERGY_OBIS[fn]
    return [Reading(meter.id, f"1-0:{c}.8.{tariff}", ts, scaled(meter, "kWh", value), "kWh",
                    source=_tag(meter, extra), kind=kind)
            for tariff, value in enumerate(regs.values[:5]) if value is not None]


def frozen_readings(meter: Meter, fn: int, frozen: Frozen, tz: tzinfo) -> list[Reading]:
    if frozen.monthly:
        return register_readings(meter, fn, frozen.registers, month_end(frozen.period, tz),
                                 ReadKind.FROZEN_MONTHLY, "month")
    return register_readings(meter, fn, frozen.registers, day_end(frozen.period, tz),
                             ReadKind.FROZEN_DAILY, "day")


def curve_readings(meter: Meter, fn: int, curve: Curve, tz: tzinfo,
                   not_after: datetime) -> list[Reading]:
    """Points up to `not_after` (a terminal's clock may run ahead of ours)."""
    obis, unit = CURVE_OBIS[fn]
    request = curve.request
    first = utc(request.start, tz)
    step = timedelta(minutes=request.minutes)
    last = utc(request.start + step * max(0, request.points - 1), tz)
    # One conversion per curve where the zone keeps one offset across it (always, in
    # zones without DST); point by point where a DST change falls inside.
    steady = last - first == step * max(0, request.points - 1)
    source = _tag(meter, "curve")
    out = []
    for i, value in enumerate(curve.values):
        if value is None:
            continue
        ts = first + step * i if steady else utc(request.start + step * i, tz)
        if ts > not_after:
            break
        out.append(Reading(meter.id, obis, ts, scaled(meter, unit, value), unit,
                           source=source))
    return out


def present_readings(meter: Meter, present: Present, ts: datetime) -> list[Reading]:
    named: list[tuple[str, float | None, str]] = [
        ("1-0:16.7.0", present.active_kw[0], "kW"),
        ("1-0:131.7.0", present.reactive_kvar[0], "kvar"),
        ("1-0:13.7.0", None if present.power_factor[0] is None
         else present.power_factor[0] / 100, ""),
        ("1-0:91.7.0", present.neutral_current, "A"),
    ]
    for n, (v_obis, i_obis) in enumerate((("1-0:32.7.0", "1-0:31.7.0"),
                                          ("1-0:52.7.0", "1-0:51.7.0"),
                                          ("1-0:72.7.0", "1-0:71.7.0"))):
        named += [(v_obis, present.voltage[n], "V"), (i_obis, present.current[n], "A")]
    return [Reading(meter.id, obis, ts, scaled(meter, unit, value), unit,
                    source=_tag(meter, "now"), kind=ReadKind.INSTANT)
            for obis, value, unit in named if value is not None]


def unit_readings(meter: Meter, fn: int, value: object, tz: tzinfo, now: datetime,
                  extra: str = "now") -> list[Reading]:
    """Whatever one decoded unit holds, as readings: curves, freezes, present registers
    (stamped at their read time, never after now) and present values."""
    if isinstance(value, Curve):
        return curve_readings(meter, fn, value, tz, now)
    if isinstance(value, Frozen):
        return frozen_readings(meter, fn, value, tz)
    if isinstance(value, Registers) and fn in ENERGY_OBIS:
        ts = utc(value.read_at, tz) if value.read_at else now
        return register_readings(meter, fn, value, min(ts, now), ReadKind.INSTANT, extra)
    if isinstance(value, Present):
        return present_readings(meter, value, now)
    return []


def record_event(record: Record, meter_id: str, terminal: str, tz: tzinfo,
                 fallback: datetime) -> Event:
    start = utc(record.start, tz) if record.start else fallback
    details: dict[str, object] = {"erc": record.code, "terminal": terminal,
                                  "raw": record.data.hex()}
    if record.end is not None:
        details["end"] = utc(record.end, tz).isoformat()
    if record.code in POINT_RECORDS:
        details["began"] = record.began
    if record.before is not None:
        details["before"] = utc(record.before, tz).isoformat()
    if record.after is not None:
        details["after"] = utc(record.after, tz).isoformat()
    return Event(meter_id, start, record.kind, details)


def page_events(page: EventPage, meters_by_pn: dict[int, Meter], terminal: str,
                terminal_id: str, tz: tzinfo, now: datetime) -> list[Event]:
    """Each record to the meter of its pn; records about the terminal itself (p0, or a
    pn we do not know) to the terminal's own id, so nothing is dropped."""
    out = []
    for record in page.records:
        owner = meters_by_pn.get(record.pn)
        out.append(record_event(record, owner.id if owner else terminal_id, terminal, tz,
                                now))
    return out
