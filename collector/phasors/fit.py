"""Name the wiring of a three-phase four-wire meter from its U→I phase angles.

Element k reads the angle between its voltage and the current it is given. Given the
current of phase j (reversed: s = −1) it reads load angle + (θk − θj) + (180° if s < 0).
All 48 permutations × signs are fitted to the observed angles; the best fit is the
diagnosis, and how far the runner-up is behind says how sure it is.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

F64 = NDArray[np.float64]
PHASES = "ABC"
PHASE_ANGLE = np.array([0.0, -120.0, 120.0])
HYPOTHESES = [(perm, signs) for perm in itertools.permutations(range(3))
              for signs in itertools.product((1, -1), repeat=3)]
LOAD_RANGE = (-60.0, 60.0)
"""Load angles a hypothesis may imply: beyond ±60° (PF below 0.5) no real load sits."""
TYPICAL = (-10.0, 50.0)
"""Where nearly every load's angle is (slightly leading to PF 0.64 lagging): between
fits that explain the angles equally well, the one implying a typical load wins, then
the one with the fewest faults."""


@dataclass(frozen=True, slots=True)
class WiringFit:
    perm: tuple[int, ...]
    """Element k is given the current of phase perm[k]."""
    signs: tuple[int, ...]
    load_deg: float
    error_deg: float
    margin_deg: float
    """How much worse the best fit naming other wiring is: small means unsure."""

    @property
    def correct(self) -> bool:
        return self.perm == (0, 1, 2) and self.signs == (1, 1, 1)

    @property
    def description(self) -> str:
        return describe_wiring(self.perm, self.signs)

    @property
    def confidence(self) -> str:
        if self.error_deg > 15 or self.margin_deg < 10:
            return "low"
        return "high" if self.margin_deg >= 30 and self.error_deg <= 8 else "medium"


def predicted(perm: tuple[int, ...], signs: tuple[int, ...]) -> F64:
    return np.array([(PHASE_ANGLE[k] - PHASE_ANGLE[perm[k]] + (180.0 if signs[k] < 0 else 0))
                     % 360 for k in range(3)])


def circular_mean(angles_deg: F64, axis: int = 0) -> F64:
    out: F64 = np.degrees(np.angle(np.exp(1j * np.radians(angles_deg)).mean(axis=axis))) % 360
    return out


def describe_wiring(perm: tuple[int, ...], signs: tuple[int, ...]) -> str:
    parts = []
    moved = [k for k in range(3) if perm[k] != k]
    if len(moved) == 2:
        a, b = moved
        parts.append(f"phase {PHASES[a]} and {PHASES[b]} currents swapped")
    elif len(moved) == 3:
        parts.append("currents rotated: " + ", ".join(
            f"element {PHASES[k]} sees phase {PHASES[perm[k]]}" for k in range(3)))
    parts += [f"phase {PHASES[k]} current reversed" for k in range(3) if signs[k] < 0]
    return "; ".join(parts) or "correct"


def fixes(perm: tuple[int, ...], signs: tuple[int, ...]) -> list[str]:
    """What to change on the terminal block, in the order to do it."""
    out = []
    moved = [k for k in range(3) if perm[k] != k]
    if len(moved) == 2:
        a, b = moved
        out.append(f"swap the current leads of elements {PHASES[a]} and {PHASES[b]} "
                   "(both S1 and S2)")
    elif len(moved) == 3:
        out.append("move the current leads: " + ", ".join(
            f"phase {PHASES[perm[k]]}'s CT from element {PHASES[k]} to element "
            f"{PHASES[perm[k]]}" for k in range(3)))
    # A reversal is named on the element whose leads carry that phase's current.
    for k in range(3):
        if signs[k] < 0:
            out.append(f"reverse the S1/S2 leads of phase {PHASES[perm[k]]}'s CT "
                       f"(now on element {PHASES[k]})")
    return out


def fit_wiring(observed_deg: F64) -> WiringFit | None:
    """The best fit to one angle per element (0–360°), or None if nothing fits."""
    fits = []
    for perm, signs in HYPOTHESES:
        offsets = (observed_deg - predicted(perm, signs)) % 360  # the common load angle
        load = float(circular_mean(offsets)) % 360
        if load > 180:
            load -= 360
        if not LOAD_RANGE[0] <= load <= LOAD_RANGE[1]:
            continue
        err = float(np.abs((offsets - load + 180) % 360 - 180).max())
        typical = 0 if TYPICAL[0] <= load <= TYPICAL[1] else 1
        changes = sum(perm[k] != k for k in range(3)) + sum(s < 0 for s in signs)
        fits.append((round(err / 5), typical, changes, abs(load - 20), err, perm, signs, load))
    if not fits:
        return None
    fits.sort()
    best = fits[0]
    # Rivals are the other wirings that would also imply a typical load; those needing
    # an absurd load angle to fit are not what a technician could mistake it for.
    others = [f[4] for f in fits[1:] if (f[5], f[6]) != (best[5], best[6]) and f[1] == 0]
    margin = (min(others) - best[4]) if others else 180.0
    return WiringFit(best[5], best[6], round(best[7], 1), round(best[4], 1), round(margin, 1))
