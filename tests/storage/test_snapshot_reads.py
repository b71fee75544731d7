"""A bulk read sees one state of the store, however many statements it takes.

VEE, billing, the exports and the API read current values as several statements (the
series, the raw reads, the later versions, the method names). Run each in its own
snapshot and a series or a method created by a concurrent write between two of them is
in one result and not the other: the demo's VEE pass crashed on exactly that
(`KeyError` in the SQLite store's current rows).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from model import Quality, Reading, ValueVersion
from storage.versions import ValidatedStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)
END = T0 + timedelta(days=1)
FWD = "1-0:1.8.0"
SLOTS = 8
WRITES = 30
"""A fixed amount of writing, so the reads' work is bounded too: a writer that ran
until the reader was done made each read bigger than the last, and on a busy machine
the test took minutes."""


def estimates(n: int) -> list[ValueVersion]:
    """A series never seen before, and a method never seen before, in one write."""
    return [ValueVersion(f"v{n:04d}", FWD, T0 + timedelta(minutes=15 * k), float(k),
                         Quality.ESTIMATED, method=f"M{n}", reason="gap", actor="vee:auto")
            for k in range(SLOTS)]


def raw_reads(n: int) -> list[Reading]:
    return [Reading(f"r{n:04d}", FWD, T0 + timedelta(minutes=15 * k), float(k), "kWh",
                    Quality.ACTUAL, source=f"src{n}") for k in range(SLOTS)]


async def write_all(store: ValidatedStore, read_round: asyncio.Event,
                    reader_gone: asyncio.Event) -> int:
    """Each write waits for a round of reads to finish, so the next write and the next
    round run side by side every time, however the machine schedules them."""
    for n in range(WRITES):
        await store.write_versions(estimates(n))
        await store.write_readings(raw_reads(n))
        await read_round.wait()
        if reader_gone.is_set():
            return n + 1
        read_round.clear()
    return WRITES


def whole(counts: dict[str, int], what: str) -> None:
    """Each meter a write made is there with all its values or not at all."""
    torn = {m: c for m, c in counts.items() if c != SLOTS}
    assert not torn, f"{what} saw part of a write: {torn}"


async def test_bulk_reads_see_one_snapshot_while_new_series_and_versions_land(
    store: ValidatedStore,
) -> None:
    await store.write_readings(raw_reads(9999))
    read_round, reader_gone = asyncio.Event(), asyncio.Event()
    writer = asyncio.create_task(write_all(store, read_round, reader_gone))
    rounds = 0
    try:
        while not writer.done():
            rounds += 1
            current = await store.current_values(FWD, T0, END)
            counts: dict[str, int] = {}
            for v in current:
                counts[v.meter_id] = counts.get(v.meter_id, 0) + 1
            whole(counts, "current_values")

            arrays = await store.current_arrays(FWD, T0, END)
            whole({m: len(range(*arrays.rows(m).indices(len(arrays))))
                   for m in arrays.meter_ids}, "current_arrays")
            assert all(arrays.methods[int(i)] is not None for i in arrays.method)

            for meter in sorted(counts)[-2:]:
                history = await store.value_history(meter, FWD, T0, END)
                assert len(history) == SLOTS, meter
            read_round.set()
            await asyncio.sleep(0)
    finally:
        reader_gone.set()
        read_round.set()
        made = await writer
    assert rounds >= WRITES  # the reads above ran while writes landed
    final = await store.current_arrays(FWD, T0, END)
    assert len(final.meter_ids) == 2 * made + 1
