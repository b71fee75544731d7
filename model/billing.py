"""Bills, tariff changes and prepaid accounts: what billing keeps beside validated reads.

A bill is a document of determinants (every figure with the reads it came from), so a
disputed bill can be traced to raw reads without re-running anything; its versions are
never rewritten, a correction is a new version that says why.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from model.records import require_utc


class BillStatus(enum.StrEnum):
    HELD = "held"
    """Review (核) found something a person must look at before it goes out."""
    RELEASED = "released"
    """Passed review, or a person released it: a billing system may take it."""
    SUPERSEDED = "superseded"
    """A later version replaced this one before release."""


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a bill waits for a person: a code to filter by, and the evidence in words."""

    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Bill:
    service_point_id: str
    cycle: str
    """'2026-11' (the month of the reading day) or '2026-11-23' (one local day)."""
    segment: str
    start: datetime
    end: datetime
    kwh: float | None
    amount: float | None
    currency: str
    quality: str
    """'A' when every input was an actual read; otherwise the worst quality used."""
    holds: tuple[Hold, ...]
    determinants: dict[str, Any]
    status: BillStatus = BillStatus.RELEASED
    version: int = 0
    id: int = 0
    correction: str = ""
    """Why a released bill got a new version (empty for a first or an unreleased one)."""
    created_at: datetime | None = None
    released_by: str = ""
    released_at: datetime | None = None
    note: str = ""
    digest: str = field(default="", compare=False, repr=False)
    """What a rerun compares: the same inputs give the same digest. Computed once, here:
    a cycle compares and stores it for every bill, and the JSON is most of a bill's cost."""

    def __post_init__(self) -> None:
        require_utc(self.start, "Bill.start")
        require_utc(self.end, "Bill.end")
        if not self.digest:
            doc = {"determinants": self.determinants, "holds": [[h.code, h.detail]
                                                                for h in self.holds]}
            object.__setattr__(self, "digest", hashlib.sha256(
                json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest())


@dataclass(frozen=True, slots=True)
class TariffChange:
    service_point_id: str
    tariff: str
    effective: date
    """The first local day billed on the new tariff."""


@dataclass(frozen=True, slots=True)
class PrepaidAccount:
    account: str
    service_point_id: str
    opened: datetime
    """Charges start here: consumption before the account opened is not its cost."""
    charged_to: datetime
    topped_up: float = 0.0
    charged: float = 0.0
    relay: str = "closed"
    """'closed' (supplied) or 'open' (tripped), as last commanded and confirmed."""
    below_since: datetime | None = None
    """When the balance last fell to or below the disconnect threshold (None: above)."""
    alert_state: dict[str, Any] = field(default_factory=dict)
    """Each alert kind: whether the balance is beyond it now (an alert is raised once per
    crossing); and the tier year's cumulative kWh charged so far."""

    @property
    def balance(self) -> float:
        return round(self.topped_up - self.charged, 4)


@dataclass(frozen=True, slots=True)
class PrepaidEvent:
    """An alert raised, a charge posted, or a remote-control command sent: one audit row."""

    account: str
    ts: datetime
    kind: str
    """'alert:low', 'alert:zero', 'charge', 'topup', 'trip', 'reconnect', 'trip-deferred'."""
    amount: float = 0.0
    balance: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    reference: str = ""
    """Makes the write idempotent: a top-up's payment reference, a charge's period end."""
    id: int = 0
    published: bool = False
