"""Versions beside raw reads, verdicts and replacements: the same on every store."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from model import Meter, MeterAssignment, Quality, Reading, ServicePoint, ValueVersion, Verdict
from storage.versions import Refused

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FWD = "1-0:1.8.0"


def slot(n: int) -> datetime:
    return T0 + timedelta(minutes=15 * n)


def estimate(n: int, value: float | None, actor: str = "vee:linear", method: str = "17",
             quality: Quality = Quality.SUBSTITUTED) -> ValueVersion:
    return ValueVersion("m1", FWD, slot(n), value, Quality.NULL if value is None else quality,
                        method, "0", actor, "meter not responding")


async def test_an_estimate_is_a_version_and_the_same_estimate_twice_writes_nothing(
        store: Any) -> None:
    await store.write_readings([Reading("m1", FWD, slot(0), 10.0, "kWh"),
                                Reading("m1", FWD, slot(2), 12.0, "kWh")])
    assert await store.write_versions([estimate(1, 11.0)]) == 1
    assert await store.write_versions([estimate(1, 11.0)]) == 0
    current = await store.current_values(FWD, slot(0), slot(2))
    assert [(v.value, v.quality, v.version) for v in current] == [
        (10.0, Quality.ACTUAL, 0), (11.0, Quality.SUBSTITUTED, 1), (12.0, Quality.ACTUAL, 0)]
    assert current[1].method == "17" and current[1].actor == "vee:linear"


async def test_an_estimate_never_goes_over_an_actual_read(store: Any) -> None:
    await store.write_readings([Reading("m1", FWD, slot(1), 11.5, "kWh")])
    assert await store.write_versions([estimate(1, 11.0)]) == 0
    (got,) = await store.current_values(FWD, slot(1), slot(1))
    assert (got.value, got.quality, got.version) == (11.5, Quality.ACTUAL, 0)


async def test_a_late_actual_read_replaces_the_estimate_and_the_estimate_stays_in_history(
        store: Any) -> None:
    assert await store.write_versions([estimate(1, 11.0)]) == 1
    await store.write_readings([Reading("m1", FWD, slot(1), 11.4, "kWh")])
    (got,) = await store.current_values(FWD, slot(1), slot(1))
    assert (got.value, got.quality, got.version, got.actor) == (11.4, Quality.ACTUAL, 2,
                                                               "ingest")
    history = await store.value_history("m1", FWD, slot(1), slot(1))
    assert [(v.version, v.value, v.quality) for v in history] == [
        (0, 11.4, Quality.ACTUAL), (1, 11.0, Quality.SUBSTITUTED), (2, 11.4, Quality.ACTUAL)]
    # A replay of the late read, and a rerun of the estimate, change nothing more.
    await store.write_readings([Reading("m1", FWD, slot(1), 11.4, "kWh")])
    assert await store.write_versions([estimate(1, 11.0)]) == 0
    assert len(await store.value_history("m1", FWD, slot(1), slot(1))) == 3


async def test_a_null_estimate_keeps_no_value_and_is_not_zero(store: Any) -> None:
    assert await store.write_versions([estimate(3, None, method="")]) == 1
    (got,) = await store.current_values(FWD, slot(3), slot(3))
    assert got.value is None and got.quality is Quality.NULL


async def test_a_persons_edit_wins_over_a_later_automatic_estimate(store: Any) -> None:
    await store.write_readings([Reading("m1", FWD, slot(1), 99.0, "kWh")])
    edit = ValueVersion("m1", FWD, slot(1), 11.0, Quality.SUBSTITUTED, "17", "96",
                        "alice", "spike from a bad read")
    assert await store.write_versions([edit]) == 1
    assert await store.write_versions([estimate(1, 12.0)]) == 0
    (got,) = await store.current_values(FWD, slot(1), slot(1))
    assert (got.value, got.actor, got.reason, got.note) == (11.0, "alice", "96",
                                                            "spike from a bad read")


async def test_a_version_without_a_reason_is_refused_and_nothing_is_written(
        store: Any) -> None:
    bad = ValueVersion("m1", FWD, slot(1), 11.0, Quality.SUBSTITUTED, "17", "", "alice")
    with pytest.raises(Refused, match="no reason"):
        await store.write_versions([estimate(2, 1.0), bad])
    assert await store.current_values(FWD, slot(0), slot(5)) == []


async def test_verdicts_are_kept_per_meter_day_and_rule_and_a_rerun_replaces_them(
        store: Any) -> None:
    day = date(2026, 11, 1)
    await store.write_verdicts([Verdict("m1", day, "gap", False, {"missing": 3}),
                                Verdict("m1", day, "sum_check", True)])
    await store.write_verdicts([Verdict("m1", day, "gap", True, {"missing": 0})])
    got = await store.verdicts(day, day)
    assert [(v.rule, v.passed, v.evidence) for v in got] == [
        ("gap", True, {"missing": 0}), ("sum_check", True, {})]
    assert await store.verdicts(day, day, ["m2"]) == []


async def test_within_one_write_the_last_verdict_for_a_meter_day_and_rule_wins(
        store: Any) -> None:
    day = date(2026, 11, 1)
    await store.write_verdicts([Verdict("m1", day, "gap", False, {"missing": 3}),
                                Verdict("m1", day, "gap", True),
                                Verdict("m2", day, "gap", True),
                                Verdict("m2", day, "gap", False, {"missing": 1})])
    got = await store.verdicts(day, day)
    assert [(v.meter_id, v.passed, v.evidence) for v in got] == [
        ("m1", True, {}), ("m2", False, {"missing": 1})]


async def meters(store: Any, *ids: str) -> None:
    await store.upsert_meters([Meter(i, "dlt645", "bus1", f"00000000000{n}")
                               for n, i in enumerate(ids)])


async def test_a_replacement_closes_the_old_meter_and_opens_the_new_on_one_service_point(
        store: Any) -> None:
    await meters(store, "old", "new")
    await store.upsert_service_points([ServicePoint("sp1", "acct-7", "residential", "S1")],
                                      [MeterAssignment("sp1", "old", start_read=100.0)])
    made = await store.record_replacement("old", "new", slot(40), 250.0, 0.5, 40.0)
    assert made == MeterAssignment("sp1", "new", slot(40), None, 40.0, 0.5, None)
    got = await store.assignments("sp1")
    assert [(a.meter_id, a.start, a.end, a.final_read) for a in got] == [
        ("old", None, slot(40), 250.0), ("new", slot(40), None, None)]
    assert (await store.service_points())[0].account == "acct-7"


async def test_a_meter_without_a_service_point_gets_one_named_after_it_when_replaced(
        store: Any) -> None:
    await meters(store, "old", "new")
    await store.record_replacement("old", "new", slot(4), 12.0, 0.0)
    assert [a.service_point_id for a in await store.assignments(meter_id="new")] == ["old"]


@pytest.mark.parametrize(("old", "new", "final", "start", "problem"), [
    ("old", "ghost", 250.0, 0.0, "meter 'ghost' is unknown"),
    ("old", "new", 50.0, 0.0, "lower than meter old's start read"),
    ("old", "new", 150.0, 0.0, "lower than meter old's last read"),
    ("old", "other", 250.0, 0.0, "would overlap"),
])
async def test_an_impossible_replacement_is_refused_naming_the_problem(
        store: Any, old: str, new: str, final: float, start: float, problem: str) -> None:
    await meters(store, "old", "new", "other")
    await store.write_readings([Reading("old", FWD, slot(10), 200.0, "kWh")])
    await store.upsert_service_points(
        [ServicePoint("sp1"), ServicePoint("sp2")],
        [MeterAssignment("sp1", "old", start_read=100.0), MeterAssignment("sp2", "other")])
    with pytest.raises(Refused, match=problem):
        await store.record_replacement(old, new, slot(40), final, start)
    assert [a.end for a in await store.assignments("sp1")] == [None]


async def test_a_second_replacement_of_a_meter_already_replaced_is_refused(store: Any) -> None:
    await meters(store, "old", "new", "newer")
    await store.record_replacement("old", "new", slot(4), 12.0, 0.0)
    with pytest.raises(Refused, match="already replaced"):
        await store.record_replacement("old", "newer", slot(8), 13.0, 0.0)


async def test_current_values_as_columns_hold_the_same_top_versions_in_the_same_order(
        store: Any) -> None:
    import numpy as np

    from storage.arrays import from_versions

    await store.write_readings([Reading(m, FWD, slot(n), 10.0 + n, "kWh")
                                for m in ("m2", "m1") for n in (0, 1, 3, 5)])
    await store.write_versions([estimate(2, 12.0), estimate(4, None),  # gaps: no raw under
                                estimate(1, 99.0, actor="alice", method="74",
                                         quality=Quality.SUBSTITUTED)])
    await store.write_readings([Reading("m1", FWD, slot(6), 16.0, "kWh")])
    objects = await store.current_values(FWD, slot(0), slot(6))
    cols = await store.current_arrays(FWD, slot(0), slot(6))
    want = from_versions(objects)
    assert cols.meter_ids == want.meter_ids == ("m1", "m2")
    assert cols.units == want.units == ("kWh", "kWh") and cols.unit("m2") == "kWh"
    assert cols.bounds.tolist() == want.bounds.tolist() == [0, 7, 11]
    assert cols.ts.tolist() == want.ts.tolist()
    assert np.array_equal(cols.value, want.value, equal_nan=True)
    assert cols.version.tolist() == want.version.tolist()
    assert cols.automatic.tolist() == want.automatic.tolist()
    assert [cols.methods[i] for i in cols.method] == [want.methods[i] for i in want.method]
    assert [cols.quality_of(k) for k in range(len(cols))] == [v.quality for v in objects]
    m1 = cols.rows("m1")
    assert cols.value[m1][1] == 99.0 and np.isnan(cols.value[m1][4])  # the edit; the null
    assert cols.rows("nobody") == slice(0, 0)
    assert len(await store.current_arrays(FWD, slot(0), slot(6), ["nobody"])) == 0


async def test_columns_come_in_time_order_whatever_order_the_reads_were_written(
        store: Any) -> None:
    for n in (9, 5, 7, 0, 3, 1):  # one write each, so the table holds them in this order
        await store.write_readings([Reading("m1", FWD, slot(n), 10.0 + n, "kWh")])
    cols = await store.current_arrays(FWD, slot(0), slot(9))
    assert cols.ts.tolist() == [slot(n).timestamp() for n in (0, 1, 3, 5, 7, 9)]
    assert cols.value.tolist() == [10.0 + n for n in (0, 1, 3, 5, 7, 9)]
