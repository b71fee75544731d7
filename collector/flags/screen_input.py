"""The consumption files `collector screen` reads, as blocks of customers × periods.

Utilities export what their billing system holds: a wide CSV with one column per day or
per month, a long `id,date,kwh` listing, or Parquet of either shape. All become the same
thing here, a calendar of periods (days or months, told apart by the dates' spacing) and
row blocks of kWh on it, NaN where a period is missing. A wide CSV is read a block of
rows at a time, so 50,000 customers × 1,000 days never sits in memory as text; the long
form and Parquet are pivoted in memory (a long file has no row order to stream by).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from collector.errors import CollectorError

F64 = NDArray[np.float64]
DATE_FORMATS = ("%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d", "%d/%m/%Y", "%m/%d/%Y",
                "%d.%m.%Y", "%d-%m-%Y", "%d-%b-%Y", "%d %b %Y", "%b %d %Y", "%Y-%m",
                "%Y/%m", "%Y%m", "%m/%Y", "%b %Y", "%Y-%m-%d %H:%M:%S")
CHUNK = 2000
MAX_SPAN_DAYS = 40 * 366
"""A header whose dates span more than this holds a mistyped year, not 40 years of data."""
MONTHLY_GAP_DAYS = 27
"""Dates this far apart (the median gap) are billing months, not days."""
LONG_NAMES = ({"id", "customer", "cons_no", "account"}, {"date", "day", "month", "period"},
              {"kwh", "value", "consumption", "energy"})


class ScreenError(CollectorError):
    """A file screen cannot read, with what is wrong and how to fix it."""


@dataclass
class Chunk:
    ids: list[str]
    block: F64
    """rows × calendar periods, NaN where missing."""
    extras: dict[str, list[str]] = field(default_factory=dict)
    """The row's cells in the file's columns that are not periods (e.g. an inspection
    date named by --as-of)."""


@dataclass
class Source:
    path: Path
    unit: str
    """'D' (days) or 'M' (months)."""
    calendar: NDArray[Any]
    """Consecutive periods as numpy datetime64 of `unit`, first to last in the file."""
    chunks: Callable[[], Iterator[Chunk]]
    total: int
    encoding: str = "utf-8"
    ignored: list[str] = field(default_factory=list)
    bad_cells: int = 0
    long_rows: int = 0
    duplicates: int = 0


def parse_dates(header: Sequence[str]) -> tuple[list[int], list[date], list[str]]:
    """(column indices, dates, ignored names) of a wide header after its id column: one
    format must read every date column, so 03/04/2016 is never read two ways within one
    file. The format is chosen on a sample of columns, then applied once to each: linear
    in the number of columns."""
    names = [(i, h.strip()) for i, h in enumerate(header[1:], start=1)]
    fmt = best_format([n for _, n in names[:64]])
    cols, days, ignored = [], [], []
    for i, name in names:
        day = as_date(name, fmt)
        if day is None:
            ignored.append(header[i])
        else:
            cols.append(i)
            days.append(day)
    return cols, days, ignored


def best_format(sample: Sequence[str]) -> str:
    return max(DATE_FORMATS, key=lambda f: sum(as_date(n, f) is not None for n in sample))


def as_date(text: str, fmt: str) -> date | None:
    try:
        return datetime.strptime(text.strip(), fmt).date()
    except ValueError:
        return None


def calendar_of(path: Path, days: Sequence[date]) -> tuple[str, NDArray[Any], NDArray[np.int64]]:
    """(unit, calendar, each date's position on it). Two dates in one month of a monthly
    file would be summed or lost silently: that is refused instead."""
    span = (max(days) - min(days)).days
    if span > MAX_SPAN_DAYS:
        raise ScreenError(f"{path}: the dates run from {min(days)} to {max(days)} "
                          f"({span} days); more than {MAX_SPAN_DAYS} days means a mistyped "
                          "year")
    distinct = np.unique(np.array(days, dtype="datetime64[D]"))
    gaps = np.diff(distinct).astype(int)
    unit = "M" if len(gaps) and float(np.median(gaps)) >= MONTHLY_GAP_DAYS else "D"
    stamps = np.array(days, dtype=f"datetime64[{unit}]")
    calendar = np.arange(stamps.min(), stamps.max() + 1)
    position = (stamps - calendar[0]).astype(np.int64)
    if unit == "M" and len(np.unique(position)) < len(np.unique(distinct)):
        raise ScreenError(f"{path}: the dates are a month apart, so each is a billing "
                          "month, but two of them fall in the same month; give one value "
                          "per customer and month")
    return unit, calendar, position


BOMS = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
FALLBACKS = ("utf-8", "gb18030", "latin-1")


def detect_encoding(path: Path) -> str:
    """UTF-8 (with or without BOM), UTF-16 by its BOM or its NULs, else GB18030 (a superset
    of GBK, the usual export encoding in China), else Latin-1, which reads any bytes."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    for bom, name in BOMS:
        if head.startswith(bom):
            return name
    if head[1:200:2].count(0) > 50:
        return "utf-16-le"
    for name in FALLBACKS:
        try:
            head.decode(name)
        except UnicodeDecodeError as exc:
            if exc.start >= len(head) - 4 and name != "latin-1":
                return name  # a character cut at the sample's end, not a bad byte
            continue
        return name
    return "latin-1"


def csv_rows(path: Path, encoding: str) -> Iterator[list[str]]:
    with path.open(newline="", encoding=encoding, errors="strict") as f:
        reader = csv.reader(f)
        try:
            yield from reader
        except csv.Error as exc:
            raise ScreenError(f"{path}: line {reader.line_num}: {exc}; a quote left open "
                              "swallows the rest of the file: check that line") from None
        except UnicodeDecodeError as exc:
            raise ScreenError(f"{path}: not {encoding} text ({exc.reason} at byte "
                              f"{exc.start}); give the right one with --encoding") from None


def floats(raw: NDArray[Any]) -> tuple[F64, int]:
    """Cells as numbers, NaN for blanks; cells that are not numbers count as missing."""
    raw = raw.copy()
    raw[(raw == "") | (raw == "NA") | (raw == "NaN") | (raw == None)] = "nan"  # noqa: E711
    try:
        values = raw.astype(float)
        bad = 0
    except (ValueError, TypeError):
        flat = [_float(c) for c in raw.ravel()]
        bad = sum(1 for v in flat if v is None)
        values = np.array([np.nan if v is None else v for v in flat]).reshape(raw.shape)
    values[~np.isfinite(values)] = np.nan
    return values, bad


def _float(cell: Any) -> float | None:
    try:
        return float(cell)
    except (TypeError, ValueError):
        return None


def open_source(path: Path, encoding: str | None = None) -> Source:
    if path.suffix.lower() in (".parquet", ".pq"):
        return _parquet(path)
    enc = encoding or detect_encoding(path)
    header = next(csv_rows(path, enc), None)
    if not header:
        raise ScreenError(f"{path} is empty: expected a header row (id, then one column per "
                          "date) and a row per customer")
    if any(as_date(header[0], f) for f in DATE_FORMATS):
        raise ScreenError(f"{path}: the first column {header[0]!r} is a date, so there is no "
                          "id column; put each customer's id in the first column")
    cols, days, ignored = parse_dates(header)
    if cols:
        return _wide_csv(path, enc, header, cols, days, ignored)
    if _is_long(header, path, enc):
        rows = csv_rows(path, enc)
        next(rows)
        ids, dates, values = [], [], []
        for row in rows:
            if len(row) >= 3 and row[0].strip():
                ids.append(row[0].strip())
                dates.append(row[1])
                values.append(row[2])
        source = _pivot(path, ids, _dates(path, dates), np.array(values, dtype=object), {})
        source.encoding = enc
        return source
    raise ScreenError(f"{path}: no column header reads as a date; expected the id column, "
                      "then one column per day or month such as 2016-01-31 (wide), or rows "
                      "of id,date,kwh (long)")


def _is_long(header: list[str], path: Path, enc: str) -> bool:
    names = [h.strip().lower() for h in header[:3]]
    if len(names) == 3 and all(n in group for n, group in zip(names, LONG_NAMES, strict=True)):
        return True
    rows = csv_rows(path, enc)
    next(rows)
    first = next(rows, None)
    return bool(first and len(first) >= 3 and any(as_date(first[1], f) for f in DATE_FORMATS))


def _dates(path: Path, texts: Sequence[str]) -> list[date]:
    distinct = sorted(set(texts))
    fmt = best_format(distinct[:64])
    parsed = {t: as_date(t, fmt) for t in distinct}
    bad = [t for t, d in parsed.items() if d is None]
    if bad:
        raise ScreenError(f"{path}: {len(bad)} dates do not read as {fmt!r} like the others, "
                          f"e.g. {bad[0]!r}; give every date in one format")
    return [parsed[t] for t in texts]  # type: ignore[misc]


def _wide_csv(path: Path, enc: str, header: list[str], cols: list[int], days: list[date],
              ignored: list[str]) -> Source:
    unit, calendar, position = calendar_of(path, days)
    extra_cols = [i for i in range(1, len(header)) if i not in set(cols)]
    width = len(header)
    total = sum(1 for _ in csv_rows(path, enc)) - 1
    source = Source(path, unit, calendar, lambda: iter(()), total, enc, ignored)

    def chunks() -> Iterator[Chunk]:
        rows = csv_rows(path, enc)
        next(rows)
        batch: list[list[str]] = []
        for row in rows:
            if row and any(cell.strip() for cell in row):
                batch.append(row)
            if len(batch) >= CHUNK:
                yield flush(batch)
                batch = []
        if batch:
            yield flush(batch)

    def flush(batch: list[list[str]]) -> Chunk:
        raw = np.array([[(r[c] if c < len(r) else "") for c in cols] for r in batch],
                       dtype=object)
        values, bad = floats(raw)
        source.bad_cells += bad
        source.long_rows += sum(1 for r in batch if len(r) > width)
        block = np.full((len(batch), len(calendar)), np.nan)
        block[:, position] = values
        extras = {header[i].strip(): [(r[i] if i < len(r) else "") for r in batch]
                  for i in extra_cols}
        return Chunk([r[0] for r in batch], block, extras)

    source.chunks = chunks
    return source


def _pivot(path: Path, ids: Sequence[str], dates: Sequence[date], cells: NDArray[Any],
           extras: dict[str, dict[str, str]]) -> Source:
    """Long rows (id, period, kWh) onto a customers × periods block; a repeated
    (customer, period) keeps its last value and is counted."""
    if not ids:
        raise ScreenError(f"{path} has a header but no customer rows")
    unit, calendar, position = calendar_of(path, dates)
    order = {c: i for i, c in enumerate(dict.fromkeys(ids))}
    row = np.array([order[c] for c in ids], dtype=np.int64)
    values, bad = floats(cells)
    block = np.full((len(order), len(calendar)), np.nan)
    block[row, position] = values
    duplicates = len(ids) - len(np.unique(row * len(calendar) + position))
    customers = list(order)
    source = Source(path, unit, calendar, lambda: iter(()), len(customers),
                    bad_cells=bad, duplicates=duplicates)

    def chunks() -> Iterator[Chunk]:
        for at in range(0, len(customers), CHUNK):
            part = customers[at:at + CHUNK]
            yield Chunk(part, block[at:at + CHUNK],
                        {name: [col.get(c, "") for c in part] for name, col in extras.items()})

    source.chunks = chunks
    return source


def _parquet(path: Path) -> Source:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ScreenError(f"{path}: reading Parquet needs pyarrow: pip install "
                          "'meter-collector[parquet]' (or give the file as CSV)") from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise ScreenError(f"{path}: not a Parquet file this can read ({exc})") from None
    names = table.column_names
    if not names:
        raise ScreenError(f"{path} has no columns")
    lower = [n.strip().lower() for n in names]
    if len(names) >= 3 and all(n in g for n, g in zip(lower[:3], LONG_NAMES, strict=True)):
        ids = [str(v) for v in table.column(0).to_pylist()]
        raw_dates = table.column(1).to_pylist()
        dates = [d.date() if isinstance(d, datetime) else d for d in raw_dates]
        if not all(isinstance(d, date) for d in dates):
            dates = _dates(path, [str(d) for d in raw_dates])
        cells = np.array(table.column(2).to_pylist(), dtype=object)
        return _pivot(path, ids, dates, cells, {})
    cols, days, ignored = parse_dates(names)
    if not cols:
        raise ScreenError(f"{path}: no column is named as a date and the first three are "
                          "not id, date, kwh; expected a wide or a long table")
    ids = [str(v) for v in table.column(0).to_pylist()]
    matrix = np.column_stack([np.array(table.column(i).to_pylist(), dtype=object)
                              for i in cols])
    long_ids = [c for c in ids for _ in cols]
    long_dates = [d for _ in ids for d in days]
    extras = {names[i]: dict(zip(ids, (("" if v is None else str(v))
                                       for v in table.column(i).to_pylist()), strict=True))
              for i in range(1, len(names)) if names[i] in ignored}
    source = _pivot(path, long_ids, long_dates, matrix.ravel(), extras)
    source.ignored = ignored
    return source
