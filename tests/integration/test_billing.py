"""Bills end to end on both stores: determinants from registers and intervals, TOU
cross-checks, tiers, demand, replacements, tariff changes, review holds, reruns,
corrections and release, on series with a known true consumption."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from collector.billing.cycles import Cycle
from collector.billing.run import Biller
from collector.billing.tariff import PERIODS, Tariffs
from collector.config.billing import BillingSettings
from collector.config.vee import VeeSettings
from model import (
    BillStatus,
    Meter,
    MeterAssignment,
    Quality,
    Reading,
    ReadKind,
    ServicePoint,
    TariffChange,
    ValueVersion,
    Verdict,
)
from storage.versions import Refused

TZ = ZoneInfo("Asia/Shanghai")
STEP = timedelta(minutes=15)
CYCLE = Cycle.parse("2026-11")
FIRST, END = date(2026, 10, 1), date(2026, 11, 1)  # reading day 1
RESIDENTIAL = Tariffs().get("cn-residential")
COMMERCIAL = Tariffs().get("commercial-tou")
COMMERCIAL_FILE = Path(COMMERCIAL.source)


def midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=TZ).astimezone(UTC)


def kwh(t: datetime, scale: float | Callable[[datetime], float] = 1.0) -> float:
    """True energy of the interval ending at t."""
    scale = scale(t) if callable(scale) else scale
    hour = ((t - STEP).astimezone(TZ).hour * 60 + (t - STEP).astimezone(TZ).minute) / 60
    return round(scale * (0.1 + 0.4 * math.exp(-0.5 * ((hour - 19) / 2) ** 2)), 6)


def meter_series(meter: str, first: date, end: date, period_of: Callable[[datetime], str],
                 base: float = 1000.0,
                 scale: float | Callable[[datetime], float] = 1.0, intervals: bool = True,
                 skip_frozen: set[date] | None = None) -> tuple[list[Reading], dict[str, float]]:
    """Interval total register reads, and frozen daily total + tariff registers at each
    local midnight; returns the reads and the true energy per period."""
    out: list[Reading] = []
    regs = {p: base * 0.25 for p in PERIODS}
    total = base
    truth = {p: 0.0 for p in PERIODS}
    t = midnight(first)
    end_ts = midnight(end)
    while True:
        local = t.astimezone(TZ)
        if local.hour == 0 and local.minute == 0 and local.date() not in (skip_frozen or set()):
            out.append(Reading(meter, "1-0:1.8.0", t, round(total, 4), "kWh",
                               kind=ReadKind.FROZEN_DAILY))
            for i, p in enumerate(PERIODS):
                out.append(Reading(meter, f"1-0:1.8.{i + 1}", t, round(regs[p], 4), "kWh",
                                   kind=ReadKind.FROZEN_DAILY))
        if intervals:
            out.append(Reading(meter, "1-0:1.8.0", t, round(total, 4), "kWh"))
        if t >= end_ts:
            return out, truth
        t += STEP
        e = kwh(t, scale)
        p = period_of(t - STEP)
        regs[p] += e
        total += e
        truth[p] += e


def residential_calendar(t: datetime) -> str:
    return RESIDENTIAL.period_at(t.astimezone(TZ)).name


def commercial_calendar(t: datetime) -> str:
    return COMMERCIAL.period_at(t.astimezone(TZ)).name


async def setup(store: Any, points: list[tuple[str, str, list[Reading]]],
                **billing: Any) -> Biller:
    await store.upsert_meters([Meter(m, "dlt645", "bus1", f"{n:012d}")
                               for n, (m, _, _) in enumerate(points)])
    await store.upsert_service_points(
        [ServicePoint(f"sp-{m}", f"acct-{m}", tariff, "S01") for m, tariff, _ in points],
        [MeterAssignment(f"sp-{m}", m) for m, _, _ in points])
    for _, _, reads in points:
        await store.write_readings(reads)
    settings = BillingSettings(segments={"S01": 1}, **billing)
    return Biller(store, settings, VeeSettings(), TZ)


def priced(truth: dict[str, float], tariff: Any, day: date) -> float:
    prices = {p.name: p.price for p in tariff.season_of(day).periods}
    return sum(round(truth[p] * prices[p], 2) for p in prices)


async def test_an_all_actual_bill_bills_the_true_energy_per_period_and_is_released(
        store: Any) -> None:
    reads, truth = meter_series("m1", FIRST, END, residential_calendar)
    biller = await setup(store, [("m1", "cn-residential", reads)])
    run = await biller.run(CYCLE)
    assert (run.points, run.released, run.held) == (1, 1, 0), run.summary()
    (bill,) = run.bills
    assert bill.status is BillStatus.RELEASED and bill.quality == "A"
    assert bill.kwh == pytest.approx(sum(truth.values()), abs=0.01)
    (part,) = bill.determinants["parts"]
    assert part["tou_source"] == "registers"
    for p in ("peak", "valley"):
        assert part["tou"][p] == pytest.approx(truth[p], abs=0.01)
        assert part["tou_check"][p]["ok"]
    assert bill.amount == pytest.approx(priced(truth, RESIDENTIAL, FIRST), abs=0.02)
    cited = part["meters"][0]["end"]["1-0:1.8.2"]
    assert (cited["source"], cited["quality"], cited["version"]) == ("frozen daily", "A", 0)
    assert cited["at"] == midnight(END).isoformat()


async def test_rerunning_a_cycle_writes_nothing(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, residential_calendar)
    biller = await setup(store, [("m1", "cn-residential", reads)])
    await biller.run(CYCLE)
    again = await biller.run(CYCLE)
    assert (again.unchanged, len(again.bills)) == (1, 0)
    assert len(await store.bills(CYCLE.name, all_versions=True)) == 1


async def test_a_released_bill_changes_only_by_a_correction_with_its_reason(
        store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, residential_calendar)
    biller = await setup(store, [("m1", "cn-residential", reads)])
    (first,) = (await biller.run(CYCLE)).bills
    end_read = first.determinants["parts"][0]["meters"][0]["end"]["1-0:1.8.0"]["value"]
    await store.write_versions([ValueVersion(
        "m1", "1-0:1.8.0", midnight(END), end_read + 1.0, Quality.SUBSTITUTED, "74", "71",
        "clerk", "register re-read on site", kind=ReadKind.FROZEN_DAILY)])
    silent = await biller.run(CYCLE)
    assert silent.refused == ["sp-m1"] and not silent.bills
    assert "--correct" in silent.summary()
    fixed = await biller.run(CYCLE, correction="re-read on site")
    (second,) = fixed.bills
    assert (second.version, second.correction) == (2, "re-read on site")
    assert second.kwh == pytest.approx((first.kwh or 0) + 1.0, abs=0.001)
    history = await store.bills(CYCLE.name, all_versions=True)
    assert [(b.version, b.status) for b in history] == [
        (1, BillStatus.SUPERSEDED), (2, second.status)]


async def test_a_meter_on_another_calendar_than_its_tariff_is_held(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, commercial_calendar)  # four-rate meter
    biller = await setup(store, [("m1", "cn-residential", reads)])
    (bill,) = (await biller.run(CYCLE)).bills
    assert bill.status is BillStatus.HELD
    assert "tou_mismatch" in {h.code for h in bill.holds}


async def test_registers_disagreeing_with_the_intervals_hold_the_bill(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, residential_calendar)
    at = midnight(END)
    bent = [Reading(r.meter_id, r.quantity, r.ts, r.value + (5 if r.quantity == "1-0:1.8.2"
                                                              else -5), r.unit, kind=r.kind)
            if r.ts == at and r.kind is ReadKind.FROZEN_DAILY
            and r.quantity in ("1-0:1.8.2", "1-0:1.8.4") else r for r in reads]
    biller = await setup(store, [("m1", "cn-residential", bent)])
    (bill,) = (await biller.run(CYCLE)).bills
    assert [h.code for h in bill.holds] == ["tou_mismatch", "tou_mismatch"]
    assert "intervals summed over the calendar" in bill.holds[0].detail


async def test_a_commercial_bill_charges_the_cycles_maximum_demand(store: Any) -> None:
    peak = midnight(date(2026, 10, 17)) + timedelta(hours=19, minutes=15)
    reads, truth = meter_series("m1", FIRST, END, commercial_calendar,
                                scale=lambda t: 30.0 if t == peak else 20.0)
    biller = await setup(store, [("m1", "commercial-tou", reads)])
    (bill,) = (await biller.run(CYCLE)).bills
    intervals = sorted((r.ts, r.value) for r in reads if r.kind is ReadKind.INTERVAL)
    best = max(((b[1] - a[1]) * 4, b[0]) for a, b in itertools.pairwise(intervals))
    demand = bill.determinants["max_demand"]
    assert demand["kw"] == pytest.approx(best[0], abs=0.01)
    assert demand["at"] == best[1].isoformat() == peak.isoformat()
    lines = {line["item"]: line for line in bill.determinants["parts"][0]["charges"]}
    assert lines["demand"]["amount"] == pytest.approx(round(best[0], 4) * 38.0, abs=0.01)
    assert lines["standing charge"]["amount"] == 20.0
    energy = priced(truth, COMMERCIAL, FIRST)
    assert bill.amount == pytest.approx(energy + lines["demand"]["amount"] + 20.0, abs=0.05)


@pytest.mark.parametrize("split", ["prorate", "whole"])
async def test_a_demand_charge_across_a_tariff_change_follows_the_tariffs_split_rule(
        store: Any, tmp_path: Any, split: str) -> None:
    shipped = COMMERCIAL_FILE.read_text()
    text = (shipped[:shipped.index("[demand]")].replace('name = "commercial-tou"',
                                                        'name = "commercial-new"')
            + f'[demand]\nprice_per_kw = 40.0\nsplit = "{split}"\n')
    (tmp_path / "commercial-new.toml").write_text(text)
    peak = midnight(date(2026, 10, 5)) + timedelta(hours=19, minutes=15)  # in the first part
    reads, _ = meter_series("m1", FIRST, END, commercial_calendar,
                            scale=lambda t: 30.0 if t == peak else 20.0)
    biller = await setup(store, [("m1", "commercial-tou", reads)],
                         tariff_dirs=(str(tmp_path),))
    await store.record_tariff_change(TariffChange("sp-m1", "commercial-new", date(2026, 10, 16)))
    (bill,) = (await biller.run(CYCLE)).bills
    first, last = ({line["item"]: line for line in p["charges"]}
                   for p in bill.determinants["parts"])
    top = bill.determinants["max_demand"]["kw"]
    own = [p["demand"]["kw"] for p in bill.determinants["parts"]]
    assert own[0] == pytest.approx(top) and own[1] < top
    if split == "whole":
        # The cycle's maximum once, at the later tariff's price; none on the first part.
        assert "demand" not in first
        assert last["demand"]["quantity"] == pytest.approx(top, abs=1e-3)
        assert last["demand"]["price"] == 40.0
    else:
        # Each part its own maximum times its share of the cycle's 31 days.
        assert first["demand"]["quantity"] == pytest.approx(own[0] * 15 / 31, abs=1e-3)
        assert last["demand"]["quantity"] == pytest.approx(own[1] * 16 / 31, abs=1e-3)
        assert (first["demand"]["price"], last["demand"]["price"]) == (38.0, 40.0)


async def test_annual_tiers_add_their_price_beyond_each_step(store: Any) -> None:
    reads, truth = meter_series("m1", FIRST, END, residential_calendar, scale=10)
    biller = await setup(store, [("m1", "cn-residential", reads)])
    (bill,) = (await biller.run(CYCLE)).bills
    total = sum(truth.values())
    assert total > 4800  # crosses both steps in one cycle
    lines = {line["item"]: line for line in bill.determinants["parts"][0]["charges"]}
    assert lines["tier 2 adder"]["quantity"] == pytest.approx(4800 - 2880)
    assert lines["tier 3 adder"]["quantity"] == pytest.approx(total - 4800, abs=0.01)
    assert lines["tier 3 adder"]["price"] == 0.30
    assert bill.determinants["parts"][0]["tier_year"] == "2026-01-01"


async def test_a_tariff_change_splits_the_bill_and_holds_it(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, commercial_calendar)
    biller = await setup(store, [("m1", "commercial-tou", reads)])
    await store.record_tariff_change(TariffChange("sp-m1", "cn-residential", date(2026, 10, 16)))
    (bill,) = (await biller.run(CYCLE)).bills
    parts = bill.determinants["parts"]
    assert [(p["from"], p["to"], p["tariff"]) for p in parts] == [
        ("2026-10-01", "2026-10-16", "commercial-tou"),
        ("2026-10-16", "2026-11-01", "cn-residential")]
    assert parts[1]["why"] == "tariff change to cn-residential"
    assert "tariff_changed" in {h.code for h in bill.holds}
    # The second part is on a four-rate meter billed two-rate: held for that too.
    assert "tou_mismatch" in {h.code for h in bill.holds}
    with pytest.raises(Refused):
        await store.record_tariff_change(TariffChange("nobody", "x", date(2026, 10, 1)))


async def test_a_replacement_bills_both_meters_with_their_multipliers(store: Any) -> None:
    swap = date(2026, 10, 11)
    old, truth_old = meter_series("m1", FIRST, swap, residential_calendar)
    new, truth_new = meter_series("m2", swap, END, residential_calendar, base=0.0)
    biller = await setup(store, [("m1", "cn-residential", old)])
    await store.upsert_meters([Meter("m2", "dlt645", "bus1", "000000000009")])
    await store.write_readings(new)
    old_final = max(r.value for r in old if r.quantity == "1-0:1.8.0")
    await store.record_replacement("m1", "m2", midnight(swap), old_final, 0.0, multiplier=2.0)
    (bill,) = (await biller.run(CYCLE)).bills
    expected = sum(truth_old.values()) + 2 * sum(truth_new.values())
    assert bill.kwh == pytest.approx(expected, abs=0.02)
    meters = bill.determinants["parts"][0]["meters"]
    assert [(m["meter"], m["multiplier"]) for m in meters] == [("m1", 1.0), ("m2", 2.0)]
    assert meters[0]["end"]["1-0:1.8.0"]["source"] == "swap read"
    assert "meter_replaced" in {h.code for h in bill.holds}


async def test_a_day_vee_holds_holds_the_bill_with_the_rule(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, residential_calendar)
    biller = await setup(store, [("m1", "cn-residential", reads)])
    await store.write_verdicts([Verdict("m1", date(2026, 10, 7), "spike", False, {"slots": 3})])
    (bill,) = (await biller.run(CYCLE)).bills
    assert bill.status is BillStatus.HELD
    assert bill.holds[0].code == "vee" and "2026-10-07 (spike)" in bill.holds[0].detail


async def test_a_missing_end_read_holds_the_bill_without_an_amount(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, residential_calendar, intervals=False,
                            skip_frozen={END})
    biller = await setup(store, [("m1", "cn-residential", reads)])
    (bill,) = (await biller.run(CYCLE)).bills
    assert (bill.kwh, bill.amount, bill.status) == (None, None, BillStatus.HELD)
    assert bill.holds[0].code == "no_read" and "2026-11-01 00:00" in bill.holds[0].detail


async def test_review_holds_a_doubling_against_history_and_a_zero(store: Any) -> None:
    reads, _ = meter_series("m1", date(2026, 5, 1), END, residential_calendar,
                            intervals=False,
                            scale=lambda t: 2.5 if t > midnight(FIRST) else 1.0)
    still, _ = meter_series("m2", FIRST, END, residential_calendar, scale=0.0)
    biller = await setup(store, [("m1", "cn-residential", reads),
                                 ("m2", "cn-residential", still)])
    for m in range(6, 11):
        await biller.run(Cycle.parse(f"2026-{m:02d}"), points=["sp-m1"])
    run = await biller.run(CYCLE)
    by_point = {b.service_point_id: b for b in run.bills}
    assert [h.code for h in by_point["sp-m1"].holds] == ["high"]
    assert "trailing 5 cycles" in by_point["sp-m1"].holds[0].detail
    assert [h.code for h in by_point["sp-m2"].holds] == ["zero"]


async def test_a_held_bill_is_released_by_a_named_person_once(store: Any) -> None:
    reads, _ = meter_series("m1", FIRST, END, commercial_calendar)
    biller = await setup(store, [("m1", "cn-residential", reads)])
    (bill,) = (await biller.run(CYCLE)).bills
    done = await store.release_bill(bill.id, "li.wei", "calendar reprogrammed next visit")
    assert (done.status, done.released_by, done.note) == (
        BillStatus.RELEASED, "li.wei", "calendar reprogrammed next visit")
    with pytest.raises(Refused, match="not held"):
        await store.release_bill(bill.id, "li.wei", "again")
    assert [b.status for b in await store.bills(status=BillStatus.HELD)] == []
