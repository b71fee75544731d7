"""A population of meters over weeks, as arrays, with every flag kind injected from a seed.

The wire-level simulator is right for protocols; detection needs thousands of meters
over months, so this one generates the series directly: 15-minute consumption per
meter, four instantaneous snapshots per day (per-phase V, I, P, angle), clock offsets,
register tariff sums and tamper events, plus each transformer area's own meter, which
sees the true total plus a technical loss. Labels say which meters got which anomaly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from model import Event, Meter, Reading

SLOTS = 96
SNAPSHOTS = 4  # instantaneous samples per day (03:00, 09:00, 15:00, 21:00 local)
NOMINAL_V = 220.0

METER_KINDS = (
    "gaps", "stopped", "runaway", "backward", "tariff_mismatch", "clock_drift",
    "voltage_loss", "current_loss", "imbalance", "reversed_ct", "swapped_phases",
    "bypass", "cover_open", "h1", "h2", "h3", "h4", "h5", "h6",
)
THREE_PHASE_KINDS = frozenset({"voltage_loss", "current_loss", "imbalance", "reversed_ct",
                               "swapped_phases"})
THEFT_KINDS = frozenset({"bypass", "current_loss", "reversed_ct", "swapped_phases",
                         "h1", "h2", "h3", "h4", "h5", "h6"})
# Kinds that make the meter under-register: non-technical loss, placed in the hot areas
# too so that the clean areas show technical loss only.
UNDER_REGISTERING = THEFT_KINDS | {"stopped", "voltage_loss"}
# Wiring: element k measures current of phase perm[k] times sign[k].
HEALTHY_WIRING = ((0, 1, 2), (1, 1, 1))

F64 = NDArray[np.float64]


@dataclass
class PopulationSpec:
    meters: int = 2000
    days: int = 60
    areas: int = 8
    seed: int = 42
    fraction: float = 0.015
    """Share of meters given each anomaly kind (disjoint sets)."""
    three_phase: float = 0.3
    pv: float = 0.05
    hot_areas: int = 3
    """Theft is placed only in this many areas, so the others show pure technical loss."""
    start: datetime = field(default_factory=lambda: datetime(2026, 9, 1, tzinfo=UTC))
    utc_offset_h: float = 8.0


@dataclass
class Population:
    spec: PopulationSpec
    meter_ids: list[str]
    area: NDArray[np.int64]
    phases: NDArray[np.int64]
    exporter: NDArray[np.bool_]
    kwh: F64
    """Reported import per interval (M × days·96); NaN where the read is missing."""
    export_kwh: F64
    true_kwh: F64
    forward: F64
    """Forward register at each interval end (M × days·96), as the meter reports it."""
    tariff_sum_delta: F64
    """Daily total register minus Σ tariff registers (M × days)."""
    clock_offset: F64
    """Meter clock minus server, s, once a day (M × days)."""
    volts: F64
    amps: F64
    watts: F64
    angle: F64
    """Per-phase snapshots (M × days·4 × 3): V, A (signed), kW (signed), degrees U→I."""
    neutral_amps: F64
    """Single-phase neutral current snapshots (M × days·4)."""
    events: list[tuple[int, int, str]]
    """(meter, day, kind) tamper events."""
    area_supplied: F64
    """Transformer meter energy per area and day (A × days), kWh."""
    labels: dict[str, set[int]]
    area_labels: dict[str, set[int]]
    attack_start: dict[int, int]
    wiring: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]]

    @property
    def days(self) -> int:
        return self.spec.days



def _bump(hour: F64, centre: float, width: float) -> F64:
    d = (hour - centre + 12) % 24 - 12
    return np.exp(-0.5 * (d / width) ** 2)


def _jokar(kind: str, day: F64, rng: np.random.Generator) -> F64:
    """Jokar, Arianpoo & Leung (IEEE TSG 2016) false-data-injection attacks on one day."""
    n = len(day)
    if kind == "h1":
        return day * rng.uniform(0.1, 0.8)
    if kind == "h2":
        length = rng.integers(16, 40)  # 4 to 10 hours off
        start = rng.integers(0, n - length)
        out = day.copy()
        out[start : start + length] = 0.0
        return out
    if kind == "h3":
        return day * rng.uniform(0.1, 0.8, n)
    if kind == "h4":
        scaled: F64 = rng.uniform(0.1, 0.8, n) * float(day.mean())
        return scaled
    if kind == "h5":
        return np.full(n, day.mean())
    if kind == "h6":
        return day[::-1].copy()
    raise ValueError(kind)


def _weather(rng: np.random.Generator, m: int, days: int, area: NDArray[np.int64],
             areas: int) -> F64:
    """Each day's use against the household's usual, as a real house's moves: a spell of
    cold or heat lasts days (shared by an area), on top of the household's own noise.
    A real house metered for four years (bench.real_household) varies 25 % day to day
    within a month, with a day-to-day correlation of 0.6; a factor of N(1, 0.08) a day
    had 9 % and none."""
    spell = np.zeros((areas, days))
    for d in range(1, days):
        spell[:, d] = 0.6 * spell[:, d - 1] + rng.normal(0.0, 0.12, areas)
    own = np.zeros((m, days))
    for d in range(1, days):
        own[:, d] = 0.5 * own[:, d - 1] + rng.normal(0.0, 0.12, m)
    return np.asarray(np.exp(spell[area] + own), dtype=np.float64)


def _holidays(rng: np.random.Generator, m: int, days: int) -> F64:
    """A fifth of the households are away for 3 to 10 days, when only the base load
    runs (the real house's August)."""
    out = np.ones((m, days))
    for i in np.flatnonzero(rng.random(m) < 0.2):
        length = int(rng.integers(3, 11))
        start = int(rng.integers(0, max(1, days - length)))
        out[i, start:start + length] = 0.05
    return out


def build_population(spec: PopulationSpec) -> Population:
    rng = np.random.default_rng(spec.seed)
    m, days = spec.meters, spec.days
    n = days * SLOTS
    ids = [f"c{i:05d}" for i in range(m)]
    area = rng.integers(0, spec.areas, m)
    phases = np.where(rng.random(m) < spec.three_phase, 3, 1)
    exporter = rng.random(m) < spec.pv

    # --- honest consumption ---------------------------------------------------------------
    slot_hour = ((np.arange(n) % SLOTS) + 0.5) / 4
    shape = (0.45 * _bump(slot_hour, 7.5, 1.2) + 1.0 * _bump(slot_hour, 19.5, 1.8)
             + 0.15 * _bump(slot_hour, 13, 2.5))
    scale = rng.uniform(0.6, 1.4, m) * np.where(phases == 3, 3.0, 1.0)
    base, peak = 0.25 * scale, 1.8 * scale
    weekday = (np.arange(days) + spec.start.weekday()) % 7
    day_factor = _weather(rng, m, days, area, spec.areas) * np.where(weekday >= 5, 1.1, 1.0)
    away = _holidays(rng, m, days)
    kw = (base[:, None] + peak[:, None] * shape[None, :] * np.repeat(away, SLOTS, axis=1)
          ) * np.repeat(day_factor, SLOTS, axis=1)
    kw *= 1 + 0.15 * rng.uniform(-1, 1, (m, n))
    pv_kw = np.zeros((m, n))
    daylight = (slot_hour > 6) & (slot_hour < 18)
    sun = np.clip(np.sin(np.pi * (slot_hour - 6) / 12), 0, None) * daylight
    clouds = rng.uniform(0.6, 1.0, (int(exporter.sum()), n))
    pv_kw[exporter] = 3.5 * scale[exporter, None] * sun[None, :] * clouds
    net = kw - pv_kw
    true_kwh = np.clip(net, 0, None) / 4
    export_kwh = np.clip(-net, 0, None) / 4

    # --- which meters get what ---------------------------------------------------------
    hot = set(rng.choice(spec.areas, size=min(spec.hot_areas, spec.areas - 1), replace=False))
    three = np.flatnonzero((phases == 3) & ~exporter)
    single = np.flatnonzero(~exporter)
    taken: set[int] = set()
    labels: dict[str, set[int]] = {}
    per_kind = max(1, round(spec.fraction * m))
    for kind in METER_KINDS:
        pool = three if kind in THREE_PHASE_KINDS else single
        if kind in UNDER_REGISTERING:
            pool = np.array([i for i in pool if area[i] in hot])
        choices = [int(i) for i in rng.permutation(pool) if int(i) not in taken][:per_kind]
        labels[kind] = set(choices)
        taken.update(choices)

    kwh = true_kwh.copy()
    exp = export_kwh.copy()
    attack_start: dict[int, int] = {}
    wiring: dict[int, tuple[tuple[int, int, int], tuple[int, int, int]]] = {}
    for chosen in labels.values():
        for i in chosen:
            attack_start[i] = int(rng.integers(days // 2, days - 14))
    # Instantaneous snapshots, honest first.
    snaps = days * SNAPSHOTS
    snap_slot = (np.arange(snaps) % SNAPSHOTS) * 24 + 12  # 03:00, 09:00, 15:00, 21:00
    snap_index = (np.arange(snaps) // SNAPSHOTS) * SLOTS + snap_slot
    load_angle = rng.uniform(10, 30, (m, 1)) * np.ones((1, snaps))
    volts = NOMINAL_V + rng.normal(0, 3, (m, snaps, 3))
    p_total = net[:, snap_index]
    share = np.where(phases[:, None] == 3, 1 / 3, 1.0)
    phase_p = np.zeros((m, snaps, 3))
    phase_p[:, :, 0] = p_total * share
    three_mask = phases == 3
    phase_p[three_mask, :, 1] = p_total[three_mask] / 3
    phase_p[three_mask, :, 2] = p_total[three_mask] / 3
    phase_p[three_mask] *= 1 + 0.1 * rng.uniform(-1, 1, (three_mask.sum(), snaps, 3))
    volts[~three_mask, :, 1:] = 0.0
    angle = np.zeros((m, snaps, 3))
    angle[:, :, :] = load_angle[:, :, None]
    angle[phase_p < 0] += 180.0
    true_phase0 = phase_p[:, :, 0].copy()
    # Apparent power per element (kVA): what sets the current, whatever the angle.
    phase_s = np.abs(phase_p) / np.cos(np.radians(load_angle))[:, :, None]
    volts_true = volts.copy()
    clock = rng.normal(0, 2, (m, days))
    tariff_delta = np.round(rng.uniform(-0.02, 0.02, (m, days)), 2)
    events: list[tuple[int, int, str]] = []

    def days_from(i: int) -> slice:
        return slice(attack_start[i] * SLOTS, n)

    for i in labels["gaps"]:
        for _ in range(int(rng.integers(1, 6))):
            start = int(rng.integers(0, n - 12))
            kwh[i, start : start + int(rng.integers(1, 12))] = np.nan
    for i in labels["stopped"]:
        kwh[i, days_from(i)] = 0.0
    for i in labels["runaway"]:
        kwh[i, days_from(i)] *= rng.uniform(15, 30)
    for i in labels["tariff_mismatch"]:
        d = attack_start[i]
        tariff_delta[i, d:] = rng.uniform(1.0, 5.0) * np.arange(1, days - d + 1) / 5
    for i in labels["clock_drift"]:
        d = attack_start[i]
        clock[i, d:] += rng.uniform(8, 20) * np.arange(1, days - d + 1)
    for i in labels["cover_open"]:
        events.append((i, attack_start[i], "cover_open"))
    for i in labels["bypass"]:
        kwh[i, days_from(i)] *= rng.uniform(0.2, 0.6)
    for kind in ("h1", "h2", "h3", "h4", "h5", "h6"):
        for i in labels[kind]:
            for d in range(attack_start[i], days):
                day = slice(d * SLOTS, (d + 1) * SLOTS)
                kwh[i, day] = _jokar(kind, true_kwh[i, day], rng)

    # Three-phase faults change what each metering element sees.
    def rewire(i: int, perm: tuple[int, int, int], sign: tuple[int, int, int]) -> None:
        wiring[i] = (perm, sign)
        s = attack_start[i] * SNAPSHOTS
        true_p = phase_p[i, s:].copy()
        phase_angle = np.array([0.0, -120.0, 120.0])
        for k in range(3):
            j = perm[k]
            delta = (phase_angle[k] - phase_angle[j]) + (180.0 if sign[k] < 0 else 0.0)
            a = load_angle[i, s:] + delta
            angle[i, s:, k] = a % 360
            magnitude = np.abs(true_p[:, j]) / np.cos(np.radians(load_angle[i, s:]))
            phase_p[i, s:, k] = magnitude * np.cos(np.radians(a))
            phase_s[i, s:, k] = magnitude
        measured = phase_p[i, :, :].sum(axis=1)
        ratio = np.clip(measured[s:] / np.where(p_total[i, s:] == 0, 1, p_total[i, s:]), 0, 1)
        kwh[i, days_from(i)] *= float(np.clip(np.mean(ratio), 0, 1))

    for i in labels["reversed_ct"]:
        k = int(rng.integers(0, 3))
        sign = [1, 1, 1]
        sign[k] = -1
        rewire(i, (0, 1, 2), (sign[0], sign[1], sign[2]))
    for i in labels["swapped_phases"]:
        a, b = sorted(rng.choice(3, 2, replace=False))
        perm = [0, 1, 2]
        perm[a], perm[b] = perm[b], perm[a]
        rewire(i, (perm[0], perm[1], perm[2]), (1, 1, 1))
    for i in labels["voltage_loss"]:
        k = int(rng.integers(0, 3))
        s = attack_start[i] * SNAPSHOTS
        volts[i, s:, k] = rng.uniform(0, 0.5) * NOMINAL_V
        kwh[i, days_from(i)] *= 2 / 3 + rng.uniform(0, 1 / 3) / 3
    for i in labels["current_loss"]:
        k = int(rng.integers(0, 3))
        s = attack_start[i] * SNAPSHOTS
        phase_p[i, s:, k] = 0.0
        phase_s[i, s:, k] = 0.0
        kwh[i, days_from(i)] *= 2 / 3
    for i in labels["imbalance"]:
        s = attack_start[i] * SNAPSHOTS
        weights = np.array([1.0, rng.uniform(0.1, 0.3), rng.uniform(0.1, 0.3)])
        total = phase_p[i, s:].sum(axis=1, keepdims=True)
        phase_p[i, s:] = total * (weights / weights.sum())[None, :]
        phase_s[i, s:] = phase_s[i, s:].sum(axis=1, keepdims=True) * (weights / weights.sum())
    for i in labels["bypass"]:
        s = attack_start[i] * SNAPSHOTS
        seen = float(np.nanmean(kwh[i, days_from(i)])) / max(
            float(np.mean(true_kwh[i, days_from(i)])), 1e-9)
        phase_p[i, s:, 0] *= seen
        phase_s[i, s:, 0] *= seen
    cos_load = np.cos(np.radians(load_angle))
    amps = np.where(volts_true > 1, phase_s * 1000 / np.maximum(volts_true, 1), 0.0)
    amps = np.where(phase_p < 0, -amps, amps)
    # The neutral carries the true current, whatever the phase element was made to see.
    neutral = np.abs(true_phase0) * 1000 / np.maximum(volts_true[:, :, 0], 1) / cos_load

    forward = np.cumsum(np.nan_to_num(kwh), axis=1) + rng.uniform(1000, 30000, (m, 1))
    for i in labels["backward"]:
        at = attack_start[i] * SLOTS + int(rng.integers(0, SLOTS))
        forward[i, at:] -= rng.uniform(50, 500)
    # Reversed CT and swapped phases on a one-way register show up as reverse energy.
    for i in labels["reversed_ct"] | labels["swapped_phases"]:
        s = attack_start[i] * SLOTS
        exp[i, s:] += true_kwh[i, s:] * 0.02

    supplied = np.zeros((spec.areas, days))
    daily_true = true_kwh.reshape(m, days, SLOTS).sum(axis=2)
    for a in range(spec.areas):
        supplied[a] = daily_true[area == a].sum(axis=0) * (1 + rng.uniform(0.03, 0.05))
    area_labels: dict[str, set[int]] = {"high_loss": set(), "negative_loss": set()}
    clean = [a for a in range(spec.areas) if a not in hot]
    if clean:
        wrong = int(rng.choice(clean))
        supplied[wrong] *= 0.9  # the transformer meter's multiplier is set wrong
        area_labels["negative_loss"].add(wrong)
    # The balance estimates what is known bad instead of counting it: a gap by the same
    # slot on other days, a runaway register's days by its own days before the fault.
    profiles = kwh.reshape(m, days, SLOTS)
    slot_mean = np.nanmean(profiles, axis=1, keepdims=True)
    daily = np.where(np.isnan(profiles), slot_mean, profiles).sum(axis=2)
    for i in labels["runaway"]:
        daily[i, attack_start[i]:] = daily[i, : attack_start[i]].mean()
    honest_billed = np.array([daily[area == a].sum(axis=0) for a in range(spec.areas)])
    loss_rate = (supplied - honest_billed) / supplied
    for a in hot:
        if np.mean(loss_rate[a, -14:]) >= 0.06:
            area_labels["high_loss"].add(int(a))

    return Population(spec, ids, area, phases, exporter, kwh, exp, true_kwh, forward,
                      tariff_delta, clock, volts, amps, phase_p, angle, neutral, events,
                      supplied, labels, area_labels, attack_start, wiring)


def as_stored(pop: Population, meters: Sequence[int]) -> tuple[list[Meter], list[Reading],
                                                               list[Event]]:
    """The chosen meters (and every area's transformer meter) as the collector would have
    stored them: registers at interval ends, snapshots of V/I/P/angle, daily clock
    offsets and tariff registers, tamper events."""
    start = pop.spec.start
    step = timedelta(minutes=15)
    out_meters: list[Meter] = []
    out: list[Reading] = []
    phase_codes = (("1-0:32.7.0", "1-0:31.7.0", "1-0:36.7.0", "1-0:81.7.4"),
                   ("1-0:52.7.0", "1-0:51.7.0", "1-0:56.7.0", "1-0:81.7.15"),
                   ("1-0:72.7.0", "1-0:71.7.0", "1-0:76.7.0", "1-0:81.7.26"))
    for i in meters:
        mid = pop.meter_ids[i]
        phases = int(pop.phases[i])
        out_meters.append(Meter(mid, "dlt645", "bus1", f"{i:012d}", area=f"A{pop.area[i]}",
                                exporter=bool(pop.exporter[i]), phases=phases))
        reverse = np.cumsum(pop.export_kwh[i])
        for n in range(pop.kwh.shape[1]):
            ts = start + step * (n + 1)
            if not np.isnan(pop.kwh[i, n]):
                out.append(Reading(mid, "1-0:1.8.0", ts, float(pop.forward[i, n]), "kWh"))
                out.append(Reading(mid, "1-0:2.8.0", ts, float(reverse[n]), "kWh"))
        for snap in range(pop.amps.shape[1]):
            n = (snap // SNAPSHOTS) * SLOTS + (snap % SNAPSHOTS) * 24 + 12
            ts = start + step * (n + 1)
            for k in range(phases):
                v_code, i_code, p_code, a_code = phase_codes[k]
                out += [Reading(mid, v_code, ts, float(pop.volts[i, snap, k]), "V"),
                        Reading(mid, i_code, ts, float(pop.amps[i, snap, k]), "A"),
                        Reading(mid, p_code, ts, float(pop.watts[i, snap, k]), "kW"),
                        Reading(mid, a_code, ts, float(pop.angle[i, snap, k]), "°")]
            if phases == 1:
                out.append(Reading(mid, "1-0:91.7.0", ts, float(pop.neutral_amps[i, snap]), "A"))
        for d in range(pop.days):
            ts = start + timedelta(days=d + 1)
            total = float(pop.forward[i, (d + 1) * SLOTS - 1])
            out.append(Reading(mid, "1-0:1.8.1", ts, total - float(pop.tariff_sum_delta[i, d]),
                               "kWh"))
            out.append(Reading(mid, "0-0:1.0.0", ts, float(pop.clock_offset[i, d]), "s"))
    for a in sorted({int(pop.area[i]) for i in meters}):
        tid = f"T{a}"
        out_meters.append(Meter(tid, "dlt645", "bus1", f"{900000 + a:012d}", area=f"A{a}",
                                is_area_meter=True, phases=3))
        register = np.concatenate([[10_000.0], 10_000.0 + np.cumsum(pop.area_supplied[a])])
        out += [Reading(tid, "1-0:1.8.0", start + timedelta(days=d), float(register[d]), "kWh")
                for d in range(pop.days + 1)]
    events = [Event(pop.meter_ids[i], start + timedelta(days=d, hours=3), kind, {"count": 1})
              for i, d, kind in pop.events if i in set(meters)]
    return out_meters, out, events
