from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from collector.acquisition.clock import align_up
from collector.acquisition.scheduler import MeterHealth, next_slot
from collector.config.settings import Schedule
from model import Outcome

BERLIN = ZoneInfo("Europe/Berlin")


def test_interval_slots_align_to_the_wall_clock_not_to_start_up() -> None:
    t = datetime(2026, 11, 22, 10, 7, 31, tzinfo=UTC)
    assert align_up(t, timedelta(minutes=15)) == datetime(2026, 11, 22, 10, 15, tzinfo=UTC)


def test_a_time_on_a_boundary_is_its_own_slot_for_alignment_but_next_slot_moves_on() -> None:
    t = datetime(2026, 11, 22, 10, 15, tzinfo=UTC)
    s = Schedule("i", timedelta(minutes=15), ("1-0:1.8.0",))
    assert align_up(t, s.every) == t
    assert next_slot(s, t, BERLIN) == t + timedelta(minutes=15)


def test_daily_slot_follows_local_time_across_the_spring_dst_change() -> None:
    s = Schedule("d", timedelta(days=1), at=timedelta(minutes=5), frozen_days=1)
    before = datetime(2026, 3, 28, 23, 10, tzinfo=UTC)  # 00:10 CET on 29 March
    first = next_slot(s, before, BERLIN)
    second = next_slot(s, first, BERLIN)
    assert first.astimezone(BERLIN).strftime("%d %H:%M %Z") == "30 00:05 CEST"
    assert second - first == timedelta(days=1)
    # The night before DST, the gap in UTC is 23 hours.
    prior = next_slot(s, datetime(2026, 3, 28, 0, 0, tzinfo=UTC), BERLIN)
    assert first - prior == timedelta(hours=23)


def test_a_meter_silent_three_times_is_then_probed_with_growing_gaps() -> None:
    h = MeterHealth()
    slot = datetime(2026, 1, 1, tzinfo=UTC)
    every = timedelta(minutes=15)
    for _ in range(2):
        h.note(Outcome.TIMEOUT, slot, every)
    assert h.skip_until is None
    h.note(Outcome.TIMEOUT, slot, every)
    assert h.skip_until == slot + every
    h.note(Outcome.TIMEOUT, slot, every)
    assert h.skip_until == slot + 2 * every
    for _ in range(10):
        h.note(Outcome.TIMEOUT, slot, every)
    assert h.skip_until == slot + timedelta(hours=1)
    h.note(Outcome.OK, slot, every)
    assert h.skip_until is None and h.silent_in_a_row == 0


def test_a_meter_that_timed_out_is_not_tried_again_in_the_same_slot() -> None:
    h = MeterHealth()
    slot = datetime(2026, 1, 1, tzinfo=UTC)
    h.note(Outcome.TIMEOUT, slot, timedelta(minutes=15))
    assert h.silent_at == slot and h.skip_until is None


def test_an_offset_of_whole_hours_is_taken_for_a_time_zone_mismatch() -> None:
    from collector.runtime.daemon import looks_like_zone_error

    assert looks_like_zone_error(-28800.0)      # UTC configured, meters on UTC+8
    assert looks_like_zone_error(19800.4)       # +5:30
    assert not looks_like_zone_error(95.0)      # a clock drifting
    assert not looks_like_zone_error(2500.0)


def test_a_meter_silent_for_months_is_still_probed_every_hour_without_overflow() -> None:
    # The gap was every × 2**n before the cap: ~30 silent slots overflowed timedelta and
    # every job for the dead meter raised OverflowError (issue 28).
    health = MeterHealth()
    every = timedelta(minutes=15)
    slot = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(100_000):
        health.note(Outcome.TIMEOUT, slot, every)
        slot = health.skip_until or slot + every
    assert health.skip_until is not None and health.silent_at is not None
    assert health.skip_until - health.silent_at == timedelta(hours=1)
