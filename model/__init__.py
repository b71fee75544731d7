"""The ground floor: the data model every other package speaks.

Holds Meter, Reading, Quality, Event, CollectionAttempt, Flag, IngestResult and their
JSON codec, and the validated-read records (versions, verdicts, service points).
It imports nothing of ours, so protocols, storage, the simulator and the
collector can all depend on it without depending on each other.
"""

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
    "CollectionAttempt",
    "Event",
    "Flag",
    "IngestResult",
    "Meter",
    "MeterAssignment",
    "Outcome",
    "Quality",
    "ReadKind",
    "Reading",
    "ServicePoint",
    "ValueVersion",
    "Verdict",
    "require_utc",
]
