"""Which interval each meter's energy register is read at, from the schedules: the
flag rules and VEE both judge a meter against its own read interval."""

from __future__ import annotations

from datetime import timedelta

from collector.config.settings import Settings

ENERGY = "1-0:1.8.0"


def register_interval(settings: Settings) -> tuple[timedelta, dict[str, timedelta]] | None:
    """The interval the rules work on, and each meter's own register interval."""
    reading = [s for s in settings.schedules if ENERGY in s.quantities]
    if not reading:
        return None
    every = min(s.every for s in reading)
    per_meter = {}
    for meter in settings.meters:
        own = [s.every for s in reading if s.applies_to(meter.id)]
        per_meter[meter.id] = min(own) if own else timedelta(days=1)
    return every, per_meter
