"""Where values go: sinks behind one small interface (storage.base.Store)."""

from __future__ import annotations

from storage.base import StorageError, Store


def open_store(url: str, *, password: str | None = None, timezone: str = "UTC") -> Store:
    """The store a URL names; imports a backend only when it is used."""
    if url.startswith("sqlite://"):
        from storage.sqlite import SqliteStore

        return SqliteStore.from_url(url)
    if url.startswith(("postgresql://", "postgres://")):
        from storage.postgres import PostgresStore

        return PostgresStore(url, password=password, timezone=timezone)
    raise StorageError(f"no storage backend for {url!r}; use sqlite:// or postgresql://")


__all__ = ["StorageError", "Store", "open_store"]
