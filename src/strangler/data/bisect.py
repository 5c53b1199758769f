"""Checksum bisection, the pure part: key-range segments, how one splits, and how the rows of a
segment small enough to fetch are compared.

Pure: no I/O, no clock. The idea is data-diff's (datafold/data-diff, "How it works"): equal
checksums over a key range mean equal rows there with overwhelming probability (60-bit sums of
MD5 prefixes); only ranges whose checksums differ are split, until they are small enough to
compare row by row.

Keys are tuples of ints and strs. Python orders them as the SQL in engines.py does: ints by
value, strs by codepoint (= UTF-8 byte order), tuples lexicographically.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

Key = tuple[int | str, ...]

# Segments are split into this many parts (data-diff's default bisection factor is 32; 16
# keeps the CASE that buckets text keys short).
SPLIT_FACTOR = 16
# A differing segment with at most this many rows on its larger side is fetched and compared
# row by row: one fetch of 1,000 narrow rows costs about what one more aggregate query does.
FETCH_ROWS = 1000


class DiffKind(enum.Enum):
    MISSING_IN_NEW = "missing_in_new"
    MISSING_IN_LEGACY = "missing_in_legacy"
    DIFFERENT = "different"


@dataclass(frozen=True, slots=True)
class Segment:
    """The keys in [low, high): None is open on that end."""

    low: Key | None
    high: Key | None

    def __repr__(self) -> str:
        return f"<Segment [{self.low}, {self.high})>"


@dataclass(frozen=True, slots=True)
class Checksum:
    """A segment's row count and the sum of its rows' 60-bit hashes, on one side."""

    count: int
    total: int


EMPTY = Checksum(0, 0)


@dataclass(frozen=True, slots=True)
class Row:
    """A fetched row: its canonical values (in the plan's column order) and its age text."""

    values: tuple[str | None, ...]
    age: str | None = None


@dataclass(frozen=True, slots=True)
class Difference:
    kind: DiffKind
    key: Key
    # For DIFFERENT: the columns (legacy names) whose values differ -> (legacy, new).
    columns: Mapping[str, tuple[str | None, str | None]]


def integer_parts(segment: Segment, low: int, high: int, parts: int) -> list[Segment]:
    """[low, high) cut into at most `parts` ranges of equal width (the last may be shorter);
    the outer ends stay those of `segment`, so rows outside [low, high) are not lost."""
    if high <= low:
        return [segment]
    width = integer_width(low, high, parts)
    cuts = list(range(low + width, high, width))
    return split_at(segment, [(cut,) for cut in cuts])


def integer_width(low: int, high: int, parts: int) -> int:
    """The width of each of `parts` ranges that cover [low, high): ceil((high - low) / parts)."""
    return max(1, -(-(high - low) // max(1, parts)))


def split_at(segment: Segment, cuts: Iterable[Key]) -> list[Segment]:
    """`segment` cut at each key of `cuts` strictly inside it (others are dropped)."""
    inside = sorted(
        {
            cut
            for cut in cuts
            if (segment.low is None or cut > segment.low)
            and (segment.high is None or cut < segment.high)
        }
    )
    edges: list[Key | None] = [segment.low, *inside, segment.high]
    return [Segment(a, b) for a, b in itertools.pairwise(edges)]


def compare_rows(
    legacy: Mapping[Key, Row],
    new: Mapping[Key, Row],
    columns: Sequence[str],
    *,
    is_young: Callable[[str | None], bool],
) -> tuple[list[Difference], int]:
    """The differences between one segment's rows, in key order, and how many differing rows
    were left unjudged because one side's copy is younger than `min_age_s` (is_young)."""
    found: list[Difference] = []
    deferred = 0
    for key in sorted(legacy.keys() | new.keys()):
        before, after = legacy.get(key), new.get(key)
        if before is not None and after is not None:
            if before.values == after.values:
                continue
            changed = {
                name: (a, b)
                for name, a, b in zip(columns, before.values, after.values, strict=True)
                if a != b
            }
            difference = Difference(DiffKind.DIFFERENT, key, changed)
        elif before is not None:
            difference = Difference(DiffKind.MISSING_IN_NEW, key, {})
        else:
            difference = Difference(DiffKind.MISSING_IN_LEGACY, key, {})
        if any(row is not None and is_young(row.age) for row in (before, after)):
            deferred += 1
            continue
        found.append(difference)
    return found, deferred
