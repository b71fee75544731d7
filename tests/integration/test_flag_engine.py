"""The flag engine over a simulated population stored in SQLite, run as daily passes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from collector.flags import engine as flag_engine
from collector.flags.engine import FlagEngine
from model import Meter, Reading
from simulator.population import PopulationSpec, as_stored, build_population
from storage.sqlite import SqliteStore

EXPECTED = {"gaps": "missed_reads", "stopped": "stopped", "runaway": "runaway",
            "backward": "backward", "tariff_mismatch": "tariff_mismatch",
            "clock_drift": "clock_drift", "voltage_loss": "voltage_loss",
            "current_loss": "current_loss", "imbalance": "current_imbalance",
            "reversed_ct": "wiring", "swapped_phases": "wiring", "bypass": "theft",
            "cover_open": "tamper", "h1": "theft", "h2": "theft", "h3": "theft",
            "h4": "theft", "h5": "theft", "h6": "theft"}


async def test_daily_passes_flag_every_injected_meter_once_and_no_clean_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Blocks of 7 meters: the pass reads and judges a fleet a block at a time, and a
    # block boundary must change no finding (the area balance spans every block).
    monkeypatch.setattr(flag_engine, "BLOCK", 7)
    pop = build_population(PopulationSpec(meters=80, days=32, areas=2, hot_areas=1,
                                          fraction=0.025, seed=11))
    meters, readings, events = as_stored(pop, range(80))
    store = SqliteStore(str(tmp_path / "flags.db"))
    await store.migrate()
    await store.upsert_meters(meters)
    await store.write_readings(readings)
    await store.write_events(events)
    engine = FlagEngine(store, meters, every=timedelta(minutes=15), tz=ZoneInfo("UTC"),
                        interval_of={m.id: timedelta(days=1) for m in meters if m.is_area_meter})
    for day in (29, 30, 31, 32):
        await engine.run(pop.spec.start + timedelta(days=day), full=True)
    again = await engine.run(pop.spec.start + timedelta(days=32), full=True)
    assert again.raised == 0  # raised once, open until cleared
    rows = await store.list_flags(open_only=True)
    by_subject: dict[str, set[str]] = {}
    for row in rows:
        by_subject.setdefault(row.flag.subject, set()).add(row.flag.kind)
    for kind, members in pop.labels.items():
        for i in members:
            assert EXPECTED[kind] in by_subject.get(pop.meter_ids[i], set()), (kind, i)
    anomalous = {pop.meter_ids[i] for s in pop.labels.values() for i in s}
    clean_flagged = {s: k for s, k in by_subject.items()
                     if s not in anomalous and not s.startswith("A")}
    assert clean_flagged == {}
    areas = {r.flag.subject: r.flag.kind for r in rows if r.flag.subject.startswith("A")}
    assert areas.get(f"A{next(iter(pop.area_labels['negative_loss']))}") == "negative_line_loss"
    for a in pop.area_labels["high_loss"]:
        assert areas[f"A{a}"] == "high_line_loss"


async def test_a_meter_that_answers_without_a_record_is_flagged_unregistered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flag_engine, "BLOCK", 1)
    store = SqliteStore(str(tmp_path / "stray.db"))
    await store.migrate()
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    known = [Meter("m1", "dlt645", "bus1", "000000000001"),
             Meter("m2", "dlt645", "bus1", "000000000002")]
    await store.write_readings([Reading(m, "1-0:1.8.0", t0 + timedelta(minutes=15 * k),
                                        100.0 + k, "kWh")
                                for m in ("m1", "m2", "stray") for k in range(1, 5)])
    engine = FlagEngine(store, known, every=timedelta(minutes=15), tz=ZoneInfo("UTC"))
    run = await engine.run(t0 + timedelta(hours=1), full=False)
    strays = [f for f in run.findings if f.kind == "unregistered_meter"]
    assert [(f.subject, f.evidence["readings"]) for f in strays] == [("stray", 4)]
    assert {f.subject for f in run.findings} == {"stray"}
