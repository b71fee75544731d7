"""The ground floor: the data model every other package speaks.

Holds Meter, Reading, Quality, Event, CollectionAttempt, Flag, IngestResult and their
JSON codec. It imports nothing of ours, so protocols, storage, the simulator and the
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

__all__ = [
    "CollectionAttempt",
    "Event",
    "Flag",
    "IngestResult",
    "Meter",
    "Outcome",
    "Quality",
    "ReadKind",
    "Reading",
    "require_utc",
]
