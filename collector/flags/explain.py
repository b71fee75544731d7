"""A flag in words an operator acts on: what was seen, and what to do next.

The evidence is the detector's own record (numbers, windows, correlations); an operator
on a shift needs it read out, and told whether to send a crew, sync a clock or check a
register. One sentence of each per kind, filled from the evidence; a kind this module
does not know yet is still shown, from its evidence, with a generic next step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from model import Flag


@dataclass(frozen=True, slots=True)
class Explanation:
    seen: str
    next_step: str


def _num(evidence: Mapping[str, Any], key: str, fmt: str = "g") -> str:
    value = evidence.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, fmt)
    return "?"


def _pct(evidence: Mapping[str, Any], key: str) -> str:
    value = evidence.get(key)
    return f"{100 * value:.1f} %" if isinstance(value, int | float) else "?"


_WORDS: dict[str, Callable[[Flag], Explanation]] = {
    "missed_reads": lambda f: Explanation(
        f"{f.subject} missed {_num(f.evidence, 'missing_intervals')} scheduled reads "
        "in the window.",
        "Check the meter's bus and address; a short gap is read back from its memory when "
        "it answers again."),
    "never_heard": lambda f: Explanation(
        f"{f.subject} is registered but has sent no reading in the window.",
        "Check the meter is installed, powered and wired to the bus, and that its address "
        "in the configuration matches its nameplate."),
    "clock_drift": lambda f: Explanation(
        f"{f.subject}'s clock is {_num(f.evidence, 'max_offset_s', '.0f')} s off the "
        "head-end's; its interval stamps and tariff periods drift with it.",
        "Send a time sync (collector clock --sync, or [flags] auto_time_sync); if the "
        "drift returns, the meter's clock battery or crystal is failing."),
    "high_line_loss": lambda f: Explanation(
        f"Area {f.subject} lost {_pct(f.evidence, 'loss_rate_recent')} of what its "
        f"transformer supplied ({_num(f.evidence, 'supplied_kwh', '.1f')} kWh supplied, "
        f"{_num(f.evidence, 'billed_kwh', '.1f')} kWh metered at the customers).",
        "Look first at the customers whose consumption moves opposite to the loss (the "
        "suspects below), then at meters that are silent or bypassed in the area."),
    "negative_line_loss": lambda f: Explanation(
        f"Area {f.subject}'s customers metered more than its transformer supplied "
        f"(loss {_pct(f.evidence, 'loss_rate_recent')}).",
        "Check the transformer meter's CT ratio and multiplier, and which customers the "
        "area's configuration puts behind it."),
    "theft": lambda f: Explanation(
        f"{f.subject}'s consumption fell to {_num(f.evidence, 'recent_vs_baseline')} of "
        f"its own baseline, with theft-like signs: "
        f"{', '.join(map(str, f.evidence.get('reasons', []))) or 'see the evidence'}.",
        "Schedule an inspection of the meter and its seals; compare with the area's "
        "line-loss balance before sending a crew."),
    "reverse_energy": lambda f: Explanation(
        f"{f.subject} registers energy flowing backward, and it is no exporter.",
        "Check the wiring at the terminal block (a reversed CT or swapped leads); if it "
        "is a new PV customer, mark the meter an exporter."),
    "wiring": lambda f: Explanation(
        f"{f.subject}'s phase angles fit miswiring: "
        f"{f.evidence.get('diagnosis', 'see the evidence')}.",
        "Send a technician with collector wiring to confirm and correct the terminal block."),
    "voltage_loss": lambda f: Explanation(
        f"{f.subject}'s concentrator ({f.evidence['terminal']}) recorded a voltage loss or "
        "broken phase (1376.1 ERC 10)." if "terminal" in f.evidence else
        f"{f.subject} lost voltage on a phase while the others stayed up.",
        "Check the voltage leads and the fuse of that phase; a lead left off under load "
        "is also a known theft method."),
    "current_loss": lambda f: Explanation(
        f"{f.subject} saw no current on a phase while the others carried load.",
        "Check that phase's CT and its leads (shorted or bypassed)."),
    "current_imbalance": lambda f: Explanation(
        f"{f.subject}'s phase currents are far out of balance.",
        "Check the load's connection and the CTs; a steady imbalance on a three-phase "
        "meter can hide a bypassed phase."),
    "negative_phase_power": lambda f: Explanation(
        f"{f.subject} shows negative power on one phase.",
        "A reversed CT on that phase is likeliest: check its polarity."),
    "stopped": lambda f: Explanation(
        f"{f.subject}'s register stopped while voltage was present.",
        "Check the meter for a fault or tampering; its consumption is estimated meanwhile."),
    "backward": lambda f: Explanation(
        f"{f.subject}'s register went backward.",
        "Check for a meter replacement that was not recorded, or a faulty meter."),
    "runaway": lambda f: Explanation(
        f"{f.subject}'s register ran far beyond what the service could draw.",
        "The meter is likely faulty: plan a replacement; its days are estimated meanwhile."),
    "tariff_mismatch": lambda f: Explanation(
        f"{f.subject}'s tariff registers do not add up to its total.",
        "Check the meter's tariff calendar (time-of-use table) against the tariff billed."),
    "tamper": lambda f: Explanation(
        f"{f.subject} recorded a tamper event (cover or terminal opened).",
        "Inspect the seals; a cover opening without a work order is a theft lead."),
    "meter_fault": lambda f: Explanation(
        f"{f.subject}'s concentrator ({f.evidence.get('terminal', '?')}) recorded a meter "
        "fault (1376.1 ERC 13).",
        "Read the meter on site; a fault record with a clock or register problem means "
        "its reads since then are suspect until the meter is checked or replaced."),
    "point_mismatch": lambda f: Explanation(
        f"Concentrator {f.evidence.get('terminal', '?')} reads meter "
        f"{f.evidence.get('terminal_says', '?')} at point {f.evidence.get('pn', '?')}, "
        f"where the configuration has {f.subject} ({f.evidence.get('configured', '?')}).",
        "Correct the terminal's measuring-point table (AFN 04 F10) or the configuration "
        "before trusting this point's reads: they may belong to another customer."),
    "unregistered_meter": lambda f: Explanation(
        f"Readings arrived from {f.subject}, which no configuration lists.",
        "Add the meter to the configuration with its area and service point, or find the "
        "gateway that reports it by mistake."),
    "unrecorded_replacement": lambda f: Explanation(
        f"{f.subject}'s register restarted or its number changed with no replacement "
        "recorded.",
        "Record the replacement (collector meters replace) with its final and start "
        "reads, so the bill spans both meters."),
}


def explain(flag: Flag) -> Explanation:
    words = _WORDS.get(flag.kind)
    if words is not None:
        return words(flag)
    return Explanation(f"{flag.subject}: {flag.kind.replace('_', ' ')}.",
                       "Read the evidence below and check the meter.")
