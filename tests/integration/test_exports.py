"""NEM12 and CSV exports on both stores; NEM12 read back through nemreader, an
independent parser, value for value and flag for flag."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from nemreader import read_nem_file

from collector.exports.nem12 import nem12_lines
from collector.exports.streams import standard_midnight, stream_days
from model import Meter, MeterAssignment, Quality, Reading, ServicePoint, ValueVersion

TZ = ZoneInfo("Australia/Sydney")  # a zone with DST: NEM12 days stay 96 intervals
STEP = timedelta(minutes=15)
DAYS = (date(2026, 10, 3), date(2026, 10, 4))  # 4 Oct 2026 is Sydney's DST start day
CREATED = datetime(2026, 10, 6, 1, 2, 3, tzinfo=UTC)


async def seeded(store: Any) -> dict[tuple[str, datetime], float]:
    """Two meters on two service points; m2 has a gap VEE filled and a null."""
    await store.upsert_meters([Meter(m, "dlt645", "bus1", f"{n:012d}")
                               for n, m in enumerate(("m1", "m2"))])
    await store.upsert_service_points(
        [ServicePoint("NMI0000001", "A1", "cn-residential", "S01"),
         ServicePoint("NMI0000002", "A2", "cn-residential", "S01")],
        [MeterAssignment("NMI0000001", "m1", multiplier=2.0),
         MeterAssignment("NMI0000002", "m2")])
    start = standard_midnight(DAYS[0], TZ)
    reads, truth = [], {}
    for m in ("m1", "m2"):
        value = 100.0
        for k in range(2 * 96 + 1):
            t = start + k * STEP
            if m == "m2" and k in (10, 11, 12, 50):
                value += 0.25
                continue  # a gap
            reads.append(Reading(m, "1-0:1.8.0", t, round(value, 2), "kWh"))
            truth[(m, t)] = round(value, 2)
            value += 0.25 + 0.01 * (k % 7)
    await store.write_readings(reads)
    await store.write_versions(
        [ValueVersion("m2", "1-0:1.8.0", start + k * STEP, truth[("m2", start + 9 * STEP)]
                      + 0.3 * (k - 9), Quality.ESTIMATED, "17", "79", "vee:estimate", "")
         for k in (10, 11, 12)]
        + [ValueVersion("m2", "1-0:1.8.0", start + 50 * STEP, None, Quality.NULL, "", "0",
                        "vee:estimate", "")])
    return truth


async def test_a_nem12_export_reads_back_through_nemreader_value_for_value(
        store: Any, tmp_path: Path) -> None:
    await seeded(store)
    days = stream_days(store, ["m1", "m2"], DAYS[0], DAYS[1], TZ, STEP)
    out = tmp_path / "export.csv"
    with out.open("w") as f:
        async for line in nem12_lines(days, 15, CREATED):
            f.write(line + "\n")
    parsed = read_nem_file(str(out))
    assert set(parsed.readings) == {"NMI0000001", "NMI0000002"}
    ours = [d async for d in stream_days(store, ["m1", "m2"], DAYS[0], DAYS[1], TZ, STEP)]
    by_key = {(d.nmi, d.start + k * STEP): i for d in ours for k, i in enumerate(d.intervals)}
    for nmi, suffixes in parsed.readings.items():
        got = suffixes["E1"]
        assert len(got) == 2 * 96  # the DST day too: NEM12 days are standard time
        for r in got:
            naive_midnight = datetime(r.t_start.year, r.t_start.month, r.t_start.day)
            start = standard_midnight(r.t_start.date(), TZ) + (r.t_start - naive_midnight)
            mine = by_key[(nmi, start)]
            if mine.value is None:
                assert r.read_value is None and r.quality_method == "N"
            else:
                assert r.read_value == pytest.approx(round(mine.value, 3), abs=1e-9)
                expected = "A" if mine.quality is Quality.ACTUAL else f"{mine.quality}{mine.method}"
                assert r.quality_method == expected
    m1 = parsed.readings["NMI0000001"]["E1"]
    assert m1[0].read_value == pytest.approx(0.25 * 2.0)  # the assignment's multiplier
    m2 = parsed.readings["NMI0000002"]["E1"]
    assert [r.quality_method for r in m2[8:13]] == ["A", "E17", "E17", "E17", "E17"]
    assert m2[49].quality_method == "N" and m2[50].quality_method == "N"
    assert m2[50].read_value is None
    assert not m2[8].event_code and m2[9].event_code == "0"
    assert out.read_text().splitlines()[0] == "100,NEM12,202610060102,MCOLLECTOR,BILLING"
    assert out.read_text().splitlines()[-1] == "900"
