"""PostgreSQL (and TimescaleDB when present): the head-end's system of record, made of
its parts."""

from __future__ import annotations

from storage.postgres.billing import PostgresBilling
from storage.postgres.points import PostgresPoints
from storage.postgres.readings import PostgresReadings
from storage.postgres.records import PostgresRecords
from storage.postgres.tokens import PostgresTokens
from storage.postgres.versions import PostgresVersions


class PostgresStore(PostgresReadings, PostgresRecords, PostgresVersions, PostgresPoints,
                    PostgresBilling, PostgresTokens):
    """One pool, one series-id cache and one timezone for every part."""
