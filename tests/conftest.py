from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from storage.base import Store
from storage.postgres import PostgresStore
from storage.sqlite import SqliteStore
from tests.support.services import PgCluster, running_cluster

STORE_KINDS = ["sqlite", "postgres"]
_db_counter = itertools.count()


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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    with running_cluster() as cluster:
        yield cluster


@pytest.fixture
def postgres_store_factory(pg_cluster: PgCluster) -> Callable[..., PostgresStore]:
    """A fresh database per call, so tests never see each other's rows."""

    def make(**kwargs: object) -> PostgresStore:
        name = f"t{next(_db_counter)}"
        return PostgresStore(pg_cluster.create_database(name), **kwargs)  # type: ignore[arg-type]

    return make
