"""A person's edit of a span of register values: a given value, or a re-estimate that
treats the span as missing (the usual fix for a bad actual read). An edit is a new
version with its author and reason; the read it replaces stays in the history."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from collector.vee import codes
from collector.vee.engine import ENERGY, VeeEngine
from collector.vee.estimate import LikeDays, scaled_to
from model import Quality, ValueVersion
from storage.versions import Refused

EDIT_METHODS = {"linear": codes.LINEAR, "like-day": codes.SCALED}


async def edit(engine: VeeEngine, meter_id: str, quantity: str, start: datetime,
               end: datetime, *, value: float | None, method: str | None, reason: str,
               note: str, by: str, now: datetime) -> int:
    """Write the edit's versions; returns how many were written (0 when already so)."""
    if not reason:
        raise Refused("an edit needs a reason code (--reason); see `collector vee codes`")
    if reason not in codes.REASONS:
        raise Refused(f"unknown reason code {reason!r}; known: {', '.join(codes.REASONS)}")
    if not by:
        raise Refused("an edit must say who made it (--by)")
    if end < start:
        raise Refused("--to is before --from")
    if (value is None) == (method is None):
        raise Refused("give exactly one of --value or --method")
    known = {m.id for m in await engine.store.meters()} | set(engine.meters)
    if meter_id not in known:
        raise Refused(f"meter {meter_id!r} is unknown")
    meter = engine.meters.get(meter_id)
    step = engine.interval_of.get(meter_id, timedelta(minutes=engine.settings.interval_minutes))
    if value is not None:
        history = await engine.store.current_values(quantity, start, end, [meter_id])
        unit = history[0].unit if history else "kWh"
        stamps = sorted({v.ts for v in history}) or [start]
        versions = [ValueVersion(meter_id, quantity, ts, value, Quality.SUBSTITUTED, "",
                                 reason, by, note, unit) for ts in stamps]
        return await engine.store.write_versions(versions)
    if quantity != ENERGY or meter is None:
        raise Refused(f"--method re-estimates the {ENERGY} register of a configured meter "
                      "only; give --value for anything else")
    assert method is not None
    if method not in EDIT_METHODS:
        raise Refused(f"--method must be one of {', '.join(EDIT_METHODS)}")
    tz = engine.tz
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    grid = await engine.load([meter_id], first, last, step, now, {})
    ks = [k for k in range(grid.slots) if start <= grid.ts(k) <= end]
    if not ks:
        raise Refused("no interval slot lies between --from and --to")
    left = max((k for k in range(ks[0]) if grid.fixed[0, k]), default=None)
    right = min((k for k in range(ks[-1] + 1, grid.slots) if grid.fixed[0, k]), default=None)
    if left is None or right is None:
        raise Refused("a re-estimate needs an actual read before --from and after --to")
    delta = float(grid.value[0, right] - grid.value[0, left])
    n = right - left
    energy = np.full(n, delta / n)
    if method == "like-day":
        grid.fixed[0, left + 1:right] = False
        like = LikeDays(grid, tz, engine.settings.holidays)
        shape = like.shape_of(0, engine.settings.like_days)
        scaled = scaled_to(shape(range(left + 1, right + 1)), delta)
        if scaled is None:
            raise Refused("no like-day history for this meter; use --method linear")
        energy = scaled
    regs = grid.value[0, left] + np.cumsum(energy)
    versions = [ValueVersion(meter_id, ENERGY, grid.ts(k), float(regs[k - left - 1]),
                             Quality.SUBSTITUTED, EDIT_METHODS[method], reason, by, note)
                for k in range(left + 1, right)]
    return await engine.store.write_versions(versions)
