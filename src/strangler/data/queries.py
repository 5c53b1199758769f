"""The queries of a data diff, one side at a time: each is one statement the database answers
by itself (an aggregate, a grouped aggregate, a sample of keys, or a small segment's rows), so
no row crosses the wire until a segment is small.

Rules: integers are written into the SQL (they come from the database or from arithmetic on
them); every other value from the data is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strangler.data.bisect import Checksum, Key, Row, Segment
from strangler.data.engines import split_name
from strangler.data.plan import SidePlan, TablePlan


def _number(value: Any) -> int:
    return 0 if value is None else int(value)


class SideQueries:
    """The queries of one table on one side."""

    def __init__(self, plan: TablePlan, side: SidePlan) -> None:
        self.plan = plan
        self.side = side

    def _bound(self, key: Key, prefix: str, params: dict[str, Any]) -> str:
        dialect = self.side.db.dialect
        if self.plan.has_integer_key:
            return str(int(key[0]))
        parts = []
        for index, (value, is_text) in enumerate(zip(key, self.plan.key_is_text, strict=True)):
            name = f"{prefix}{index}"
            params[name] = value
            parts.append(dialect.param_cmp(name, is_text=is_text))
        return f"({', '.join(parts)})"

    def _key(self) -> str:
        cmps = self.side.key_cmps
        return cmps[0] if self.plan.has_integer_key else f"({', '.join(cmps)})"

    def _range(self, segment: Segment, params: dict[str, Any]) -> list[str]:
        conditions = []
        if segment.low is not None:
            conditions.append(f"{self._key()} >= {self._bound(segment.low, 'lo', params)}")
        if segment.high is not None:
            conditions.append(f"{self._key()} < {self._bound(segment.high, 'hi', params)}")
        return conditions

    def _where(self, segment: Segment, params: dict[str, Any]) -> str:
        return self.side.filters(*self._range(segment, params))

    def key_range(self) -> tuple[int, int] | None:
        """(min, max) of an integer key, None for an empty table. Two index lookups."""
        key = self.side.keys[0]
        rows = self.side.db.fetch(
            f"SELECT MIN({key}), MAX({key}) FROM {self.side.table}{self.side.filters()}"
        )
        low, high = rows[0]
        return None if low is None else (int(low), int(high))

    def estimate(self) -> int | None:
        """The table's row count as the database's statistics guess it (no scan)."""
        db = self.side.db
        sql = db.dialect.estimate_sql()
        if sql is None:
            return None
        schema, name = split_name(self.side.name)
        rows = db.fetch(sql, {"schema": schema, "table": name, "qualified": self.side.table})
        return _number(rows[0][0]) if rows and rows[0][0] is not None else None

    def checksum(self, segment: Segment) -> Checksum:
        params: dict[str, Any] = {}
        dialect = self.side.db.dialect
        sql = (
            f"SELECT COUNT(*), {dialect.hash_sum(self.side.row_hash)} "
            f"FROM {self.side.table}{self._where(segment, params)}"
        )
        count, total = self.side.db.fetch(sql, params)[0]
        return Checksum(_number(count), _number(total))

    def integer_buckets(self, segment: Segment, low: int, width: int) -> dict[int, Checksum]:
        """Checksums of the ranges [low + i*width, low + (i+1)*width) within `segment`, by i,
        in one scan (ranges without rows are left out)."""
        bucket = self.side.db.dialect.int_bucket(self.side.keys[0], low, width)
        return self._grouped(bucket, segment, {})

    def boundary_buckets(self, segment: Segment, cuts: Sequence[Key]) -> dict[int, Checksum]:
        """Checksums of `segment` cut at the sorted keys `cuts`, by part, in one scan."""
        params: dict[str, Any] = {}
        cases = " ".join(
            f"WHEN {self._key()} < {self._bound(cut, f'c{index}_', params)} THEN {index}"
            for index, cut in enumerate(cuts)
        )
        bucket = f"(CASE {cases} ELSE {len(cuts)} END)" if cuts else "0"
        return self._grouped(bucket, segment, params)

    def _grouped(
        self, bucket: str, segment: Segment, params: dict[str, Any]
    ) -> dict[int, Checksum]:
        dialect = self.side.db.dialect
        sql = (
            f"SELECT b, COUNT(*), {dialect.hash_sum('h')} FROM ("
            f"SELECT {bucket} AS b, {self.side.row_hash} AS h "
            f"FROM {self.side.table}{self._where(segment, params)}) s GROUP BY b"
        )
        return {
            int(b): Checksum(_number(count), _number(total))
            for b, count, total in self.side.db.fetch(sql, params)
        }

    def sample_keys(self, segment: Segment, step: int) -> list[Key]:
        """Every `step`-th key of `segment` in key order: cut points for text and composite
        keys, whose values can't be split by arithmetic."""
        params: dict[str, Any] = {}
        selected = ", ".join(f"{key} AS k{index}" for index, key in enumerate(self.side.keys))
        names = ", ".join(f"k{index}" for index in range(len(self.side.keys)))
        sql = (
            f"SELECT {names} FROM (SELECT {selected}, ROW_NUMBER() OVER "
            f"(ORDER BY {', '.join(self.side.key_cmps)}) AS rn "
            f"FROM {self.side.table}{self._where(segment, params)}) s "
            f"WHERE rn % {max(1, int(step))} = 0"
        )
        return sorted(self._key_of(row) for row in self.side.db.fetch(sql, params))

    def rows(self, segment: Segment) -> dict[Key, Row]:
        """The rows of a small segment, canonically spelled, by key."""
        params: dict[str, Any] = {}
        side = self.side
        age = side.age or "NULL"
        sql = (
            f"SELECT {', '.join([*side.keys, *side.values, age])} "
            f"FROM {side.table}{self._where(segment, params)}"
        )
        width = len(side.keys)
        found: dict[Key, Row] = {}
        for row in side.db.fetch(sql, params):
            values = tuple(None if value is None else str(value) for value in row[width:-1])
            found[self._key_of(row[:width])] = Row(
                values, None if row[-1] is None else str(row[-1])
            )
        return found

    def _key_of(self, values: Sequence[Any]) -> Key:
        return tuple(
            _text(value) if is_text else int(value)
            for value, is_text in zip(values, self.plan.key_is_text, strict=True)
        )


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
