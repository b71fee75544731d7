"""`collector points`, `collector bill …` and `collector prepaid …` as a billing clerk
uses them, on a real SQLite file."""

from __future__ import annotations

import asyncio
import csv
import sqlite3
from pathlib import Path

from click.testing import CliRunner

from collector.cli.main import main
from model import Meter
from storage.sqlite import SqliteStore
from tests.integration.test_billing import END, FIRST, commercial_calendar, meter_series

CONFIG = """
[collector]
timezone = "Asia/Shanghai"
[storage]
url = "sqlite:///{db}"
[billing]
segments = {{ S01 = 1 }}
"""


def cli(cfg: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [args[0], "-c", str(cfg), *args[1:]])
    return result.exit_code, " ".join(result.output.split())


def seeded(tmp_path: Path) -> Path:
    db = tmp_path / "bill.db"

    async def fill() -> None:
        store = SqliteStore(str(db))
        await store.migrate()
        await store.upsert_meters([Meter("m1", "dlt645", "bus1", "000000000001"),
                                   Meter("m2", "dlt645", "bus1", "000000000002")])
        for m in ("m1", "m2"):
            await store.write_readings(meter_series(m, FIRST, END, commercial_calendar)[0])
        await store.close()

    asyncio.run(fill())
    cfg = tmp_path / "collector.toml"
    cfg.write_text(CONFIG.format(db=db))
    points = tmp_path / "points.csv"
    points.write_text("id,account,tariff,segment,area,meter\n"
                      "sp1,A1,commercial-tou,S01,T1,m1\nsp2,A2,cn-residential,S01,T1,m2\n")
    code, out = cli(cfg, "points", "import", str(points))
    assert code == 0 and "2 service points imported" in out, out
    return cfg


def test_a_clerk_runs_a_cycle_reviews_releases_and_exports(tmp_path: Path) -> None:
    cfg = seeded(tmp_path)
    code, out = cli(cfg, "bill", "run", "--cycle", "2026-11")
    assert code == 0, out
    assert "Bills 2026-11: 2 service points: 1 released, 1 held (tou_mismatch 1)" in out
    code, out = cli(cfg, "bill", "run", "--cycle", "2026-11")
    assert "2 unchanged since the last run" in out
    code, out = cli(cfg, "bill", "show", "sp1", "--cycle", "2026-11")
    assert code == 0 and "released by review" in out
    assert "m1 ×1 end 1-0:1.8.1 =" in out and "frozen daily" in out and "demand:" in out
    code, out = cli(cfg, "bill", "review")
    assert "held bills: 1" in out and "sp2" in out and "tou_mismatch" in out
    with sqlite3.connect(tmp_path / "bill.db") as db:
        (held_id,) = db.execute("SELECT id FROM bills WHERE service_point_id = 'sp2'"
                                ).fetchone()
    held_id = str(held_id)
    code, out = cli(cfg, "bill", "release", held_id, "--by", "li.wei", "--note", "checked")
    assert code == 0 and "released by li.wei" in out
    code, out = cli(cfg, "bill", "release", held_id, "--by", "li.wei", "--note", "again")
    assert code != 0 and "not held" in out
    target = tmp_path / "bills.csv"
    code, out = cli(cfg, "bill", "export", "--cycle", "2026-11", "--out", str(target))
    assert code == 0 and "2 bills written" in out
    rows = list(csv.DictReader(target.open()))
    assert [r["service_point"] for r in rows] == ["sp1", "sp2"]
    assert float(rows[0]["sharp_kwh"]) > 0 and rows[0]["max_demand_kw"]
    code, out = cli(cfg, "bill", "run", "--cycle", "Nov")
    assert code != 0 and "is not a cycle" in out


def test_a_tariff_change_and_prepaid_commands(tmp_path: Path) -> None:
    cfg = seeded(tmp_path)
    code, out = cli(cfg, "bill", "tariff", "sp1", "no-such-tariff", "--from", "2026-10-10")
    assert code != 0 and "no tariff named 'no-such-tariff'" in out
    code, out = cli(cfg, "bill", "tariff", "sp1", "cn-residential", "--from", "2026-10-10")
    assert code == 0
    code, out = cli(cfg, "bill", "run", "--cycle", "2026-11")
    assert "tariff_changed 1" in out
    code, out = cli(cfg, "prepaid", "open", "P1", "--service-point", "sp2")
    assert code == 0
    code, out = cli(cfg, "prepaid", "topup", "P1", "30", "--ref", "pay-9")
    assert code == 0 and "balance 30.00" in out
    code, out = cli(cfg, "prepaid", "topup", "P1", "30", "--ref", "pay-9")
    assert "already recorded" in out
    code, out = cli(cfg, "prepaid", "status")
    assert "P1" in out and "30.00" in out and "closed" in out and "topup" in out
    code, out = cli(cfg, "prepaid", "topup", "nobody", "30", "--ref", "x")
    assert code != 0 and "no prepaid account 'nobody'" in out


def test_the_config_may_follow_the_subcommand(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{tmp_path / "x.db"}"\n')
    before = CliRunner().invoke(main, ["token", "-c", str(cfg), "create", "--name", "a",
                                       "--scope", "read"])
    after = CliRunner().invoke(main, ["token", "create", "--name", "b", "--scope", "read",
                                      "-c", str(cfg)])
    assert before.exit_code == after.exit_code == 0, (before.output, after.output)
    listed = CliRunner().invoke(main, ["token", "list", "-c", str(cfg)])
    assert "a" in listed.output and "b" in listed.output


def test_an_export_of_a_mistyped_meter_or_area_is_refused_and_writes_no_file(
        tmp_path: Path) -> None:
    cfg = seeded(tmp_path)
    target = tmp_path / "out.csv"
    for kind in ("nem12", "readings"):
        code, out = cli(cfg, "export", kind, "--from", "2026-11-01", "--to", "2026-11-02",
                        "--meters", "m1,m9", "--out", str(target))
        assert code == 2 and "meters: unknown m9" in out, out
        code, out = cli(cfg, "export", kind, "--from", "2026-11-01", "--to", "2026-11-02",
                        "--area", "T9", "--out", str(target))
        assert code == 2 and "area: no meters in 'T9'" in out, out
        assert not target.exists()
    code, out = cli(cfg, "export", "nem12", "--from", "2026-11-01", "--to", "2026-11-02",
                    "--meters", "m1", "--out", str(target))
    assert code == 0 and target.read_text().startswith("100,NEM12,"), out


def test_a_points_file_that_is_not_utf8_or_has_a_short_row_or_a_negative_multiplier_is_refused(
        tmp_path: Path) -> None:
    """Each says the file, the line and the fix, and imports nothing (issue 28: a GBK
    file printed a traceback; a short row and a negative multiplier gave a raw
    'constraint failed')."""
    cfg = seeded(tmp_path)
    header = "id,account,tariff,segment,area,meter,multiplier\n"
    cases = {
        "gbk.csv": (header + "sp9,A9,cn-residential,S01,台区1,m1,1\n").encode("gbk"),
        "short.csv": (header + "sp9,A9,cn-residential,S01,T1,m1,1\nsp8,A8\n").encode(),
        "negative.csv": (header + "sp9,A9,cn-residential,S01,T1,m1,-40\n").encode(),
    }
    says = {"gbk.csv": "is not UTF-8; save the file as UTF-8",
            "short.csv": "short.csv:3: the row has 2 fields, the header 7",
            "negative.csv": "negative.csv:2: multiplier '-40' must be positive"}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        code, out = cli(cfg, "points", "import", str(path))
        assert code != 0 and says[name] in out and "Traceback" not in out, out
    with sqlite3.connect(tmp_path / "bill.db") as db:
        assert db.execute("SELECT count(*) FROM service_points").fetchone() == (2,)


def test_a_malformed_tariff_an_invalid_price_or_a_cycle_with_no_reads_stops_the_run(
        tmp_path: Path) -> None:
    cfg = seeded(tmp_path)
    tariffs = tmp_path / "tariffs"
    tariffs.mkdir()
    shipped = Path(__file__).resolve().parents[2] / "collector/billing/tariffs/cn-residential.toml"
    base = cfg.read_text()
    cfg.write_text(base.replace("[billing]", f'[billing]\ntariff_dirs = ["{tariffs}"]'))
    (tariffs / "cn-residential.toml").write_text(shipped.read_text() + "\n[[[broken\n")
    code, out = cli(cfg, "bill", "run", "--cycle", "2026-11")
    assert code == 2 and "cn-residential.toml" in out and "(syntax)" in out, out
    priced = shipped.read_text().replace("price = 0.5583", "price = nan", 1)
    assert "price = nan" in priced
    (tariffs / "cn-residential.toml").write_text(priced)
    code, out = cli(cfg, "bill", "run", "--cycle", "2026-11")
    assert code == 2 and "cn-residential.toml" in out and ".price" in out, out
    (tariffs / "cn-residential.toml").unlink()
    code, out = cli(cfg, "bill", "run", "--cycle", "2031-01")
    assert code == 1 and "no register read at all" in out and "No bill was written" in out
    with sqlite3.connect(tmp_path / "bill.db") as db:
        assert db.execute("SELECT count(*) FROM bills").fetchone() == (0,)
