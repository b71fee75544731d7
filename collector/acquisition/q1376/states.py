"""Each concentrator's state as the store tells it: for the CLI, the API and the web view.

The daemon owns the links, so nobody asks a live link: the front end stores every
login, logout and heartbeat as the terminal's events, and this reads them back. An
operator's question then works from any process and never disturbs a terminal in the
middle of a collection.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from collector.config.q1376 import Q1376Settings
from model import Event
from storage import Store

STATUS_KINDS = ("terminal_online", "terminal_offline", "terminal_heartbeat")


@dataclass(frozen=True, slots=True)
class TerminalState:
    terminal: str
    address: str
    area: str
    state: str
    """online, offline, or 'never seen' in the window."""
    since: datetime | None
    last_heard: datetime | None
    points: int
    collected_through: datetime | None
    """The point its least complete meter has reached; None while one has nothing."""

    def as_json(self) -> dict[str, Any]:
        return {k: v.isoformat() if isinstance(v, datetime) else v
                for k, v in asdict(self).items()}


async def terminal_states(store: Store, q: Q1376Settings, now: datetime,
                          days: int = 30) -> list[TerminalState]:
    window = now - timedelta(days=days)
    heard: dict[str, list[Event]] = {}
    for e in await store.events_in(window, now):
        if e.kind in STATUS_KINDS:
            heard.setdefault(e.meter_id, []).append(e)
    points: dict[str, list[str]] = {}
    for meter_id, (address, _) in q.points.items():
        points.setdefault(address, []).append(meter_id)
    out = []
    for c in q.concentrators:
        mine = sorted(heard.get(c.id, []), key=lambda e: e.ts)
        links = [e for e in mine if e.kind != "terminal_heartbeat"]
        meters = points.get(c.address, [])
        latest: dict[str, datetime] = {}
        for m in meters:  # indexed ranges: no whole-store scan per terminal
            got = await store.series(m, "1-0:1.8.0", window, now)
            if got:
                latest[m] = got[-1].ts
        through = min(latest.values()) if meters and len(latest) == len(meters) else None
        out.append(TerminalState(
            c.id, c.address, c.area,
            links[-1].kind.removeprefix("terminal_") if links else "never seen",
            links[-1].ts if links else None, mine[-1].ts if mine else None,
            len(meters), through))
    return out
