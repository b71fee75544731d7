"""The binary float8[] reader: what array_send writes, read in place."""

from __future__ import annotations

import struct

import pytest

from storage.postgres.arrays import float8_array


def array_send(values: list[float | None]) -> bytes:
    """The layout PostgreSQL's array_send writes for a one-dimensional float8[]."""
    has_nulls = int(any(v is None for v in values))
    out = struct.pack(">iiiii", 1, has_nulls, 701, len(values), 1)
    for v in values:
        out += struct.pack(">i", -1) if v is None else struct.pack(">id", 8, v)
    return out


def test_a_float8_array_reads_back_value_for_value() -> None:
    values = [0.0, 1.5, -2.25, 1e300, 123456.78]
    assert float8_array(array_send(values)).tolist() == values


def test_an_empty_array_is_no_values() -> None:
    assert float8_array(struct.pack(">iii", 0, 0, 701)).tolist() == []


def test_an_array_with_nulls_or_of_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match="without nulls"):
        float8_array(array_send([1.0, None]))
    with pytest.raises(ValueError, match="element type 23"):
        float8_array(struct.pack(">iiiii", 1, 0, 23, 1, 1) + struct.pack(">ii", 4, 7))
