"""The data parity port: each `data diff` run's summary per table, as the gate, `progress`, the
admin API and the metrics read it.

Pure: dataclasses and a Protocol, no I/O. Rules every adapter keeps: runs are insert-only; each
table keeps its newest KEEP_RUNS_PER_TABLE runs (older ones are dropped on insert), so the table
is bounded however often `data diff` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

KEEP_RUNS_PER_TABLE = 100


@dataclass(frozen=True, slots=True)
class DataRun:
    """One table's result of one `data diff` run."""

    table: str
    finished_at: float
    seconds: float
    rows_legacy: int
    rows_new: int
    missing_in_new: int
    missing_in_legacy: int
    different: int
    # False: stopped by --max-differences or --max-seconds; the counts are lower bounds.
    complete: bool

    @property
    def differences(self) -> int:
        return self.missing_in_new + self.missing_in_legacy + self.different

    def to_json(self) -> dict[str, object]:
        return {
            "table": self.table,
            "finished_at": self.finished_at,
            "seconds": self.seconds,
            "rows_legacy": self.rows_legacy,
            "rows_new": self.rows_new,
            "missing_in_new": self.missing_in_new,
            "missing_in_legacy": self.missing_in_legacy,
            "different": self.different,
            "complete": self.complete,
        }


@dataclass(frozen=True, slots=True)
class DataStatus:
    """A table's newest run, and its newest complete one (which may be the same)."""

    last: DataRun
    last_complete: DataRun | None


class DataStore(Protocol):
    def add_data_run(self, run: DataRun) -> None:
        """Keep one table's run summary (and drop that table's runs past the newest
        KEEP_RUNS_PER_TABLE)."""
        ...

    def data_runs(self, table: str, *, limit: int = 20) -> list[DataRun]:
        """One table's runs, newest first."""
        ...

    def data_statuses(self) -> dict[str, DataStatus]:
        """Every table that was ever diffed, by name."""
        ...
