"""A three-phase meter wired wrong, on the wire: its elements given the wrong phase's
current (any permutation), a CT reversed, or a voltage lead off. The angles, per-phase
powers and the registers all follow from the physics, so `collector wiring` and the
head-end's flag see what a real miswired meter shows."""

from __future__ import annotations

import math
from dataclasses import dataclass

PHASE_ANGLE = (0.0, -120.0, 120.0)
PHASE_OBIS = (
    ("1-0:32.7.0", "1-0:31.7.0", "1-0:36.7.0", "1-0:151.7.0", "1-0:33.7.0", "1-0:81.7.4"),
    ("1-0:52.7.0", "1-0:51.7.0", "1-0:56.7.0", "1-0:171.7.0", "1-0:53.7.0", "1-0:81.7.15"),
    ("1-0:72.7.0", "1-0:71.7.0", "1-0:76.7.0", "1-0:191.7.0", "1-0:73.7.0", "1-0:81.7.26"),
)
"""Per phase: voltage, current, active and reactive power, power factor, U→I angle."""


@dataclass(frozen=True)
class Miswiring:
    perm: tuple[int, int, int] = (0, 1, 2)
    """Element k is given the current of phase perm[k]."""
    signs: tuple[int, int, int] = (1, 1, 1)
    """-1: that element's current is reversed (S1 and S2 swapped)."""
    missing_voltage: int | None = None
    """The phase whose voltage lead is off (a blown fuse, a loose terminal)."""

    def angle(self, k: int, load_deg: float) -> float:
        """The U→I angle element k reads, 0–360°."""
        shift = PHASE_ANGLE[k] - PHASE_ANGLE[self.perm[k]]
        return (load_deg + shift + (180.0 if self.signs[k] < 0 else 0.0)) % 360

    def registered(self, pf: float) -> float:
        """What the meter counts per true kWh of a balanced load at this power factor."""
        phi = math.degrees(math.acos(max(-1.0, min(1.0, pf))))
        return sum(0.0 if k == self.missing_voltage else math.cos(math.radians(
            self.angle(k, phi))) for k in range(3)) / (3 * pf)

    def apply(self, values: dict[str, float], pf: float) -> dict[str, float]:
        """A correctly wired three-phase meter's instantaneous values, as this meter
        reads them."""
        out = dict(values)
        phi = math.degrees(math.acos(max(-1.0, min(1.0, abs(pf)))))
        amps = [abs(values[PHASE_OBIS[j][1]]) for j in range(3)]
        total_p = total_q = 0.0
        for k in range(3):
            v_obis, i_obis, p_obis, q_obis, pf_obis, angle_obis = PHASE_OBIS[k]
            volts = 0.0 if k == self.missing_voltage else values[v_obis]
            angle = self.angle(k, phi if values["1-0:16.7.0"] >= 0 else phi + 180)
            current = amps[self.perm[k]]
            p = volts * current * math.cos(math.radians(angle)) / 1000
            q = volts * current * math.sin(math.radians(angle)) / 1000
            out[v_obis] = volts
            out[i_obis] = current if p >= 0 or volts == 0 else -current
            out[p_obis], out[q_obis] = p, q
            out[pf_obis] = math.cos(math.radians(angle)) if volts else 0.0
            out[angle_obis] = angle if volts else 0.0
            total_p, total_q = total_p + p, total_q + q
        out["1-0:16.7.0"], out["1-0:131.7.0"] = total_p, total_q
        s = math.hypot(total_p, total_q)
        out["1-0:13.7.0"] = total_p / s if s else 1.0
        return out
