"""An operator's work on a flag (acknowledge, assign, note, close), as both stores keep it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

ACTIONS = ("acknowledge", "assign", "note", "close")


@dataclass(frozen=True, slots=True)
class FlagAction:
    flag_id: int
    at: datetime
    actor: str
    action: str
    assignee: str = ""
    note: str = ""


def check_action(action: str, assignee: str, note: str) -> None:
    """What every store refuses before it writes: the rules are the same on both."""
    if action not in ACTIONS:
        raise ValueError(f"{action!r} is not one of {', '.join(ACTIONS)}")
    if action == "assign" and not assignee.strip():
        raise ValueError("an assignment names who takes the flag")
    if action in ("note", "close") and not note.strip():
        raise ValueError(f"a {action} says why, in a note")
    if len(note) > 2000 or len(assignee) > 64:
        raise ValueError("a note holds at most 2,000 characters, an assignee 64")


def state_of(actions: list[FlagAction], status: str) -> tuple[str, str]:
    """(workflow state, assignee) from the flag's status and its actions in order."""
    state, assignee = ("closed" if status != "open" else "open"), ""
    for a in actions:
        if a.action == "assign":
            assignee = a.assignee
        if a.action in ("acknowledge", "assign") and state == "open":
            state = "acknowledged"
    return state, assignee
