"""PostgreSQL (and TimescaleDB when present), by concern: connection (the pool, reads in
one snapshot), migrate and migrations/ (the versioned SQL), readings, series_ids,
records (meters, events, attempts, flags), versions, points, billing, tokens with web
logins, and arrays (reading binary arrays in place). `store` puts them together.
"""

from storage.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
