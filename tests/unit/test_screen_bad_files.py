"""`collector screen` on the files a new user actually has: each a message, none a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collector.flags.screening import ScreenError, parse_dates, screen_file

ROOT = Path(__file__).resolve().parents[2]
GOOD = "id,2016-01-01,2016-01-02,2016-01-03,2016-01-04\nc1,1,2,3,4\nc2,2,2,2,2\n"


def write(tmp_path: Path, text: str | bytes, name: str = "f.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.mark.parametrize(("content", "message"), [
    ("", "is empty"),
    ("id,2016-01-01,2016-01-02\n", "no customer rows"),
    ("2016-01-01,2016-01-02,2016-01-03\n1,2,3\n", "no id column"),
    ("id,1816-01-01,2016-01-02\nc1,1,2\n", "mistyped year"),
    ("id,name,address\nc1,x,y\n", "no column header reads as a date"),
    ('id,2016-01-01\nc1,"' + "x" * 200_000 + "\n", "line"),
])
def test_a_broken_file_is_a_clear_message(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ScreenError, match=message):
        screen_file(write(tmp_path, content), None)


def test_non_numeric_cells_and_ragged_rows_are_counted_not_fatal(tmp_path: Path) -> None:
    text = "id,2016-01-01,2016-01-02,2016-01-03\nc1,1,abc,3\nc2,2\nc3,1,2,3,4,5\n"
    result = screen_file(write(tmp_path, text), None)
    assert result.rows == 3 and result.bad_cells == 1 and result.long_rows == 1


@pytest.mark.parametrize("encoding", ["gbk", "utf-16"])
def test_gbk_and_utf16_are_detected(tmp_path: Path, encoding: str) -> None:
    result = screen_file(write(tmp_path, GOOD.replace("c1", "客户1").encode(encoding)), None)
    assert result.rows == 2
    assert "客户1" in {row_id for row_id, _, _ in result.top}


def test_latin1_reads_with_the_encoding_given_and_is_never_a_traceback(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace("c1", "Müller").encode("latin-1"))
    # Latin-1 bytes are also valid GB18030: detection reads the file and says which it
    # chose; --encoding makes the ids right.
    assert screen_file(path, None).rows == 2
    result = screen_file(path, None, encoding="latin-1")
    assert "Müller" in {row_id for row_id, _, _ in result.top}


def test_a_wide_header_parses_in_linear_time(tmp_path: Path) -> None:
    from datetime import date, timedelta

    header = ["id"] + [(date(2000, 1, 1) + timedelta(days=i)).isoformat()
                       for i in range(10_000)] * 10
    # 10^5 columns: the quadratic parse this replaced took minutes here.
    cols, days, ignored = parse_dates(header)
    assert len(cols) == 100_000 and not ignored and days[-1] == date(2027, 5, 18)


def test_the_cli_reports_a_bad_file_with_exit_code_2(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "collector.cli", "screen",
                           str(write(tmp_path, ""))], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 2
    assert "is empty" in done.stdout and "Traceback" not in done.stderr
