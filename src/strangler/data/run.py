"""`data diff` over the configured tables: open both databases once, plan and diff each table,
and hand each finished table to `record` before the next starts.

Rules: a table that can't be planned or read is reported as an error and is not recorded (its
last good summary stays the one the gate reads); the other tables still run. Both databases are
closed before returning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from strangler.config import DataConfig, DataTableConfig
from strangler.data.diff import Limits, ProgressCallback, TableDiff, TableResult
from strangler.data.engines import Database, DataSourceError, open_database
from strangler.data.plan import DataPlanError, build_plan


@dataclass(slots=True)
class RunOutcome:
    results: list[TableResult] = field(default_factory=list)
    # (table, reason) for each table that could not be diffed.
    errors: list[tuple[str, str]] = field(default_factory=list)


def select_tables(data: DataConfig, names: Sequence[str]) -> list[DataTableConfig]:
    """The configured tables named (all when none is); ValueError naming an unknown one."""
    if not names:
        return list(data.tables)
    known = {table.name: table for table in data.tables}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"no table {', '.join(map(repr, unknown))} under data.tables "
            f"(configured: {', '.join(known)})"
        )
    return [known[name] for name in names]


def run_diff(
    data: DataConfig,
    source: str | Path,
    tables: Sequence[DataTableConfig],
    limits: Limits,
    *,
    on_progress: ProgressCallback | None = None,
    record: Callable[[TableResult], None] | None = None,
) -> RunOutcome:
    outcome = RunOutcome()
    pool_size = max(1, limits.concurrency) + 1
    opened: list[Database] = []
    try:
        try:
            legacy = open_database("legacy", data.legacy.url, source=source, pool_size=pool_size)
            opened.append(legacy)
            new = open_database("new", data.new.url, source=source, pool_size=pool_size)
            opened.append(new)
        except DataSourceError as exc:
            outcome.errors.extend((table.name, str(exc)) for table in tables)
            return outcome
        for table in tables:
            try:
                plan = build_plan(table, data, legacy, new)
                result = TableDiff(plan, limits, on_progress=on_progress).run()
            except (DataSourceError, DataPlanError) as exc:
                outcome.errors.append((table.name, str(exc)))
                continue
            if record is not None:
                record(result)
            outcome.results.append(result)
    finally:
        for db in opened:
            db.close()
    return outcome
