"""The pure core of checksum bisection: how segments split, how small ones compare, and the
canonical spellings SQLite gets from Python (the other engines spell them in SQL)."""

from __future__ import annotations

import hashlib

import pytest

from strangler.data.bisect import (
    Difference,
    DiffKind,
    Row,
    Segment,
    compare_rows,
    integer_parts,
    split_at,
)
from strangler.data.sqlite_functions import canon_python, hash60


@pytest.mark.parametrize(
    ("segment", "low", "high", "parts", "expected"),
    [
        # The outer ends stay open: rows written past the measured range still belong somewhere.
        (Segment(None, None), 1, 101, 4, [None, 26, 51, 76, None]),
        (Segment((10,), (20,)), 10, 20, 16, [10, *range(11, 20), 20]),
        (Segment((10,), (11,)), 10, 11, 16, [10, 11]),
        (Segment((0,), (100,)), 0, 100, 3, [0, 34, 68, 100]),
    ],
)
def test_integer_ranges_split_into_equal_widths(
    segment: Segment, low: int, high: int, parts: int, expected: list[int | None]
) -> None:
    pieces = integer_parts(segment, low, high, parts)
    edges = [None if s.low is None else s.low[0] for s in pieces]
    last = pieces[-1].high
    assert [*edges, None if last is None else last[0]] == expected


def test_cuts_outside_a_segment_or_repeated_are_dropped() -> None:
    segment = Segment(("b",), ("m",))
    pieces = split_at(segment, [("a",), ("c",), ("c",), ("z",), ("b",), ("É",), ("é",)])
    # Codepoint order, as UTF-8 bytes sort: "É" (U+00C9) and "é" (U+00E9) come after "m".
    assert pieces == [Segment(("b",), ("c",)), Segment(("c",), ("m",))]


def test_rows_compare_by_key_and_name_the_columns_that_differ() -> None:
    legacy = {(1,): Row(("a", "1")), (2,): Row(("b", None)), (3,): Row(("c", "3"))}
    new = {(2,): Row(("b", "0")), (3,): Row(("c", "3")), (4,): Row(("d", "4"))}
    found, deferred = compare_rows(legacy, new, ["name", "n"], is_young=lambda age: False)
    assert deferred == 0
    assert found == [
        Difference(DiffKind.MISSING_IN_NEW, (1,), {}),
        Difference(DiffKind.DIFFERENT, (2,), {"n": (None, "0")}),
        Difference(DiffKind.MISSING_IN_LEGACY, (4,), {}),
    ]


def test_young_rows_are_not_judged() -> None:
    legacy = {
        (1,): Row(("a",), age="2026-01-01 00:00:59.000000"),
        (2,): Row(("b",), age="2020-01-01 00:00:00.000000"),
    }
    new = {(1,): Row(("x",), age="2026-01-01 00:00:00.000000")}
    found, deferred = compare_rows(
        legacy, new, ["name"], is_young=lambda age: age is not None and age > "2026-01-01 00:00:30"
    )
    assert (deferred, [d.key for d in found]) == (1, [(2,)])


@pytest.mark.parametrize(
    ("value", "kind", "zone", "expected"),
    [
        (None, "text", "UTC", None),
        (1, "boolean", "UTC", "1"),
        (2, "boolean", "UTC", "1"),
        (0, "boolean", "UTC", "0"),
        ("12.500", "decimal", "UTC", "12.5"),
        (12.0, "decimal", "UTC", "12"),
        ("0.00", "decimal", "UTC", "0"),
        (1.005, "decimal:2", "UTC", "1.01"),
        (-1.005, "decimal:2", "UTC", "-1.01"),
        (0.1 + 0.2, "float", "UTC", "0.3"),
        ("2024-05-01 10:00:01.25", "timestamp", "UTC", "2024-05-01 10:00:01.250000"),
        ("2024-05-01 12:00:00", "timestamp", "+02:00", "2024-05-01 10:00:00.000000"),
        ("2024-01-15 12:00:00", "timestamp", "Europe/Paris", "2024-01-15 11:00:00.000000"),
        ("2024-05-01T10:00:00+02:00", "timestamptz", "UTC", "2024-05-01 08:00:00.000000"),
        ("2024-05-01", "date", "UTC", "2024-05-01"),
        ("10:00:01.5", "time", "UTC", "10:00:01.500000"),
        (b"\x01\xab", "binary", "UTC", "01ab"),
        ("ü ☃", "text", "UTC", "ü ☃"),
    ],
)
def test_sqlite_spells_values_as_the_sql_engines_do(
    value: object, kind: str, zone: str, expected: str | None
) -> None:
    assert canon_python(value, kind, zone) == expected


def test_the_row_hash_is_the_first_60_bits_of_md5() -> None:
    # What MySQL's CONV(SUBSTRING(MD5(x), 1, 15), 16, 10) and PostgreSQL's bit(60) cast give.
    assert hash60("a") == 57446577476672362
    assert hash60("ü") == int(hashlib.md5("ü".encode()).hexdigest()[:15], 16)
