"""Instantaneous electrical quantities of a simulated meter, by OBIS code.

Shared by every simulated meter kind (DL/T 645, Modbus), so a quantity means the same
thing whichever protocol carries it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime

from simulator.load import LoadModel, unit_noise
from simulator.wiring import PHASE_OBIS, Miswiring


def power_factor(load: LoadModel, epoch: float) -> float:
    """The load's power factor in the minute of `epoch` (lagging, 0.92–0.98)."""
    return 0.95 + 0.03 * unit_noise(load.seed + 3, int(epoch // 60))


def instantaneous(load: LoadModel, phases: int, now: datetime,
                  wiring: Miswiring | None = None) -> dict[str, float]:
    epoch = now.timestamp()
    slot = int(epoch // 60)
    kw = load.net_kw(epoch)
    pf = power_factor(load, epoch)
    phi = math.acos(pf)
    per_phase = kw / phases
    out: dict[str, float] = {
        "1-0:16.7.0": kw,
        "1-0:131.7.0": abs(kw) * math.tan(phi),
        "1-0:13.7.0": pf if kw >= 0 else -pf,
        "1-0:14.7.0": 50.0 + 0.05 * unit_noise(load.seed + 5, slot),
    }
    phase_obis = PHASE_OBIS
    for n in range(3):
        v_obis, i_obis, p_obis, q_obis, pf_obis, angle_obis = phase_obis[n]
        if n >= phases:
            for code in phase_obis[n]:
                out[code] = 0.0
            continue
        volts = 220.0 + 4.0 * unit_noise(load.seed + 11 + n, slot)
        amps = per_phase * 1000.0 / (volts * pf)
        out[v_obis] = volts
        out[i_obis] = amps
        out[p_obis] = per_phase
        out[q_obis] = abs(per_phase) * math.tan(phi)
        out[pf_obis] = out["1-0:13.7.0"]
        out[angle_obis] = math.degrees(phi) + (180.0 if per_phase < 0 else 0.0)
    out["1-0:91.7.0"] = abs(out["1-0:31.7.0"]) if phases == 1 else 0.0
    if wiring is not None and phases == 3:
        out = wiring.apply(out, out["1-0:13.7.0"])
    return out


def registered_share(load: LoadModel, wiring: Miswiring) -> Callable[[float], float]:
    """What a miswired meter's registers count per true kWh at each moment: a reversed
    element subtracts, a missing voltage counts nothing."""
    return lambda epoch: wiring.registered(power_factor(load, epoch))
