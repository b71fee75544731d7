"""The ground floor: the data model every other package speaks.

Holds Meter, Reading, Quality, Event, CollectionAttempt, Flag, IngestResult and their
JSON codec, the validated-read records (versions, verdicts, service points), and
billing's (bills, tariff changes, prepaid accounts).
It imports nothing of ours, so protocols, storage, the simulator and the
collector can all depend on it without depending on each other.
"""

from model.billing import Bill, BillStatus, Hold, PrepaidAccount, PrepaidEvent, TariffChange
from model.records import (
    CollectionAttempt,
    Event,
    Flag,
    IngestResult,
    Meter,
    Outcome,
    Quality,
    Reading,
    ReadKind,
    require_utc,
)
from model.validation import (
    AUTOMATIC,
    MeterAssignment,
    ServicePoint,
    ValueVersion,
    Verdict,
)

__all__ = [
    "AUTOMATIC",
    "Bill",
    "BillStatus",
    "CollectionAttempt",
    "Event",
    "Flag",
    "Hold",
    "IngestResult",
    "Meter",
    "MeterAssignment",
    "Outcome",
    "PrepaidAccount",
    "PrepaidEvent",
    "Quality",
    "ReadKind",
    "Reading",
    "ServicePoint",
    "TariffChange",
    "ValueVersion",
    "Verdict",
    "require_utc",
]
