"""The embedded SQLite store, by concern: connection (its thread, locks and transactions),
schema (migrations), readings, outbox, records (meters, events, attempts, flags),
versions, points, billing, and tokens with web logins. `store` puts them together.

It imports the model and storage's shared modules only, like every backend.
"""

from storage.sqlite.connection import create_private, path_from_url, transient
from storage.sqlite.outbox import OutboxRow
from storage.sqlite.store import SqliteStore

__all__ = ["OutboxRow", "SqliteStore", "create_private", "path_from_url", "transient"]
