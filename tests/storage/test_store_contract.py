"""The storage contract: every backend must behave exactly like this."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from model import (
    CollectionAttempt,
    Event,
    Flag,
    IngestResult,
    Meter,
    Outcome,
    Quality,
    Reading,
)
from storage.base import Store

T0 = datetime(2026, 11, 1, tzinfo=UTC)
FWD = "1-0:1.8.0"


def reading(meter: str, minutes: int, value: float, quality: Quality = Quality.ACTUAL,
            quantity: str = FWD) -> Reading:
    return Reading(meter, quantity, T0 + timedelta(minutes=minutes), value, "kWh", quality,
                   source="test", method="17" if quality is Quality.ESTIMATED else "")


async def test_replaying_a_batch_changes_nothing(store: Store) -> None:
    batch = [reading("m1", 15 * i, 100 + i) for i in range(96)]
    assert await store.write_readings(batch) == IngestResult(new=96)
    assert await store.write_readings(batch) == IngestResult(unchanged=96)
    assert await store.count_readings() == 96


async def test_an_actual_read_replaces_an_estimate(store: Store) -> None:
    await store.write_readings([reading("m1", 15, 10.0, Quality.ESTIMATED)])
    result = await store.write_readings([reading("m1", 15, 11.5)])
    assert result == IngestResult(updated=1)
    (got,) = await store.series("m1", FWD, T0, T0 + timedelta(hours=1))
    assert (got.value, got.quality, got.method) == (11.5, Quality.ACTUAL, "")


async def test_an_estimate_never_overwrites_an_actual(store: Store) -> None:
    await store.write_readings([reading("m1", 15, 11.5)])
    result = await store.write_readings([reading("m1", 15, 10.0, Quality.ESTIMATED)])
    assert result == IngestResult(unchanged=1)
    (got,) = await store.series("m1", FWD, T0, T0 + timedelta(hours=1))
    assert (got.value, got.quality) == (11.5, Quality.ACTUAL)


async def test_a_corrected_actual_updates_and_counts_as_updated(store: Store) -> None:
    await store.write_readings([reading("m1", 15, 11.5), reading("m1", 30, 12.0)])
    result = await store.write_readings([reading("m1", 15, 11.6), reading("m1", 30, 12.0),
                                         reading("m1", 45, 12.4)])
    assert result == IngestResult(new=1, updated=1, unchanged=1)


async def test_the_last_value_for_a_key_within_one_batch_wins(store: Store) -> None:
    result = await store.write_readings([reading("m1", 15, 1.0), reading("m1", 15, 2.0)])
    assert result.new == 1 and result.total == 2
    (got,) = await store.series("m1", FWD, T0, T0 + timedelta(hours=1))
    assert got.value == 2.0


async def test_latest_readings_give_each_quantity_its_newest_value(store: Store) -> None:
    await store.write_readings(
        [reading("m1", 15, 1.0), reading("m1", 30, 2.0), reading("m2", 15, 7.0),
         reading("m1", 15, 0.5, quantity="1-0:2.8.0")]
    )
    latest = {(r.meter_id, r.quantity): r.value for r in await store.latest_readings()}
    assert latest == {("m1", FWD): 2.0, ("m2", FWD): 7.0, ("m1", "1-0:2.8.0"): 0.5}
    only_m2 = await store.latest_readings(["m2"])
    assert [r.meter_id for r in only_m2] == ["m2"]


async def test_series_is_ordered_inclusive_and_timezone_aware(store: Store) -> None:
    await store.write_readings([reading("m1", 15 * i, float(i)) for i in (3, 1, 2, 5)])
    got = await store.series("m1", FWD, T0 + timedelta(minutes=15), T0 + timedelta(minutes=45))
    assert [r.value for r in got] == [1.0, 2.0, 3.0]
    assert all(r.ts.tzinfo is not None and r.ts.utcoffset() == timedelta(0) for r in got)


async def test_a_source_and_method_first_seen_after_a_read_come_back_by_name(
        store: Store) -> None:
    first = reading("m1", 15, 1.0)
    await store.write_readings([first])
    assert [r.source for r in await store.series("m1", FWD, T0, T0 + timedelta(hours=1))] == [
        "test"]
    later = Reading("m1", FWD, T0 + timedelta(minutes=30), 2.0, "kWh", Quality.ESTIMATED,
                    source="q1376:dc07:day", method="21")
    await store.write_readings([later])
    got = await store.series("m1", FWD, T0, T0 + timedelta(hours=1))
    assert [(r.source, r.method) for r in got] == [("test", ""), ("q1376:dc07:day", "21")]


async def test_events_are_idempotent_on_meter_time_and_kind(store: Store) -> None:
    event = Event("m1", T0, "cover_open", {"count": 1})
    assert await store.write_events([event]) == 1
    assert await store.write_events([event]) == 0


async def test_collection_summary_per_meter_bus_and_area(store: Store) -> None:
    await store.upsert_meters([Meter("m1", "dlt645", "b1", "1", area="A"),
                               Meter("m2", "dlt645", "b1", "2", area="A"),
                               Meter("m3", "dlt645", "b2", "3", area="B")])
    attempts = []
    for i in range(4):
        ts = T0 + timedelta(minutes=15 * i)
        attempts.append(CollectionAttempt("m1", "b1", ts, Outcome.OK, 10.0))
        attempts.append(CollectionAttempt("m2", "b1", ts, Outcome.TIMEOUT if i else Outcome.OK,
                                          30.0, "no reply" if i else ""))
        attempts.append(CollectionAttempt("m3", "b2", ts, Outcome.ERROR if i == 3 else Outcome.OK,
                                          20.0, "bad checksum" if i == 3 else ""))
    await store.write_attempts(attempts)
    end = T0 + timedelta(days=1)
    by_meter = {r.group: r for r in await store.collection_summary(T0, end, by="meter")}
    assert (by_meter["m2"].attempts, by_meter["m2"].ok, by_meter["m2"].timeouts) == (4, 1, 3)
    assert by_meter["m2"].last_error == "no reply"
    assert by_meter["m1"].success_rate == 1.0
    by_bus = {r.group: r for r in await store.collection_summary(T0, end, by="bus")}
    assert (by_bus["b1"].attempts, by_bus["b1"].ok) == (8, 5)
    by_area = {r.group: r for r in await store.collection_summary(T0, end, by="area")}
    assert (by_area["B"].ok, by_area["B"].errors) == (3, 1)
    assert by_area["A"].avg_latency_ms == 20.0


async def load_dst_days(store: Store) -> datetime:
    """Hourly registers across Europe/Berlin's autumn change (2026-10-25 has 25 hours):
    m1 +1 kWh/h, m2 +0.5 kWh/h, the area's transformer meter tx +2 kWh/h."""
    start = datetime(2026, 10, 23, 22, tzinfo=UTC)  # 24 Oct 00:00 CEST
    await store.upsert_meters([Meter("m1", "dlt645", "b1", "1", area="A"),
                               Meter("m2", "dlt645", "b1", "2", area="A"),
                               Meter("tx", "dlt645", "b1", "9", area="A", is_area_meter=True)])
    rows = []
    for h in range(0, 24 * 3 + 2):
        ts = start + timedelta(hours=h)
        rows += [Reading("m1", FWD, ts, 1000.0 + h, "kWh"),
                 Reading("m2", FWD, ts, 50.0 + 0.5 * h, "kWh"),
                 Reading("tx", FWD, ts, 9000.0 + 2 * h, "kWh")]
    await store.write_readings(rows)
    return start


async def test_daily_consumption_has_25_hours_on_the_autumn_dst_day(store: Store) -> None:
    start = await load_dst_days(store)
    end = start + timedelta(days=3)
    daily = {(r.subject, r.day): r.kwh
             for r in await store.daily_consumption(start, end, tz="Europe/Berlin")}
    assert daily[("m1", "2026-10-24")] == 24.0
    assert daily[("m1", "2026-10-25")] == 25.0
    assert daily[("m2", "2026-10-25")] == 12.5
    area = {(r.subject, r.day): r.kwh
            for r in await store.daily_consumption(start, end, by="area", tz="Europe/Berlin")}
    assert area[("A", "2026-10-25")] == 37.5  # customers only, not the transformer meter


async def test_dead_letters_keep_the_raw_bytes_and_the_reason(store: Store) -> None:
    await store.write_dead_letter("mqtt:gw1/readings", b"\xff{not json", "not UTF-8 JSON")
    assert await store.dead_letters() == [("mqtt:gw1/readings", b"\xff{not json",
                                           "not UTF-8 JSON")]


async def test_a_flag_is_raised_once_and_again_only_after_it_is_cleared(store: Store) -> None:
    flag = Flag("m1", "stopped", "critical", T0, T0 + timedelta(hours=12), {"amps": 4.0}, "A")
    assert await store.raise_flags([flag, flag]) == 1
    assert await store.raise_flags([flag]) == 0
    (row,) = await store.list_flags(open_only=True)
    assert row.flag == flag and row.status == "open"
    assert await store.clear_flag(row.id)
    assert await store.list_flags(open_only=True) == []
    assert await store.raise_flags([flag]) == 1
    assert [r.flag.kind for r in await store.list_flags(kind="stopped", area="A")] == [
        "stopped", "stopped"]
