"""The validation rules, each judging every meter's local day at once as arrays.

A rule's verdict is pass or fail; a failure carries its evidence (which slot, what
value, what limit), so a clerk can see why a day is held without rerunning anything.
Rules judge the current values, estimates included, except the gap rule, which judges
what the meter itself delivered and reports what estimation did about it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collector.config.vee import VeeSettings
from collector.vee import codes
from collector.vee.grid import BOOL, F64, Grid
from model import Verdict


@dataclass
class Judgement:
    """Rule → meters × judged days: passed; a day a meter was not due is not judged."""

    grid: Grid
    judged: BOOL
    passed: dict[str, BOOL]
    estimated: NDArray[np.int64]
    """Due slots per meter-day that hold an estimate."""
    nulls: NDArray[np.int64]
    """Due slots per meter-day with no value at all (null estimate, or none yet)."""
    evidence: dict[tuple[str, int, int], dict[str, Any]] = field(default_factory=dict)

    def holds(self, rule: str) -> BOOL:
        """Meter-days this rule holds from billing: a gap every estimate filled does not."""
        failing = self.judged & ~self.passed[rule]
        return failing & (self.nulls > 0) if rule == codes.GAP else failing

    def held(self) -> BOOL:
        out = np.zeros_like(self.judged)
        for rule in self.passed:
            out |= self.holds(rule)
        return out

    def verdicts(self) -> list[Verdict]:
        g = self.grid
        out = []
        for i, d in zip(*np.nonzero(self.judged), strict=True):
            day = g.days[g.judged_from + int(d)]
            for rule in codes.RULES:
                ok = bool(self.passed[rule][i, d])
                out.append(Verdict(g.meter_ids[i], day, rule, ok,
                                   self.evidence.get((rule, int(i), int(d)), {})))
        return out


def judge(g: Grid, s: VeeSettings, phases: NDArray[np.int64], exporter: BOOL) -> Judgement:
    days = len(g.days) - g.judged_from
    m = len(g.meter_ids)
    energy = g.energy()
    step_h = g.step / timedelta(hours=1)
    wrap = s.register_max + s.register_resolution
    rating = s.max_kw_per_phase * np.maximum(phases, 1) * step_h
    reference = _history_p95(g, energy)
    judged = np.zeros((m, days), dtype=bool)
    passed = {rule: np.ones((m, days), dtype=bool) for rule in codes.RULES}
    estimated = np.zeros((m, days), dtype=np.int64)
    nulls = np.zeros((m, days), dtype=np.int64)
    out = Judgement(g, judged, passed, estimated, nulls)
    ev = out.evidence
    for d in range(days):
        day = g.judged_from + d
        lo, hi = int(g.edges[day]) + 1, int(g.edges[day + 1]) + 1
        due = g.expected[:, lo:hi]
        judged[:, d] = due.any(axis=1)
        fixed = g.fixed[:, lo:hi]
        have = ~np.isnan(g.value[:, lo:hi])
        missing = due & ~fixed
        estimated[:, d] = (missing & have).sum(axis=1)
        nulls[:, d] = (missing & ~have).sum(axis=1)
        for i in np.flatnonzero(missing.any(axis=1) & judged[:, d]):
            passed[codes.GAP][i, d] = False
            gaps = np.flatnonzero(missing[i])
            ev[(codes.GAP, int(i), d)] = {
                "missing": len(gaps), "estimated": int(estimated[i, d]),
                "null": int(nulls[i, d]),
                "first": g.ts(lo + int(gaps[0])).isoformat(),
                "longest_minutes": _longest(missing[i]) * step_h * 60}
        e = energy[:, lo:hi]
        prev, cur = g.value[:, lo - 1:hi - 1], g.value[:, lo:hi]
        rolled = (prev > wrap / 2) & (cur < wrap / 2) & ((wrap - prev + cur) <= rating[:, None])
        dropped = (cur < s.replacement_drop_ratio * prev) & (prev > 1.0) & due & ~rolled
        backward = (e < -s.backward_kwh) & due & ~rolled & ~dropped
        for i, k in zip(*np.nonzero(backward), strict=True):
            if passed[codes.NEGATIVE][i, d]:
                passed[codes.NEGATIVE][i, d] = False
                ev[(codes.NEGATIVE, int(i), d)] = {
                    "ts": g.ts(lo + int(k)).isoformat(), "from": float(prev[i, k]),
                    "to": float(cur[i, k]), "kwh": float(e[i, k])}
        for i, k in zip(*np.nonzero(rolled & due), strict=True):
            ev.setdefault((codes.NEGATIVE, int(i), d), {
                "rollover": g.ts(lo + int(k)).isoformat(), "from": float(prev[i, k]),
                "to": float(cur[i, k]), "kwh": float(wrap - prev[i, k] + cur[i, k])})
        for i, k in zip(*np.nonzero(dropped), strict=True):
            if passed[codes.REPLACEMENT][i, d]:
                passed[codes.REPLACEMENT][i, d] = False
                ev[(codes.REPLACEMENT, int(i), d)] = {
                    "ts": g.ts(lo + int(k)).isoformat(), "from": float(prev[i, k]),
                    "to": float(cur[i, k]),
                    "hint": "the register restarted near zero with no replacement on record:"
                            " record it with `collector meters replace`"}
        for (row, at_day), change in g.renumbered.items():
            if at_day == day and judged[row, d] and passed[codes.REPLACEMENT][row, d]:
                passed[codes.REPLACEMENT][row, d] = False
                ev[(codes.REPLACEMENT, row, d)] = {
                    **change, "meter_number": True,
                    "hint": f"meter number {change['from']} became {change['to']}: another "
                            "meter answers at this address; record the replacement with "
                            "`collector meters replace`"}
        real = np.where(rolled, wrap - prev + cur, e)
        history = reference[:, None] * s.spike_factor
        spike = due & ((real > rating[:, None]) | (
            ~np.isnan(history) & (real > np.maximum(history, s.spike_min_kwh))))
        for i in np.flatnonzero(spike.any(axis=1)):
            k = int(np.nanargmax(np.where(spike[i], real[i], np.nan)))
            passed[codes.SPIKE][i, d] = False
            ev[(codes.SPIKE, int(i), d)] = {
                "ts": g.ts(lo + k).isoformat(), "kwh": float(real[i, k]),
                "rating_kwh": float(rating[i]),
                "history_p95_kwh": None if np.isnan(reference[i]) else float(reference[i])}
        zero = (np.abs(e) <= 1e-9) & due
        for i in np.flatnonzero((zero.sum(axis=1) >= s.zero_run_intervals) & ~exporter):
            run = _longest(zero[i])
            volts = g.volts[i, day]
            live = (not np.isnan(volts) and volts >= s.voltage_present_v) or bool(
                np.nansum(np.where(due[i], e[i], 0.0)) > s.sum_tolerance_kwh)
            if run >= s.zero_run_intervals and live:
                passed[codes.ZERO][i, d] = False
                ev[(codes.ZERO, int(i), d)] = {
                    "intervals": run, "max_volts": None if np.isnan(volts) else float(volts),
                    "day_kwh": float(np.nansum(np.where(due[i], e[i], 0.0)))}
        _sum_check(g, s, d, day, due, passed, ev)
        late = g.clock[:, day] > s.clock_tolerance_s
        for i in np.flatnonzero(late & judged[:, d]):
            passed[codes.TIME][i, d] = False
            ev[(codes.TIME, int(i), d)] = {"max_offset_s": float(g.clock[i, day]),
                                           "tolerance_s": s.clock_tolerance_s}
    return out


def _sum_check(g: Grid, s: VeeSettings, d: int, day: int, due: BOOL, passed: dict[str, BOOL],
               ev: dict[tuple[str, int, int], dict[str, Any]]) -> None:
    """Σ of the day's intervals (the interval register's midnight-to-midnight delta)
    against the meter's own frozen daily register over the same span."""
    a, b = int(g.edges[day]), int(g.edges[day + 1])
    intervals = g.value[:, b] - g.value[:, a]
    frozen = g.frozen[:, day + 1] - g.frozen[:, day]
    whole = due.all(axis=1)
    tol = np.maximum(np.abs(frozen) * s.sum_tolerance_pct / 100, s.sum_tolerance_kwh)
    bad = whole & ~np.isnan(intervals) & ~np.isnan(frozen) & (np.abs(intervals - frozen) > tol)
    for i in np.flatnonzero(bad):
        passed[codes.SUM][i, d] = False
        ev[(codes.SUM, int(i), d)] = {"intervals_kwh": float(intervals[i]),
                                      "register_kwh": float(frozen[i]),
                                      "tolerance_kwh": float(tol[i])}


def _history_p95(g: Grid, energy: F64) -> F64:
    """Each meter's 95th percentile of actual interval energy before the judged days."""
    end = int(g.edges[g.judged_from]) + 1
    ok = np.zeros_like(g.fixed[:, :end])
    ok[:, 1:] = g.fixed[:, 1:end] & g.fixed[:, : end - 1]
    hist = np.where(ok, energy[:, :end], np.nan)
    out = np.full(len(g.meter_ids), np.nan)
    enough = ok.sum(axis=1) >= 96
    if enough.any():
        out[enough] = np.nanpercentile(hist[enough], 95, axis=1)
    return out


def _longest(mask: NDArray[np.bool_]) -> int:
    padded = np.concatenate(([0], mask.astype(np.int8), [0]))
    change = np.flatnonzero(np.diff(padded))
    return int((change[1::2] - change[::2]).max()) if len(change) else 0
