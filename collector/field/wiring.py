"""`collector wiring`: read a meter's phase quantities a few times, and say in words
whether it is wired right, how sure that is, and what to change on the terminal block.

The three-phase four-wire fit is collector.phasors.fit, the same the head-end's wiring
flag uses. Around it: a meter with no load cannot be checked (there is no current to
compare), a missing voltage is named before any angle is trusted, a single-phase meter
can only be checked for a reversed current, an exporter's currents are expected to run
backward, and a three-phase three-wire meter is fitted with its own two elements.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from collector.phasors.fit import PHASES, WiringFit, circular_mean, fit_wiring, fixes

VOLTS = ("1-0:32.7.0", "1-0:52.7.0", "1-0:72.7.0")
AMPS = ("1-0:31.7.0", "1-0:51.7.0", "1-0:71.7.0")
ANGLES = ("1-0:81.7.4", "1-0:81.7.15", "1-0:81.7.26")
WATTS = ("1-0:36.7.0", "1-0:56.7.0", "1-0:76.7.0")
VARS = ("1-0:151.7.0", "1-0:171.7.0", "1-0:191.7.0")
PFS = ("1-0:33.7.0", "1-0:53.7.0", "1-0:73.7.0")
TOTAL_P = "1-0:16.7.0"
QUANTITIES = (*VOLTS, *AMPS, *ANGLES, *WATTS, *VARS, *PFS, TOTAL_P, "1-0:13.7.0")
SINGLE = ("1-0:32.7.0", "1-0:31.7.0", TOTAL_P, "1-0:13.7.0")

MIN_CURRENT_A = 0.05
VOLTAGE_PRESENT = 0.78
"""Below this share of nominal a phase's voltage counts as missing (the voltage-loss
flag's threshold)."""


@dataclass
class WiringReport:
    connection: str
    """'3P4W', '3P3W' or '1P'."""
    values: dict[str, float]
    """Each quantity's mean over the samples (angles: the circular mean)."""
    samples: int
    steady: bool
    ok: bool | None
    """True: wired right; False: a fault is named; None: it cannot be checked now."""
    verdict: str
    confidence: str = ""
    fixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    fit: WiringFit | None = None

    def as_json(self) -> dict[str, Any]:
        return {"connection": self.connection, "ok": self.ok, "verdict": self.verdict,
                "confidence": self.confidence, "fixes": self.fixes, "notes": self.notes,
                "steady": self.steady, "samples": self.samples,
                "values": {k: round(v, 4) for k, v in self.values.items()},
                "fit": None if self.fit is None else {
                    "perm": [PHASES[j] for j in self.fit.perm], "signs": list(self.fit.signs),
                    "load_angle_deg": self.fit.load_deg, "error_deg": self.fit.error_deg,
                    "margin_deg": self.fit.margin_deg}}


def mean_values(samples: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], bool]:
    """Each quantity's mean, and whether the samples agree (angles within 10°, currents
    within 20 %): a load switching mid-check makes any verdict unsafe."""
    keys = sorted({k for s in samples for k in s})
    out: dict[str, float] = {}
    steady = True
    for k in keys:
        got = np.array([s[k] for s in samples if k in s], dtype=float)
        if k in ANGLES:
            out[k] = float(circular_mean(got))
            spread = np.abs((got - out[k] + 180) % 360 - 180)
            steady &= bool(spread.max() <= 10)
        else:
            out[k] = float(got.mean())
            if k in AMPS and abs(out[k]) > MIN_CURRENT_A:
                steady &= bool(np.abs(got - out[k]).max() <= 0.2 * abs(out[k]))
    return out, steady


def diagnose(samples: Sequence[Mapping[str, float]], connection: str = "3P4W",
             exporter: bool = False, nominal_v: float = 220.0) -> WiringReport:
    values, steady = mean_values(samples)
    report = WiringReport(connection, values, len(samples), steady, None, "")
    if not steady:
        report.notes.append("the readings changed between samples (a load switching?): "
                            "check again when the load is steady")
    if connection == "1P":
        return _single(report, exporter)
    elements = (0, 2) if connection == "3P3W" else (0, 1, 2)
    volts = [values.get(VOLTS[k], 0.0) for k in elements]
    amps = [abs(values.get(AMPS[k], 0.0)) for k in elements]
    live = 0.9 * nominal_v if connection == "3P3W" else VOLTAGE_PRESENT * nominal_v
    missing = [PHASES[k] for k, v in zip(elements, volts, strict=True) if v < live]
    if missing:
        return _faulted(report, [f"phase {p} voltage missing" for p in missing],
                        [f"check the phase {p} voltage lead and its fuse at the terminal "
                         "block" for p in missing])
    if max(amps) < MIN_CURRENT_A:
        report.verdict = "no load: the check needs current flowing; switch a load on"
        return report
    idle = [PHASES[k] for k, a in zip(elements, amps, strict=True) if a < MIN_CURRENT_A]
    if idle:
        report.verdict = (f"no current on phase {', '.join(idle)}: the check needs current "
                          "on every phase (a load on each, or a three-phase load)")
        return report
    angles = _angles(report, elements)
    if angles is None:
        return _power_signs(report, elements, exporter)
    observed = np.array(angles)
    if exporter and values.get(TOTAL_P, 0.0) < 0:
        observed = (observed + 180) % 360  # export is expected: judge the currents' return
        report.notes.append("exporting: the currents are judged as export, as expected")
    if connection == "3P3W":
        return _three_wire(report, observed)
    fit = fit_wiring(observed)
    if fit is None or fit.error_deg > 30:
        report.verdict = ("the angles fit no wiring: check the meter's phase sequence and "
                          "that each voltage lead is on its own phase")
        report.confidence = "low"
        return report
    report.fit = fit
    report.ok = fit.correct
    report.verdict = "wiring correct" if fit.correct else fit.description
    report.confidence = fit.confidence if steady else "low"
    report.fixes = fixes(fit.perm, fit.signs)
    report.notes.append(f"load angle {fit.load_deg:+.0f}° (PF "
                        f"{math.cos(math.radians(fit.load_deg)):.2f}), fit within "
                        f"{fit.error_deg:.0f}°")
    return report


def _angles(report: WiringReport, elements: Sequence[int]) -> list[float] | None:
    """Each element's U→I angle: read, or else worked out from its own P and Q (a meter
    computes both from the same voltage and current, so atan2(Q, P) is that angle).
    None when a profile maps neither."""
    values = report.values
    if all(ANGLES[k] in values for k in elements):
        return [values[ANGLES[k]] for k in elements]
    if all(WATTS[k] in values and VARS[k] in values for k in elements):
        report.notes.append("no angle registers: each angle is worked out from its "
                            "phase's active and reactive power")
        return [math.degrees(math.atan2(values[VARS[k]], values[WATTS[k]])) % 360
                for k in elements]
    return None


def _power_signs(report: WiringReport, elements: Sequence[int],
                 exporter: bool) -> WiringReport:
    """With only active power per phase, a phase whose power runs backward is certain to
    be miswired, but phase order cannot be told: a swapped current can still read
    forward."""
    report.notes.append("the meter gives no phase angles or reactive power: only the "
                        "direction of each phase's power can be checked, not phase order")
    powers = [report.values.get(WATTS[k]) for k in elements]
    if any(p is None for p in powers):
        report.verdict = ("the meter gives no per-phase angles or power: its wiring "
                          "cannot be checked")
        return report
    backward = [PHASES[k] for k, p in zip(elements, powers, strict=True)
                if p is not None and (p > 0 if exporter else p < 0)]
    if backward:
        return _faulted(report, [f"phase {p} power runs backward" for p in backward],
                        [f"check the phase {p} current: reversed (S1/S2) or on another "
                         "phase's voltage" for p in backward])
    report.verdict = ("every phase's power runs " + ("backward (exporting)"
                      if exporter else "forward") + "; phase order not checked")
    return report


def _faulted(report: WiringReport, faults: list[str], fixes: list[str]) -> WiringReport:
    """A fault the readings show beyond doubt, named with what to change."""
    report.ok = False
    report.verdict = "; ".join(faults)
    report.confidence = "high"
    report.fixes = fixes
    return report


def _single(report: WiringReport, exporter: bool) -> WiringReport:
    report.notes.append("a single-phase meter has one element: only the direction of its "
                        "current can be checked, not phase order")
    amps = abs(report.values.get(AMPS[0], 0.0))
    if amps < MIN_CURRENT_A:
        report.verdict = "no load: the check needs current flowing; switch a load on"
        return report
    power = report.values.get(TOTAL_P, 0.0)
    if power < 0 and not exporter:
        report.ok = False
        report.verdict = "current reversed: the meter counts consumption as export"
        report.fixes = ["swap the live in and out leads (or the CT's S1/S2) on the meter"]
    else:
        report.ok = True
        report.verdict = "current direction correct" + (" (exporting)" if power < 0 else "")
    report.confidence = "high"
    return report


_THREE_WIRE = [(swap, s1, s2) for swap in (False, True) for s1 in (1, -1) for s2 in (1, -1)]


def _three_wire(report: WiringReport, observed: np.ndarray[Any, Any]) -> WiringReport:
    """Element 1 reads U_AB against its current, element 2 U_CB: with I_A and I_C in
    place they read load + 30° and load − 30°."""
    fits = []
    for swap, s1, s2 in _THREE_WIRE:
        base = np.array([-90.0, 90.0]) if swap else np.array([30.0, -30.0])
        base = base + np.array([180.0 if s1 < 0 else 0.0, 180.0 if s2 < 0 else 0.0])
        offsets = (observed - base) % 360
        load = float(circular_mean(offsets)) % 360
        load = load - 360 if load > 180 else load
        if not -60 <= load <= 60:
            continue
        err = float(np.abs((offsets - load + 180) % 360 - 180).max())
        fits.append((round(err / 5), swap + (s1 < 0) + (s2 < 0), err, swap, s1, s2, load))
    if not fits:
        report.verdict = "the angles fit no three-wire wiring: check the phase sequence"
        report.confidence = "low"
        return report
    _, _, err, swap, s1, s2, load = min(fits)
    faults = (["phase A and C currents swapped"] if swap else []) + [
        f"element {n} current reversed" for n, s in ((1, s1), (2, s2)) if s < 0]
    report.ok = not faults
    report.verdict = "; ".join(faults) or "wiring correct"
    report.confidence = "high" if err <= 8 else "medium" if err <= 20 else "low"
    report.fixes = (["swap the current leads of elements 1 and 2"] if swap else []) + [
        f"reverse the S1/S2 leads on element {n}" for n, s in ((1, s1), (2, s2)) if s < 0]
    report.notes.append(f"load angle {load:+.0f}°, fit within {err:.0f}°")
    return report
