"""The API answers what its OpenAPI document says, as schemathesis checks it: statuses,
media types (problem+json, CSV, NEM12), parameters valid per the schema accepted, the
invalid refused, no server error, Allow on every 405. Run against a real `collector api`
with a read token and with an admin token (issue 28: about 40 failures before).

The few operations whose parameters must also agree with each other (from before to)
or name data the store holds are listed, with their rule, in schemathesis.toml. The
seed is fixed so CI explores the same cases every run; `schemathesis run` by hand, with
the same config, explores others."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulator.ports import free_port
from storage.sqlite import SqliteStore
from tests.integration.test_api import seed
from tests.support.services import started_api

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "collector.cli"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str]]]:
    root = tmp_path_factory.mktemp("openapi")
    db = root / "api.db"

    async def fill() -> dict[str, str]:
        store = SqliteStore(str(db))
        await store.migrate()
        await seed(store)
        tokens = {scope: await store.create_token(f"st-{scope}", [scope])
                  for scope in ("read", "admin")}
        await store.close()
        return tokens

    tokens = asyncio.run(fill())
    config = root / "collector.toml"
    config.write_text(f'[collector]\ntimezone = "Europe/Berlin"\n'
                      f'[storage]\nurl = "sqlite:///{db}"\n[api]\naccess_log = false\n')
    port = free_port()
    server = started_api([*CLI, "api", "-c", str(config), "--host", "127.0.0.1",
                          "--port", str(port)])
    try:
        yield f"http://127.0.0.1:{port}", tokens
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("scope", ["read", "admin"])
def test_schemathesis_finds_the_api_as_its_openapi_document_says(
        served: tuple[str, dict[str, str]], scope: str, tmp_path: Path) -> None:
    url, tokens = served
    st = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert st, "schemathesis is a test dependency: ./dev setup installs it"
    run = subprocess.run(
        [st, "--config-file", str(ROOT / "schemathesis.toml"), "run", f"{url}/openapi.json",
         "-H", f"Authorization: Bearer {tokens[scope]}", "--max-examples", "15",
         "--seed", "28", "--no-color"],
        capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
