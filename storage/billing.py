"""What both stores agree on for bills, tariff changes and prepaid accounts.

As with versions of values, the rules live here once as plain Python over rows the
store has just read inside its write transaction: a rerun writes nothing, a bill not
yet released is superseded by a new version, and a released bill changes only by a
correction that says why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from model import Bill, BillStatus, Hold, PrepaidAccount, PrepaidEvent, TariffChange
from storage.versions import Refused

BALANCE_KINDS = {"topup": 1.0, "charge": -1.0}
"""Ledger kinds that move a prepaid balance, and which way."""


@dataclass
class BillWrite:
    written: list[Bill] = field(default_factory=list)
    unchanged: int = 0
    refused: list[str] = field(default_factory=list)
    """Released bills whose inputs changed: rerun with a correction reason to reissue."""


def plan_bill(latest: Bill | None, new: Bill, correction: str) -> Bill | None:
    """The version to write for `new`, or None when nothing should be written.

    Raises Refused when `new` differs from a released bill and no correction is given."""
    if latest is None:
        return replace(new, version=1, correction="")
    if latest.digest == new.digest:
        return None
    if latest.status is BillStatus.RELEASED and not correction:
        raise Refused(f"bill {latest.id} of {latest.service_point_id} for {latest.cycle} "
                      "is released and its inputs have changed; reissue it as a "
                      "correction with a reason (collector bill run --correct REASON)")
    return replace(new, version=latest.version + 1,
                   correction=correction if latest.status is BillStatus.RELEASED else "")


def by_cycle(bills: Sequence[Bill]) -> dict[str, list[str]]:
    """The service points of each cycle in a batch: what to look up the latest bills of."""
    out: dict[str, list[str]] = {}
    for b in bills:
        out.setdefault(b.cycle, []).append(b.service_point_id)
    return out


def plan_bills(latest: Mapping[tuple[str, str], Bill], bills: Sequence[Bill],
               correction: str) -> tuple[BillWrite, list[tuple[Bill | None, Bill]]]:
    """For a batch: the count of unchanged and the refused (in the BillWrite), and each
    version to write with the bill it supersedes. `latest` is keyed (cycle, point)."""
    out = BillWrite()
    planned = []
    for b in bills:
        was = latest.get((b.cycle, b.service_point_id))
        try:
            made = plan_bill(was, b, correction)
        except Refused:
            out.refused.append(b.service_point_id)
            continue
        if made is None:
            out.unchanged += 1
        else:
            planned.append((was, made))
    return out, planned


def holds_json(holds: Sequence[Hold]) -> str:
    return json.dumps([[h.code, h.detail] for h in holds])


def holds_from(raw: Any) -> tuple[Hold, ...]:
    items = json.loads(raw) if isinstance(raw, str) else raw
    return tuple(Hold(code, detail) for code, detail in items)


def document(determinants: dict[str, Any]) -> str:
    return json.dumps(determinants, sort_keys=True, default=str)


class BillingStore(Protocol):
    """What billing needs beyond validated reads (both built-in stores)."""

    async def tariff_changes(self, service_point_id: str | None = None) -> list[TariffChange]:
        ...

    async def record_tariff_change(self, change: TariffChange) -> None:
        """Refused for an unknown service point."""
        ...

    async def latest_bills(self, cycle: str, service_point_ids: Sequence[str]) -> dict[str, Bill]:
        ...

    async def write_bills(self, bills: Sequence[Bill], correction: str = "") -> BillWrite: ...

    async def bills(self, cycle: str | None = None, service_point_id: str | None = None,
                    status: BillStatus | None = None, all_versions: bool = False) -> list[Bill]:
        """Latest versions (or every version), ordered by service point, cycle, version."""
        ...

    async def bill(self, bill_id: int) -> Bill | None: ...

    async def release_bill(self, bill_id: int, by: str, note: str) -> Bill:
        """Refused unless it is the latest version and held."""
        ...

    async def open_prepaid(self, account: str, service_point_id: str,
                           opened: datetime) -> PrepaidAccount:
        """Create the account if new; an existing one is returned unchanged."""
        ...

    async def prepaid_accounts(self, account: str | None = None) -> list[PrepaidAccount]: ...

    async def post_prepaid(self, account: PrepaidAccount,
                           events: Sequence[PrepaidEvent]) -> list[PrepaidEvent]:
        """Append the events (a repeated reference is ignored), move the balance by the
        topups and charges among them, and save the account's state (charged_to, relay,
        below_since, alert_state) in the same transaction. Returns the events written."""
        ...

    async def prepaid_events(self, account: str | None = None,
                             unpublished_only: bool = False) -> list[PrepaidEvent]: ...

    async def mark_published(self, event_ids: Sequence[int]) -> None: ...
