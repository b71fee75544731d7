"""A service point's billing determinants for one part of a cycle, from validated reads.

Energy comes from the registers: (end − start) × multiplier for each meter that was on
the service point, so a replacement bills both meters and nothing twice. Each TOU
period's energy comes from the meter's own tariff register where it keeps one, and is
checked against the interval reads summed over the tariff's calendar; intervals also
give the maximum 15-minute demand and how much of the part was estimated.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray

from collector.billing.reads import TOTAL, Read, Reads
from collector.billing.tariff import Tariff, register_of
from collector.config.billing import BillingSettings
from collector.vee.service_points import register_delta
from model import Hold, MeterAssignment, Quality
from storage.arrays import ACTUAL_CODE, CurrentArrays


@dataclass
class Energy:
    """One part's energy figures and where each came from."""

    kwh: float | None = None
    tou: dict[str, float] = field(default_factory=dict)
    tou_source: str = "none"
    tou_check: dict[str, Any] = field(default_factory=dict)
    demand_kw: float | None = None
    demand_at: datetime | None = None
    demand_estimated: bool = False
    slots: int = 0
    estimated_slots: int = 0
    methods: Counter[str] = field(default_factory=Counter)
    reads: list[Read] = field(default_factory=list)
    meters: list[dict[str, Any]] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)


@dataclass
class _Slots:
    kwh: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    total: float = 0.0
    complete: bool = True
    estimated_by_period: Counter[str] = field(default_factory=Counter)


def part_energy(sp: str, lo: datetime, hi: datetime, tariff: Tariff,
                assignments: Sequence[MeterAssignment], reads: Reads, tz: ZoneInfo,
                settings: BillingSettings, step: timedelta,
                register_max: float, resolution: float) -> Energy:
    out = Energy()
    periods = tariff.periods
    registers_ok = True
    total = 0.0
    tou: dict[str, float] = defaultdict(float)
    slots_all = _Slots()
    on_point = [a for a in assignments
                if (a.start is None or a.start < hi) and (a.end is None or a.end > lo)]
    if not on_point:
        out.holds.append(Hold("no_meter", f"no meter on {sp} between {lo:%Y-%m-%d} and "
                                          f"{hi:%Y-%m-%d}"))
        return out
    for a in on_point:
        a_lo = max(lo, a.start) if a.start else lo
        a_hi = min(hi, a.end) if a.end else hi
        ends = [_end_read(reads, a, a_lo, a.start_read if a.start == a_lo else None),
                _end_read(reads, a, a_hi, a.final_read if a.end == a_hi else None)]
        meter_doc: dict[str, Any] = {"meter": a.meter_id, "multiplier": a.multiplier,
                                     "from": a_lo.isoformat(), "to": a_hi.isoformat()}
        r0, r1 = ends
        if r0 is None or r1 is None:
            missing = a_lo if r0 is None else a_hi
            out.holds.append(Hold("no_read", f"meter {a.meter_id} has no register read at "
                                             f"{missing.astimezone(tz):%Y-%m-%d %H:%M}"))
            meter_doc["kwh"] = None
            out.meters.append(meter_doc)
            registers_ok = False
            continue
        out.reads += [r0, r1]
        kwh = register_delta(r0.value, r1.value, register_max, resolution) * a.multiplier
        total += kwh
        meter_doc.update(start={TOTAL: r0.cite()}, end={TOTAL: r1.cite()}, kwh=round(kwh, 4))
        for p in periods:
            q = register_of(p)
            s, e = reads.register(a.meter_id, q, a_lo), reads.register(a.meter_id, q, a_hi)
            if s is None or e is None:
                registers_ok = False
                continue
            out.reads += [s, e]
            meter_doc["start"][q], meter_doc["end"][q] = s.cite(), e.cite()
            tou[p] += register_delta(s.value, e.value, register_max, resolution) * a.multiplier
        _add_slots(out, slots_all, *reads.series(a.meter_id), a_lo, a_hi, a, tariff, tz,
                   step)
        out.meters.append(meter_doc)
    if any(h.code == "no_read" for h in out.holds):
        return out
    out.kwh = round(total, 4)
    if registers_ok and periods:
        out.tou, out.tou_source = {p: round(tou[p], 4) for p in periods}, "registers"
        unpriced = total - sum(tou.values())
        if abs(unpriced) > _tolerance(total, settings):
            out.holds.append(Hold("tou_mismatch", f"the tariff's periods "
                                  f"({', '.join(periods)}) hold {sum(tou.values()):.2f} kWh "
                                  f"of the total {total:.2f} kWh: the meter's tariff calendar "
                                  f"is not the tariff's"))
    elif slots_all.complete and out.slots:
        out.tou = {p: round(slots_all.kwh[p], 4) for p in periods}
        out.tou_source = "intervals"
    elif len(periods) == 1:
        out.tou, out.tou_source = {periods[0]: out.kwh}, "total"
    else:
        out.holds.append(Hold("tou_unavailable", "no tariff registers and no complete "
                                                 "interval data to split the energy by period"))
    if out.tou_source == "registers" and out.slots:
        _cross_check(out, slots_all, settings)
    return out


def _end_read(reads: Reads, a: MeterAssignment, at: datetime, recorded: float | None
              ) -> Read | None:
    if recorded is not None:
        return Read(recorded, Quality.ACTUAL, "swap read", at)
    return reads.register(a.meter_id, TOTAL, at)


def _tolerance(kwh: float, settings: BillingSettings) -> float:
    return max(abs(kwh) * settings.tou_tolerance_pct / 100, settings.tou_tolerance_kwh)


def _add_slots(out: Energy, acc: _Slots, arr: CurrentArrays, rows: slice, lo: datetime,
               hi: datetime, a: MeterAssignment, tariff: Tariff, tz: ZoneInfo,
               step: timedelta) -> None:
    ts, value = arr.ts[rows], arr.value[rows]
    keep = (ts >= lo.timestamp()) & (ts <= hi.timestamp()) & ~np.isnan(value)
    idx = np.flatnonzero(keep) + rows.start
    expected = int((hi - lo) / step)
    if not len(idx):
        acc.complete = False
        return
    step_s = step.total_seconds()
    ts, value = arr.ts[idx], arr.value[idx]
    whole = np.flatnonzero(np.diff(ts) == step_s)
    """Slot j runs from read whole[j] to read whole[j] + 1: both ends read, one step apart."""
    kwh = (value[whole + 1] - value[whole]) * a.multiplier
    actual = arr.quality[idx] == ACTUAL_CODE
    estimated = ~(actual[whole] & actual[whole + 1])
    labels, names = _periods(tariff, lo, hi, step, tz)
    period = labels[np.rint((ts[whole] - lo.timestamp()) / step_s).astype(np.int64)]
    by_period = np.bincount(period, weights=kwh, minlength=len(names))
    est_by_period = np.bincount(period[estimated], minlength=len(names))
    for p, name in enumerate(names):
        acc.kwh[name] += float(by_period[p])
        if est_by_period[p]:
            acc.estimated_by_period[name] += int(est_by_period[p])
    out.slots += len(whole)
    out.estimated_slots += int(estimated.sum())
    for j in np.flatnonzero(estimated):
        k = int(idx[whole[j] + 1] if not actual[whole[j] + 1] else idx[whole[j]])
        out.methods[arr.methods[int(arr.method[k])] or str(arr.quality_of(k))] += 1
    if len(whole):
        kw = kwh / (step_s / 3600)
        top = int(np.argmax(kw))
        if out.demand_kw is None or kw[top] > out.demand_kw:
            out.demand_kw = float(kw[top])
            out.demand_at = datetime.fromtimestamp(float(ts[whole[top] + 1]), UTC)
            out.demand_estimated = bool(estimated[top])
    if len(whole) < expected:
        acc.complete = False


_PERIOD_CACHE: dict[tuple[str, datetime, datetime, timedelta, str],
                    tuple[NDArray[np.int64], list[str]]] = {}


def _periods(tariff: Tariff, lo: datetime, hi: datetime, step: timedelta, tz: ZoneInfo
             ) -> tuple[NDArray[np.int64], list[str]]:
    """The tariff period of every slot from lo to hi, by slot index from lo, and the
    period names: every meter of a cycle shares the same slots, so one calendar per
    tariff and span serves them all."""
    key = (tariff.source, lo, hi, step, str(tz))
    found = _PERIOD_CACHE.get(key)
    if found is None:
        if len(_PERIOD_CACHE) > 1000:
            _PERIOD_CACHE.clear()
        names: list[str] = []
        labels = []
        for k in range(int((hi - lo) / step) + 1):
            name = tariff.period_at((lo + k * step).astimezone(tz)).name
            if name not in names:
                names.append(name)
            labels.append(names.index(name))
        found = _PERIOD_CACHE[key] = (np.array(labels, dtype=np.int64), names)
    return found


def _cross_check(out: Energy, slots: _Slots, settings: BillingSettings) -> None:
    for period, by_register in out.tou.items():
        if not slots.complete or slots.estimated_by_period[period]:
            out.tou_check[period] = "not checked: intervals missing or estimated"
            continue
        by_slots = slots.kwh[period]
        ok = abs(by_register - by_slots) <= _tolerance(by_register, settings)
        out.tou_check[period] = {"registers": round(by_register, 4),
                                 "intervals": round(by_slots, 4), "ok": ok}
        if not ok:
            out.holds.append(Hold("tou_mismatch", f"{period}: the register gives "
                                  f"{by_register:.2f} kWh, the intervals summed over the "
                                  f"calendar {by_slots:.2f} kWh"))
