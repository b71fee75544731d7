"""flags, screen and plot from the command line, against real files and databases."""

from __future__ import annotations

import asyncio
import csv
from datetime import date, timedelta
from pathlib import Path

from click.testing import CliRunner

from collector.cli.main import main
from simulator.population import PopulationSpec, as_stored, build_population
from storage.sqlite import SqliteStore


def write_history(path: Path) -> None:
    days = [date(2015, 1, 1) + timedelta(days=d) for d in range(120)]
    order = list(reversed(days))  # legacy exports are not in date order
    rows = {
        "honest": [10.0 + (d % 7 == 5) * 3 for d in range(120)],
        "thief": [10.0 if d < 90 else 3.0 for d in range(120)],
        "gone-quiet": [8.0 if d < 90 else 0.0 for d in range(120)],
        "patchy": [12.0 if d % 3 else None for d in range(120)],
    }
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["CONS_NO", "FLAG", *[f"{d.year}/{d.month}/{d.day}" for d in order]])
        for name, values in rows.items():
            by_day = dict(zip(days, values, strict=True))
            w.writerow([name, "0", *["" if by_day[d] is None else by_day[d] for d in order]])


def test_screen_ranks_customers_from_a_wide_csv_in_any_date_order(tmp_path: Path) -> None:
    src, out = tmp_path / "history.csv", tmp_path / "result.csv"
    write_history(src)
    result = CliRunner().invoke(main, ["screen", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "4 customers × 120 days (2015-01-01 … 2015-04-30)" in result.output
    assert "ignored non-date columns: FLAG" in result.output
    with out.open() as f:
        ranked = list(csv.DictReader(f))
    assert [r["id"] for r in ranked[:2]] == ["gone-quiet", "thief"]
    assert "zero_consumption(68)" in ranked[0]["reasons"]
    assert "consumption_drop(0.30x)" in ranked[1]["reasons"]
    patchy = next(r for r in ranked if r["id"] == "patchy")
    assert "missing_days(33%)" in patchy["reasons"]
    assert float(next(r for r in ranked if r["id"] == "honest")["score"]) < 0.5


def test_flags_run_list_show_clear_and_plot(tmp_path: Path) -> None:
    pop = build_population(PopulationSpec(meters=40, days=30, areas=2, hot_areas=1,
                                          fraction=0.05, seed=4))
    meters, readings, events = as_stored(pop, range(40))
    db = tmp_path / "c.db"

    async def load() -> None:
        store = SqliteStore(str(db))
        await store.migrate()
        await store.upsert_meters(meters)
        await store.write_readings(readings)
        await store.write_events(events)
        await store.close()

    asyncio.run(load())
    cfg = tmp_path / "collector.toml"
    cfg.write_text(f'[storage]\nurl = "sqlite:///{db}"\n\n[[schedule]]\nname = "i"\n'
                   'every = "15m"\nquantities = ["1-0:1.8.0"]\n')
    runner = CliRunner()
    ran = runner.invoke(main, ["flags", "-c", str(cfg), "run", "--at", "2026-10-01"])
    assert ran.exit_code == 0, ran.output
    listed = runner.invoke(main, ["flags", "-c", str(cfg), "--open"])
    assert listed.exit_code == 0 and "flag(s)" in listed.output
    stopped_meter = pop.meter_ids[next(iter(pop.labels["stopped"]))]
    only = runner.invoke(main, ["flags", "-c", str(cfg), "--kind", "stopped"])
    assert stopped_meter in only.output
    shown = runner.invoke(main, ["flags", "-c", str(cfg), "show", "1"])
    assert shown.exit_code == 0 and "flag 1" in shown.output
    cleared = runner.invoke(main, ["flags", "-c", str(cfg), "clear", "1"])
    assert cleared.exit_code == 0 and "flag 1 cleared" in cleared.output
    png = tmp_path / "m.png"
    plotted = runner.invoke(main, ["plot", "-c", str(cfg), stopped_meter,
                                   "--from", "2026-09-20", "--to", "2026-10-01",
                                   "--out", str(png)])
    assert plotted.exit_code == 0, plotted.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
