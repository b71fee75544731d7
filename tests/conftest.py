from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.base import Store
from storage.sqlite import SqliteStore

STORE_KINDS = ["sqlite"]


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Each storage backend, freshly migrated: the contract tests run against all of them."""
    if request.param == "sqlite":
        s: Store = SqliteStore(str(tmp_path / "store.db"))
    else:
        s = request.getfixturevalue("postgres_store_factory")()
    await s.migrate()
    try:
        yield s
    finally:
        await s.close()
