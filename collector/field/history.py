"""A meter's own memory, read over the bus: its load-profile records, its daily frozen
registers and its event records, for a technician who wants to know what the meter saw
while nobody was polling it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo

from protocols.dlt645 import data_ids
from protocols.dlt645.client import Dlt645Client
from protocols.dlt645.codec import MeterErrorReply

Progress = Callable[[str, int, int], None]
"""(what, done, total) after each step."""


@dataclass
class MeterHistory:
    profile: list[data_ids.ProfileRecord] = field(default_factory=list)
    frozen: list[tuple[datetime, float, float]] = field(default_factory=list)
    """(frozen at, forward total, reverse total), newest first."""
    events: list[dict[str, object]] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    """What the meter answered 'no such data' for."""
    decimals: int = data_ids.ENERGY.decimals
    """The resolution of the energy values, as the meter's data format holds them."""


async def read_history(client: Dlt645Client, address: str, days: int, tz: tzinfo,
                       now: datetime, progress: Progress | None = None,
                       every: timedelta = timedelta(minutes=15)) -> MeterHistory:
    out = MeterHistory()
    frozen_days = min(days, data_ids.FROZEN_DAYS)
    steps = frozen_days + 2
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(what, done, steps)

    first = (now - timedelta(days=days)).astimezone(tz)
    try:
        out.profile = await client.read_load_profile(address, first, now.astimezone(tz),
                                                     every, tz)
    except MeterErrorReply:
        out.unsupported.append("load profile (DI 06040001)")
    step("load profile")
    for n in range(1, frozen_days + 1):
        try:
            raw = await client.read(address, data_ids.di_frozen_time(n))
            at = data_ids.decode_frozen_time(raw, tz)
            fwd = await client.read_values(address, data_ids.di_frozen_forward(n))
            rev = await client.read_values(address, data_ids.di_frozen_reverse(n))
        except MeterErrorReply:
            if n == 1:
                out.unsupported.append("daily frozen values (DI 0506xxxx)")
            break
        finally:
            step(f"frozen day {n}")
        out.frozen.append((at, fwd[0].value, rev[0].value))
        out.decimals = fwd[0].decimals if fwd[0].decimals is not None else out.decimals
    try:
        rec = data_ids.decode_cover_record(await client.read(address, data_ids.DI_COVER_RECORD),
                                           tz)
        out.events.append({"kind": "cover_open", "start": rec.start.isoformat(),
                           "end": rec.end.isoformat() if rec.end else None,
                           "forward_before_kwh": rec.forward_before_kwh})
    except MeterErrorReply:
        out.events.append({"kind": "cover_open", "none": True})
    try:
        down = data_ids.decode_power_down_record(
            await client.read(address, data_ids.DI_POWER_DOWN_RECORD), tz)
        out.events.append({"kind": "power_down", "start": down.start.isoformat(),
                           "end": down.end.isoformat() if down.end else None})
    except MeterErrorReply:
        out.events.append({"kind": "power_down", "none": True})
    try:
        sets = data_ids.decode_time_set_record(
            await client.read(address, data_ids.DI_TIME_SET_RECORD), tz)
        out.events.append({"kind": "clock_set", "operator": sets.operator,
                           "before": sets.before.isoformat(), "after": sets.after.isoformat()})
    except MeterErrorReply:
        out.events.append({"kind": "clock_set", "none": True})
    step("events")
    return out
