"""Commands an operator queues for a meter (read now, time sync, disconnect, reconnect),
kept in the store so the web view and the daemon that reaches the meter need not be one
process: the API queues, the daemon with the meter's bus runs and answers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

COMMANDS = ("read", "time_sync", "trip", "reconnect")
STATES = ("queued", "done", "failed")


@dataclass(frozen=True, slots=True)
class MeterCommand:
    id: int
    meter_id: str
    command: str
    reason: str
    requested_by: str
    requested_at: datetime
    status: str = "queued"
    done_at: datetime | None = None
    result: str = ""


def check_command(command: str, reason: str) -> None:
    if command not in COMMANDS:
        raise ValueError(f"{command!r} is not one of {', '.join(COMMANDS)}")
    if command in ("trip", "reconnect") and not reason.strip():
        raise ValueError(f"a {command} says why: the meter's customer is cut off or back on")
    if len(reason) > 500:
        raise ValueError("a reason holds at most 500 characters")
