"""NEM12 (AEMO's meter data file format, MDFF) from validated interval data.

One 100 header, then per data stream a 200 record (NMI = service point, suffix E1 for
import kWh, the meter id as serial) followed by a 300 record per day. A day whose
intervals all share one quality carries it on the 300 record (`A`, or `E15`, `S17`:
quality flag and method); otherwise the 300 says `V` and 400 records give each run of
intervals its own quality, method and reason. 900 ends the file. Lines are yielded one
at a time so an export of any size streams.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime
from itertools import groupby

from collector.exports.streams import Interval, StreamDay
from model import Quality

SUFFIX = "E1"
"""Import (consumption) kWh, first element: the usual suffix for general supply."""


def quality_method(i: Interval) -> str:
    if i.quality is Quality.ACTUAL:
        return "A"
    if i.quality is Quality.NULL:
        return "N"
    method = i.method if i.method.isdigit() and len(i.method) == 2 else ""
    return f"{i.quality}{method}"


def header(created: datetime, sender: str, receiver: str) -> str:
    return f"100,NEM12,{created:%Y%m%d%H%M},{sender[:10]},{receiver[:10]}"


def stream_header(day: StreamDay, interval_minutes: int) -> str:
    return (f"200,{day.nmi[:10]},{SUFFIX},1,{SUFFIX},N1,{day.meter[:12]},kWh,"
            f"{interval_minutes},")


def _values(day: StreamDay) -> str:
    row = day.values.tolist()
    if day.qualities is None:  # all actual, no null: one C-level format for the day
        return (",".join(["%.3f"] * len(row))) % tuple(row)
    return ",".join("" if v != v else f"{v:.3f}" for v in row)


def day_records(day: StreamDay, updated: datetime) -> Iterator[str]:
    values = _values(day)
    stamp = f"{updated:%Y%m%d%H%M%S}"
    if day.qualities is None:
        yield f"300,{day.day:%Y%m%d},{values},A,,,{stamp},"
        return
    flags = [(quality_method(i), "" if i.quality is Quality.ACTUAL else i.reason or "0")
             for i in day.intervals]
    if len(set(flags)) == 1:
        qm, reason = flags[0]
        yield f"300,{day.day:%Y%m%d},{values},{qm},{reason},,{stamp},"
        return
    yield f"300,{day.day:%Y%m%d},{values},V,,,{stamp},"
    k = 1
    for (qm, reason), run in groupby(flags):
        n = len(list(run))
        yield f"400,{k},{k + n - 1},{qm},{reason},"
        k += n


async def nem12_lines(days: AsyncIterator[StreamDay], interval_minutes: int,
                      created: datetime, sender: str = "MCOLLECTOR",
                      receiver: str = "BILLING") -> AsyncIterator[str]:
    """The file's lines, without line ends, in the order the days come (by stream)."""
    yield header(created, sender, receiver)
    current: tuple[str, str] | None = None
    async for day in days:
        if (day.nmi, day.meter) != current:
            current = (day.nmi, day.meter)
            yield stream_header(day, interval_minutes)
        for line in day_records(day, created):
            yield line
    yield "900"


def joined(lines: Iterable[str]) -> str:
    return "".join(f"{line}\n" for line in lines)
