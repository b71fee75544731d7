"""A meter's load profile as a PNG, its flag windows shaded: for people who would rather look."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib.dates as mdates
from matplotlib.figure import Figure

from storage.base import Store

COLOURS = {"critical": "#d62728", "warning": "#ff7f0e"}


async def plot_meter(store: Store, meter: str, start: datetime, end: datetime, path: Path,
                     tz: ZoneInfo) -> int:
    readings = await store.series(meter, "1-0:1.8.0", start, end)
    # matplotlib's own date numbers: its typing does not take datetime lists
    times = [float(mdates.date2num(r.ts.astimezone(tz))) for r in readings]  # type: ignore[no-untyped-call]
    kwh = [b.value - a.value for a, b in itertools.pairwise(readings)]
    fig = Figure(figsize=(12, 4), dpi=100)  # no pyplot: nothing global, no display needed
    ax = fig.subplots()
    if kwh:
        ax.step(times[1:], kwh, where="pre", linewidth=0.8, color="#1f77b4", label="kWh/interval")
    seen: set[str] = set()
    for row in await store.list_flags():
        f = row.flag
        if f.subject != meter or f.end < start or f.start > end:
            continue
        label = f.kind if f.kind not in seen else None
        seen.add(f.kind)
        lo = mdates.date2num(max(f.start, start).astimezone(tz))  # type: ignore[no-untyped-call]
        hi = mdates.date2num(min(f.end, end).astimezone(tz))  # type: ignore[no-untyped-call]
        ax.axvspan(float(lo), float(hi),
                   color=COLOURS.get(f.severity, "#7f7f7f"), alpha=0.2, label=label)
    ax.set_title(f"{meter}: forward active energy per interval, flags shaded")
    ax.set_ylabel("kWh")
    ax.xaxis_date(tz)
    ax.grid(alpha=0.3)
    if kwh or seen:
        ax.legend(loc="upper right", fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    return len(kwh)
