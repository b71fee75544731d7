"""The phasor diagram technicians know from their handheld testers: voltages and
currents as labelled arrows, as a PNG, or as text for a terminal without one."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from collector.field.wiring import AMPS, ANGLES, VOLTS, WiringReport

U_ANGLE = (90.0, -30.0, 210.0)
"""Where Ua, Ub and Uc are drawn (Ua up, clockwise order A→B→C as on testers)."""


def vectors(values: Mapping[str, float]) -> list[tuple[str, float, float]]:
    """(label, screen angle in degrees, length 0–1) for each voltage and current."""
    top_v = max((abs(values.get(v, 0.0)) for v in VOLTS), default=0.0) or 1.0
    top_i = max((abs(values.get(i, 0.0)) for i in AMPS), default=0.0) or 1.0
    out = []
    for k, phase in enumerate("abc"):
        volts = abs(values.get(VOLTS[k], 0.0))
        if volts > 0:
            out.append((f"U{phase}", U_ANGLE[k], volts / top_v))
        amps = abs(values.get(AMPS[k], 0.0))
        if amps > 0 and ANGLES[k] in values:
            # The current lags its element's voltage by the U→I angle.
            out.append((f"I{phase}", U_ANGLE[k] - values[ANGLES[k]], 0.7 * amps / top_i))
    return out


def plot_png(report: WiringReport, path: str, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    fig, ax = plt.subplots(figsize=(6, 6))
    colours = {"a": "#c9a000", "b": "#2a8c2a", "c": "#c0392b"}
    for label, angle, length in vectors(report.values):
        dx, dy = length * math.cos(math.radians(angle)), length * math.sin(math.radians(angle))
        style = "-" if label[0] == "U" else "--"
        ax.annotate("", xy=(dx, dy), xytext=(0, 0), arrowprops={
            "arrowstyle": "->", "color": colours[label[1]], "lw": 2 if label[0] == "U" else 1.5,
            "linestyle": style})
        ax.text(1.1 * dx, 1.1 * dy, label, ha="center", va="center", fontsize=12,
                color=colours[label[1]])
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="#ccc"))
    ax.set_xlim(-1.3, 1.3)
    ax.set_ylim(-1.3, 1.3)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"{report.connection}: {report.verdict}", fontsize=11)
    fig.savefig(Path(path), dpi=100, bbox_inches="tight")
    plt.close(fig)


def ascii_diagram(report: WiringReport, width: int = 41, height: int = 21) -> str:
    """Arrow tips as their labels on a grid (voltages in capitals, currents small)."""
    grid = [[" "] * width for _ in range(height)]
    cx, cy = width // 2, height // 2
    grid[cy][cx] = "+"
    for label, angle, length in vectors(report.values):
        for step in range(1, 11):
            r = length * step / 10
            x = cx + round(r * (width // 2 - 2) * math.cos(math.radians(angle)))
            y = cy - round(r * (height // 2 - 1) * math.sin(math.radians(angle)))
            if 0 <= y < height and 0 <= x < width and grid[y][x] == " ":
                grid[y][x] = "·" if label[0] == "U" else "."
        x = cx + round(length * (width // 2 - 2) * math.cos(math.radians(angle)))
        y = cy - round(length * (height // 2 - 1) * math.sin(math.radians(angle)))
        text = label if label[0] == "U" else label.lower()
        for n, ch in enumerate(text):
            if 0 <= y < height and 0 <= x + n < width:
                grid[y][x + n] = ch
    return "\n".join("".join(row).rstrip() for row in grid)
