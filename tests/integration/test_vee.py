"""VEE end to end on both stores: every rule, every estimation method, replacements,
reruns and late reads, on register series with a known true consumption."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.config.vee import VeeSettings
from collector.vee import codes
from collector.vee.engine import CLOCK, ENERGY, VeeEngine
from collector.vee.service_points import consumption
from model import Meter, MeterAssignment, Quality, Reading, ReadKind, ServicePoint

TZ = ZoneInfo("Asia/Shanghai")
FIRST = date(2026, 11, 1)
DAYS = 10
JUDGED = date(2026, 11, 10)
START = datetime(2026, 11, 1, tzinfo=TZ).astimezone(UTC)
STEP = timedelta(minutes=15)
NOW = datetime(2026, 11, 11, 1, tzinfo=TZ).astimezone(UTC)


def kwh(k: int) -> float:
    """True energy of the interval ending at slot k: the same shape every day."""
    hour = (k % 96) / 4
    return round(0.1 + 0.4 * math.exp(-0.5 * ((hour - 19) / 2) ** 2), 6)


def register(k: int, base: float = 1000.0) -> float:
    return base + sum(kwh(j) for j in range(1, k + 1))


SLOTS = DAYS * 96


def ts(k: int) -> datetime:
    return START + k * STEP


def reads(meter: str = "m1", skip: range | set[int] = range(0), base: float = 1000.0,
          change: dict[int, float] | None = None) -> list[Reading]:
    values = [register(k, base) for k in range(SLOTS + 1)]
    for k, v in (change or {}).items():
        values[k] = v
    return [Reading(meter, ENERGY, ts(k), round(values[k], 4), "kWh")
            for k in range(SLOTS + 1) if k not in skip]


LAST_DAY = 9 * 96  # slot of the judged day's opening midnight


async def setup(store: Any, batch: list[Reading], meters: tuple[str, ...] = ("m1",),
                **settings: Any) -> VeeEngine:
    ms = [Meter(m, "dlt645", "bus1", f"{n:012d}", exporter=False) for n, m in enumerate(meters)]
    await store.upsert_meters(ms)
    await store.write_readings(batch)
    return VeeEngine(store, VeeSettings(lookback_days=9, **settings), TZ, ms)


async def verdict(store: Any, rule: str, meter: str = "m1") -> Any:
    return next(v for v in await store.verdicts(JUDGED, JUDGED, [meter]) if v.rule == rule)


async def current(store: Any, k: int, meter: str = "m1") -> Any:
    (got,) = await store.current_values(ENERGY, ts(k), ts(k), [meter])
    return got


async def test_a_clean_day_passes_every_rule(store: Any) -> None:
    engine = await setup(store, reads())
    run = await engine.run(JUDGED, JUDGED, NOW)
    assert (run.meter_days, run.validated, run.held, run.versions) == (1, 1, 0, 0)
    got = await store.verdicts(JUDGED, JUDGED)
    assert sorted(v.rule for v in got) == sorted(codes.RULES)
    assert all(v.passed for v in got)


async def test_a_gap_of_an_hour_is_filled_by_linear_interpolation(store: Any) -> None:
    gap = range(LAST_DAY + 40, LAST_DAY + 43)
    engine = await setup(store, reads(skip=gap))
    run = await engine.run(JUDGED, JUDGED, NOW)
    assert (run.versions, run.validated, run.estimated) == (3, 1, 1)
    left, right = register(LAST_DAY + 39), register(LAST_DAY + 43)
    for n, k in enumerate(gap, start=1):
        got = await current(store, k)
        assert (got.quality, got.method, got.actor) == (Quality.SUBSTITUTED, codes.LINEAR,
                                                       codes.ACTOR)
        assert got.value == pytest.approx(left + (right - left) * n / 4)
    gap_verdict = await verdict(store, codes.GAP)
    assert not gap_verdict.passed
    assert gap_verdict.evidence["missing"] == 3 and gap_verdict.evidence["estimated"] == 3


async def test_a_long_gap_takes_the_like_day_shape_scaled_to_the_register(
        store: Any) -> None:
    gap = range(LAST_DAY + 30, LAST_DAY + 70)  # 10 h
    engine = await setup(store, reads(skip=gap))
    await engine.run(JUDGED, JUDGED, NOW)
    values = [(await current(store, k)) for k in gap]
    assert {v.method for v in values} == {codes.SCALED}
    # The shape repeats daily, so the like-day estimate is the truth itself, and the day's
    # intervals sum exactly to the register delta.
    for k, v in zip(gap, values, strict=True):
        assert v.value == pytest.approx(register(k), abs=1e-3)


async def test_a_meter_silent_since_noon_gets_a_forward_estimate_from_like_days(
        store: Any) -> None:
    silent = range(LAST_DAY + 48, SLOTS + 1)
    engine = await setup(store, reads(skip=silent))
    await engine.run(JUDGED, JUDGED, NOW)
    got = await current(store, SLOTS)
    assert (got.quality, got.method) == (Quality.ESTIMATED, codes.LIKE_DAY)
    assert got.value == pytest.approx(register(SLOTS), abs=1e-3)


async def test_with_no_history_a_silent_meter_gets_null_never_zero(store: Any) -> None:
    keep = set(range(LAST_DAY - 2, LAST_DAY + 48))
    engine = await setup(store, reads(skip=set(range(SLOTS + 1)) - keep))
    run = await engine.run(JUDGED, JUDGED, NOW)
    got = await current(store, SLOTS)
    assert got.value is None and got.quality is Quality.NULL
    assert run.held == 1 and run.held_by[codes.GAP] == 1


async def test_rerunning_the_pass_writes_nothing_new(store: Any) -> None:
    engine = await setup(store, reads(skip=range(LAST_DAY + 30, LAST_DAY + 70)))
    first = await engine.run(JUDGED, JUDGED, NOW)
    again = await engine.run(JUDGED, JUDGED, NOW)
    assert first.versions == 40 and again.versions == 0


async def test_a_late_read_replaces_the_estimate_and_the_day_is_then_complete(
        store: Any) -> None:
    gap = range(LAST_DAY + 40, LAST_DAY + 43)
    engine = await setup(store, reads(skip=gap))
    await engine.run(JUDGED, JUDGED, NOW)
    await store.write_readings([r for r in reads() if r.ts in {ts(k) for k in gap}])
    got = await current(store, LAST_DAY + 41)
    assert (got.quality, got.actor, got.version) == (Quality.ACTUAL, "ingest", 2)
    await engine.run(JUDGED, JUDGED, NOW)
    assert (await verdict(store, codes.GAP)).passed


async def test_a_spike_above_the_rating_is_held_with_its_evidence(store: Any) -> None:
    k = LAST_DAY + 50
    batch = reads(change={j: register(j) + 40.0 for j in range(k, SLOTS + 1)})
    engine = await setup(store, batch)
    run = await engine.run(JUDGED, JUDGED, NOW)
    spike = await verdict(store, codes.SPIKE)
    assert not spike.passed and spike.evidence["kwh"] == pytest.approx(40 + kwh(k), abs=1e-3)
    assert spike.evidence["ts"] == ts(k).isoformat()
    assert run.held_by[codes.SPIKE] == 1


async def test_a_spike_far_above_the_meters_own_history_is_held(store: Any) -> None:
    k = LAST_DAY + 10  # 02:30, when this meter uses 0.1 kWh
    batch = reads(change={j: register(j) + 3.0 for j in range(k, SLOTS + 1)})
    engine = await setup(store, batch)
    await engine.run(JUDGED, JUDGED, NOW)
    spike = await verdict(store, codes.SPIKE)
    assert not spike.passed and spike.evidence["history_p95_kwh"] > 0


async def test_a_zero_run_while_voltage_is_present_is_held(store: Any) -> None:
    frozen_at = register(LAST_DAY + 20)
    change = {k: frozen_at for k in range(LAST_DAY + 20, LAST_DAY + 40)}
    change.update({k: register(k) - (register(LAST_DAY + 39) - frozen_at)
                   for k in range(LAST_DAY + 40, SLOTS + 1)})
    volts = [Reading("m1", "1-0:32.7.0", ts(LAST_DAY + 30), 229.0, "V",
                     kind=ReadKind.INSTANT)]
    engine = await setup(store, reads(change=change) + volts)
    await engine.run(JUDGED, JUDGED, NOW)
    zero = await verdict(store, codes.ZERO)
    assert not zero.passed and zero.evidence["intervals"] == 19
    assert zero.evidence["max_volts"] == 229.0


async def test_a_register_going_backward_is_held(store: Any) -> None:
    k = LAST_DAY + 30
    engine = await setup(store, reads(change={k: register(k) - 5.0}))
    await engine.run(JUDGED, JUDGED, NOW)
    negative = await verdict(store, codes.NEGATIVE)
    assert not negative.passed and negative.evidence["ts"] == ts(k).isoformat()


async def test_a_register_rollover_is_continuity_not_a_backward_meter(store: Any) -> None:
    base = 999999.99 - register(LAST_DAY + 30, 0.0)
    wrap = 999999.99 + 0.01
    batch = [Reading(r.meter_id, r.quantity, r.ts, round(r.value % wrap, 4), r.unit)
             for r in reads(base=base)]
    engine = await setup(store, batch)
    run = await engine.run(JUDGED, JUDGED, NOW)
    negative = await verdict(store, codes.NEGATIVE)
    assert negative.passed and "rollover" in negative.evidence
    assert run.held == 0


async def test_a_meter_clock_off_by_more_than_the_tolerance_makes_its_day_suspect(
        store: Any) -> None:
    offset = [Reading("m1", CLOCK, ts(LAST_DAY + 8), 95.0, "s")]
    engine = await setup(store, reads() + offset)
    await engine.run(JUDGED, JUDGED, NOW)
    late = await verdict(store, codes.TIME)
    assert not late.passed and late.evidence["max_offset_s"] == 95.0


@pytest.mark.parametrize(("frozen_off", "passes"), [(0.05, True), (2.0, False)])
async def test_the_sum_check_compares_the_day_with_the_frozen_register(
        store: Any, frozen_off: float, passes: bool) -> None:
    frozen = [Reading("m1", ENERGY, ts(LAST_DAY), register(LAST_DAY), "kWh",
                      kind=ReadKind.FROZEN_DAILY),
              Reading("m1", ENERGY, ts(SLOTS), register(SLOTS) + frozen_off, "kWh",
                      kind=ReadKind.FROZEN_DAILY)]
    engine = await setup(store, reads() + frozen)
    await engine.run(JUDGED, JUDGED, NOW)
    assert (await verdict(store, codes.SUM)).passed is passes


async def test_a_gap_across_midnight_is_scaled_to_the_frozen_midnight_register(
        store: Any) -> None:
    gap = range(LAST_DAY - 20, LAST_DAY + 20)
    frozen = [Reading("m1", ENERGY, ts(LAST_DAY), register(LAST_DAY), "kWh",
                      kind=ReadKind.FROZEN_DAILY)]
    engine = await setup(store, reads(skip=gap) + frozen)
    await engine.run(JUDGED, JUDGED, NOW)
    got = await current(store, LAST_DAY + 19)
    assert got.value == pytest.approx(register(LAST_DAY + 19), abs=1e-3)


async def test_an_unrecorded_replacement_is_held_and_flagged(store: Any) -> None:
    k = LAST_DAY + 48
    change = {j: 0.5 + register(j) - register(k) for j in range(k, SLOTS + 1)}
    engine = await setup(store, reads(change=change))
    run = await engine.run(JUDGED, JUDGED, NOW)
    replaced = await verdict(store, codes.REPLACEMENT)
    assert not replaced.passed and "collector meters replace" in replaced.evidence["hint"]
    assert (await verdict(store, codes.NEGATIVE)).passed
    assert run.flags == 1
    assert [f.flag.kind for f in await store.list_flags(open_only=True)] == [
        "unrecorded_replacement"]


async def test_a_recorded_replacement_is_judged_against_the_right_meter(store: Any) -> None:
    k = LAST_DAY + 48
    old = [r for r in reads("old") if r.ts <= ts(k)]
    new = [r for r in reads("new", base=0.5 - register(k, 0.0)) if r.ts >= ts(k)]
    engine = await setup(store, old + new, meters=("old", "new"))
    await store.upsert_service_points([ServicePoint("sp1")],
                                      [MeterAssignment("sp1", "old", start_read=1000.0)])
    await store.record_replacement("old", "new", ts(k), register(k), 0.5, 2.0)
    run = await engine.run(JUDGED, JUDGED, NOW)
    assert run.held == 0 and run.versions == 0
    # The service point's consumption spans the swap: old part × 1, new part × 2.
    got = await consumption(store, "sp1", ts(LAST_DAY), ts(SLOTS))
    want = (register(k) - register(LAST_DAY)) + 2 * (register(SLOTS) - register(k))
    assert got.kwh == pytest.approx(want, abs=1e-3)
    assert [p.meter_id for p in got.parts] == ["old", "new"]


async def test_a_ct_ratio_change_on_the_same_meter_splits_its_consumption(
        store: Any) -> None:
    k = LAST_DAY + 48
    engine = await setup(store, reads())
    await store.record_replacement("m1", "m1", ts(k), register(k), register(k), 5.0)
    await engine.run(JUDGED, JUDGED, NOW)
    got = await consumption(store, "m1", ts(LAST_DAY), ts(SLOTS))
    want = (register(k) - register(LAST_DAY)) + 5 * (register(SLOTS) - register(k))
    assert got.kwh == pytest.approx(want, abs=1e-3)


async def test_an_edit_by_hand_re_estimates_a_bad_read_and_keeps_it_in_history(
        store: Any) -> None:
    from collector.vee.edit import edit

    k = LAST_DAY + 30
    engine = await setup(store, reads(change={k: register(k) + 7.0}))
    written = await edit(engine, "m1", ENERGY, ts(k), ts(k), value=None, method="linear",
                         reason="96", note="spike from a bad read", by="alice", now=NOW)
    assert written == 1
    got = await current(store, k)
    assert (got.quality, got.method, got.actor, got.reason) == (
        Quality.SUBSTITUTED, codes.LINEAR, "alice", "96")
    assert got.value == pytest.approx((register(k - 1) + register(k + 1)) / 2, abs=1e-3)
    history = await store.value_history("m1", ENERGY, ts(k), ts(k))
    assert [h.actor for h in history] == ["", "alice"]
    run = await engine.run(JUDGED, JUDGED, NOW)
    assert run.held == 0  # the edit resolved the spike and the backward step after it


async def test_an_edit_with_a_value_sets_it_and_the_same_edit_twice_writes_once(
        store: Any) -> None:
    from collector.vee.edit import edit

    engine = await setup(store, reads())
    args = dict(value=1234.5, method=None, reason="0", note="meter photo", by="bob", now=NOW)
    assert await edit(engine, "m1", ENERGY, ts(LAST_DAY), ts(LAST_DAY), **args) == 1
    assert await edit(engine, "m1", ENERGY, ts(LAST_DAY), ts(LAST_DAY), **args) == 0
    assert (await current(store, LAST_DAY)).value == 1234.5


@pytest.mark.parametrize(("change", "problem"), [
    ({"reason": ""}, "needs a reason"),
    ({"reason": "xyz"}, "unknown reason code"),
    ({"by": ""}, "who made it"),
    ({"meter": "ghost"}, "meter 'ghost' is unknown"),
    ({"value": 1.0}, "exactly one of --value or --method"),
])
async def test_a_bad_edit_is_refused_and_writes_nothing(store: Any, change: dict[str, Any],
                                                       problem: str) -> None:
    from collector.vee.edit import edit
    from storage.versions import Refused

    engine = await setup(store, reads())
    args: dict[str, Any] = dict(value=None, method="linear", reason="96", note="", by="al",
                                now=NOW)
    change = dict(change)  # the parametrized dict is shared by both stores' runs
    meter = change.pop("meter", "m1")
    args.update(change)
    with pytest.raises(Refused, match=problem):
        await edit(engine, meter, ENERGY, ts(LAST_DAY + 3), ts(LAST_DAY + 4), **args)
    assert await store.value_history("m1", ENERGY, ts(LAST_DAY + 3), ts(LAST_DAY + 4)) == [
        v for v in await store.value_history("m1", ENERGY, ts(LAST_DAY + 3),
                                             ts(LAST_DAY + 4)) if v.version == 0]


async def test_status_counts_service_point_days_and_names_the_holding_rule(
        store: Any) -> None:
    from collector.vee.status import readiness

    k = LAST_DAY + 30
    batch = reads() + reads("m2", change={k: register(k) - 5.0})
    engine = await setup(store, batch, meters=("m1", "m2"))
    await engine.run(JUDGED, JUDGED, NOW)
    r = await readiness(store, JUDGED, JUDGED, TZ, list(engine.meters.values()))
    assert (r.points, r.validated, r.held) == (2, 1, 1)
    # One low read: the register steps back, then jumps by more than the rating allows.
    assert r.worst == [("m2", 1, [codes.NEGATIVE, codes.SPIKE])]


async def test_slots_after_the_frozen_midnight_read_are_due_though_no_interval_read_came_yet(
        store: Any) -> None:
    """A meter first read at 00:45 with its register frozen at midnight owes 00:15 and
    00:30: the day is not validated as if they were never due (issue 28)."""
    frozen = [Reading("m1", ENERGY, ts(LAST_DAY), register(LAST_DAY), "kWh",
                      kind=ReadKind.FROZEN_DAILY)]
    later = [r for r in reads() if r.ts >= ts(LAST_DAY + 3)]
    engine = await setup(store, later + frozen)
    await engine.run(JUDGED, JUDGED, NOW)
    gap = await verdict(store, codes.GAP)
    assert not gap.passed and gap.evidence["missing"] == 2
    for k in (LAST_DAY + 1, LAST_DAY + 2):
        got = await current(store, k)
        assert got.quality is Quality.SUBSTITUTED
        assert got.value == pytest.approx(register(LAST_DAY) + (k - LAST_DAY) / 3 * (
            register(LAST_DAY + 3) - register(LAST_DAY)), abs=1e-3)


async def test_meters_validated_block_by_block_keep_their_own_clock_reads(
        store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from collector.vee import engine as vee_engine

    monkeypatch.setattr(vee_engine, "BLOCK", 1)
    offset = [Reading("m2", CLOCK, ts(LAST_DAY + 8), 95.0, "s")]
    engine = await setup(store, reads("m1") + reads("m2") + reads("m3") + offset,
                         meters=("m1", "m2", "m3"))
    run = await engine.run(JUDGED, JUDGED, NOW)
    assert run.meter_days == 3
    assert [(await verdict(store, codes.TIME, m)).passed for m in ("m1", "m2", "m3")] == [
        True, False, True]
