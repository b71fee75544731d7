"""Each concentrator's state as the store tells it: for the CLI, the API and the web view.

The daemon owns the links, so nobody asks a live link: the front end stores every
login, logout and heartbeat as the terminal's events, and this reads them back. An
operator's question then works from any process and never disturbs a terminal in the
middle of a collection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from collector.config.q1376 import Q1376Settings
from model import Event, ReadKind
from storage import Store

FORWARD_ACTIVE = "1-0:1.8.0"
INTERVAL = ReadKind.INTERVAL.value
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


async def last_points(store: Store, meter_ids: Sequence[str], since: datetime,
                      until: datetime) -> dict[str, datetime]:
    """Each meter's last forward-energy curve point in [since, until]: where its terminal
    is collected to. One query for a terminal's meters, bounded by the window: a
    whole-store "latest value" scan per terminal grew with every day stored, and a query
    per meter cost a 2,000-terminal front end 64,000 round trips to its store."""
    latest: dict[str, float] = {}
    for meter, _, kind, ts, _ in await store.values_in(since, until, [FORWARD_ACTIVE],
                                                       meter_ids):
        if kind == INTERVAL:
            latest[meter] = ts
    return {m: datetime.fromtimestamp(ts, UTC) for m, ts in latest.items()}


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
        latest = await last_points(store, meters, window, now)
        through = min(latest.values()) if meters and len(latest) == len(meters) else None
        out.append(TerminalState(
            c.id, c.address, c.area,
            links[-1].kind.removeprefix("terminal_") if links else "never seen",
            links[-1].ts if links else None, mine[-1].ts if mine else None,
            len(meters), through))
    return out
