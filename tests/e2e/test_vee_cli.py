"""`collector vee …` and `collector meters …` as a clerk uses them, on a real SQLite file."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from collector.cli.main import main
from model import Meter
from storage.sqlite import SqliteStore
from tests.integration.test_vee import LAST_DAY, reads, register

CONFIG = """
[collector]
timezone = "Asia/Shanghai"
[storage]
url = "sqlite:///{db}"
[vee]
lookback_days = 9
"""


def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "vee.db"

    async def fill() -> None:
        store = SqliteStore(str(db))
        await store.migrate()
        await store.upsert_meters([Meter("m1", "dlt645", "bus1", "000000000001"),
                                   Meter("m2", "dlt645", "bus1", "000000000002")])
        gap = set(range(LAST_DAY + 40, LAST_DAY + 43))
        await store.write_readings(reads("m1", skip=gap) + reads("m2", skip=gap))
        await store.close()

    asyncio.run(fill())
    cfg = tmp_path / "collector.toml"
    cfg.write_text(CONFIG.format(db=db))
    return cfg


def cli(cfg: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [args[0], "-c", str(cfg), *args[1:]])
    return result.exit_code, " ".join(result.output.split())


def test_a_clerk_runs_vee_sees_status_edits_and_reads_the_history(tmp_path: Path) -> None:
    cfg = seeded(tmp_path)
    code, out = cli(cfg, "vee", "run", "--from", "2026-11-10", "--to", "2026-11-10")
    assert code == 0, out
    assert "2 meter-days judged: 2 validated (2 with estimates), 0 held" in out
    code, out = cli(cfg, "vee", "status", "--day", "2026-11-10")
    assert code == 0 and "2 service point-days: 2 validated (2 with estimates)" in out
    code, out = cli(cfg, "vee", "edit", "m1", "--from", "2026-11-10 10:15", "--to",
                    "2026-11-10 10:15", "--value", "1300", "--by", "alice")
    assert code != 0 and "needs a reason code" in out
    code, out = cli(cfg, "vee", "edit", "m1", "--from", "2026-11-10 10:15", "--to",
                    "2026-11-10 10:15", "--value", "1300", "--reason", "0", "--note",
                    "read off the display", "--by", "alice")
    assert code == 0 and "1 value(s) edited by alice" in out, out
    code, out = cli(cfg, "vee", "history", "m1", "--at", "2026-11-10 10:15")
    assert code == 0
    assert "estimate" in out and "alice" in out and "read off the" in out and "1300.000" in out


def test_a_replacement_is_recorded_and_an_impossible_one_refused(tmp_path: Path) -> None:
    cfg = seeded(tmp_path)
    code, out = cli(cfg, "meters", "replace", "m1", "m2", "--at", "2026-11-10 12:00",
                    "--old-final", "1.0", "--new-start", "0")
    assert code == 4 and "lower than meter m1's last read" in out
    final = f"{register(LAST_DAY + 48):.4f}"
    code, out = cli(cfg, "meters", "replace", "m1", "m2", "--at", "2026-11-10 12:00",
                    "--old-final", final, "--new-start", "0.5")
    assert code == 0 and "service point m1: m1 → m2" in out, out
    code, out = cli(cfg, "meters", "replace", "m1", "m2", "--at", "2026-11-10 13:00",
                    "--old-final", final, "--new-start", "0.5")
    assert code == 4 and "already replaced" in out
    ct = f"{register(LAST_DAY + 72):.4f}"
    code, out = cli(cfg, "meters", "replace", "m2", "m2", "--at", "2026-11-10 18:00",
                    "--old-final", ct, "--new-start", ct, "--multiplier", "40")
    assert code == 0 and "multiplier 40" in out, out
    code, out = cli(cfg, "meters", "history", "m1")
    assert code == 0 and out.count("2026-11-10 12:00") == 2 and "40" in out
