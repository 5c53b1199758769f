"""Check single keys of a planned table on both sides: the rows spelled canonically as `data diff`
spells them (the plan's SQL), compared by `bisect.compare_rows`.

Rules: keys are looked up by plain equality, so each database uses its index, then filtered
exactly in Python (a case-insensitive MySQL collation may match more than the key). A key absent
on both sides (deleted on both, or filtered out by `where`) is equal. Integer keys reach the SQL
as integers; every other value is a bound parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from strangler.data.bisect import Difference, Key, Row, compare_rows
from strangler.data.plan import SidePlan, TablePlan

# Keys per query: a short statement that each database answers from its index.
KEYS_PER_QUERY = 200


def key_of(plan: TablePlan, values: Sequence[Any]) -> Key | None:
    """A key from a change stream's values (text from pgoutput, Python values from the binlog)
    as `data diff` types it; None when a value is missing or does not parse."""
    key: list[int | str] = []
    for given, is_text in zip(values, plan.key_is_text, strict=True):
        if given is None:
            return None
        value = given.decode("utf-8", "replace") if isinstance(given, bytes | bytearray) else given
        if is_text:
            key.append(str(value))
            continue
        try:
            key.append(int(value))
        except (TypeError, ValueError):
            return None
    return tuple(key)


def fetch_rows(plan: TablePlan, side: SidePlan, keys: Sequence[Key]) -> dict[Key, Row]:
    """The rows of `keys` on one side, canonically spelled, by key."""
    found: dict[Key, Row] = {}
    for start in range(0, len(keys), KEYS_PER_QUERY):
        found.update(_fetch(plan, side, keys[start : start + KEYS_PER_QUERY]))
    return found


def _fetch(plan: TablePlan, side: SidePlan, keys: Sequence[Key]) -> dict[Key, Row]:
    params: dict[str, Any] = {}
    if plan.has_integer_key:
        condition = f"{side.keys[0]} IN ({', '.join(str(int(key[0])) for key in keys)})"
    else:
        alternatives = []
        for number, key in enumerate(keys):
            parts = []
            for index, (column, value) in enumerate(zip(side.keys, key, strict=True)):
                name = f"k{number}_{index}"
                params[name] = value
                parts.append(f"{column} = :{name}")
            alternatives.append(f"({' AND '.join(parts)})")
        condition = " OR ".join(alternatives)
    age = side.age or "NULL"
    sql = (
        f"SELECT {', '.join([*side.keys, *side.values, age])} "
        f"FROM {side.table}{side.filters(f'({condition})')}"
    )
    wanted = set(keys)
    width = len(side.keys)
    rows: dict[Key, Row] = {}
    for row in side.db.fetch(sql, params):
        found = key_of(plan, row[:width])
        if found is None or found not in wanted:
            continue
        values = tuple(None if value is None else str(value) for value in row[width:-1])
        rows[found] = Row(values, None if row[-1] is None else str(row[-1]))
    return rows


def check_keys(plan: TablePlan, keys: Sequence[Key]) -> dict[Key, Difference]:
    """The keys of `keys` that differ between legacy and new, with their difference."""
    legacy = fetch_rows(plan, plan.legacy, keys)
    new = fetch_rows(plan, plan.new, keys)
    found, _ = compare_rows(legacy, new, plan.columns, is_young=lambda _age: False)
    return {difference.key: difference for difference in found}
