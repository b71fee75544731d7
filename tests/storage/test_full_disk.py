"""A gateway's disk fills up, and an operator frees a little: the store commits again at
once. Left as it was, every retry's frames went into the WAL, the WAL took the freed
room within seconds and nothing committed until more was freed (issue 28: 749 KB freed
on a 3 MB disk, 40 s without a commit). Tested on a real 3 MB tmpfs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from model import Reading
from storage.base import StorageUnavailable
from storage.sqlite import SqliteStore

T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(disk)],
                             capture_output=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def batch(n: int) -> list[Reading]:
    return [Reading(f"m{i:03d}", "1-0:1.8.0", T0 + timedelta(minutes=15 * n), float(n), "kWh")
            for i in range(100)]


async def test_freeing_a_little_space_on_a_full_disk_lets_writes_commit_again(
        small_disk: Path) -> None:
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 1024 * 1024)
    store = SqliteStore(str(small_disk / "gw.db"), outbox=True)
    await store.migrate()
    n = 0
    with pytest.raises(StorageUnavailable, match="full"):
        while n < 10_000:
            await store.write_readings(batch(n))
            n += 1
    with filler.open("r+b") as f:
        f.truncate(1024 * 1024 - 749 * 1024)
    # The backlog of a gateway's outage arrives as one large write: more pages than the
    # freed room holds twice over, but far fewer than the WAL gives back once folded in.
    backlog = [r for k in range(n, n + 40) for r in batch(k)]
    await store.write_readings(backlog)  # commits at the first try
    assert await store.count_readings() == 100 * n + len(backlog)
    await store.close()
