"""The data watch port: where `strangler data watch` stands in the legacy change stream, and the
keys it found drifted (still different on new `max_lag_s` after a change on legacy).

Pure: dataclasses and a Protocol, no I/O. Rules every adapter keeps:
- `save_watch` writes the stream's position, the drift changes and the tables' counters in one
  transaction: a restart resumes from a position whose keys' outcomes are all kept, so no change
  is missed, and a drift that was kept is updated in place (same `first_seen`), never reported
  twice.
- A table keeps at most KEEP_DRIFT_PER_TABLE drift records: resolved ones are dropped first
  (oldest first); past the cap, new open drift is counted in `untracked`, not kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

KEEP_DRIFT_PER_TABLE = 1000
# Open drift records a table's status carries (the oldest), for `progress` and the admin API.
DRIFT_SAMPLES = 10


@dataclass(frozen=True, slots=True)
class Drift:
    """One key that differed on new after `max_lag_s`, with both values (redacted)."""

    table: str
    key: str  # the key as JSON: a value, or a list for a composite key
    kind: str  # "missing_in_new", "missing_in_legacy" or "different"
    # Legacy column name -> [legacy value, new value] (text, null, or "[FILTERED]").
    columns: dict[str, list[str | None]]
    first_seen: float
    last_checked: float
    resolved_at: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key": self.key,
            "kind": self.kind,
            "columns": self.columns,
            "first_seen": self.first_seen,
            "last_checked": self.last_checked,
            "resolved_at": self.resolved_at,
        }


@dataclass(frozen=True, slots=True)
class DriftUpdate:
    """What one conclusive check found for a key: `drift` (kind and columns) or None (equal:
    an open record of the key is resolved)."""

    table: str
    key: str
    checked_at: float
    kind: str | None = None
    columns: dict[str, list[str | None]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TableWatchDelta:
    """Counters one save adds to a table's watch state."""

    table: str
    checked: int  # conclusive checks
    lag_s: float | None  # the newest check's time from the change's commit (None: no check)
    checked_at: float | None


@dataclass(frozen=True, slots=True)
class WatchStatus:
    """A table's watch state as the gate, `progress`, the admin API and the metrics read it."""

    table: str
    checked: int
    lag_s: float | None
    last_checked_at: float | None
    open_drift: int
    example_key: str | None  # one open drift key (the oldest), for messages
    untracked: int  # open drift past KEEP_DRIFT_PER_TABLE, counted and not kept
    untracked_at: float | None  # when the newest of those was counted
    samples: tuple[Drift, ...] = ()  # the oldest DRIFT_SAMPLES open drift records

    def to_json(self) -> dict[str, Any]:
        return {
            "checked": self.checked,
            "lag_s": self.lag_s,
            "last_checked_at": self.last_checked_at,
            "open_drift": self.open_drift,
            "example_key": self.example_key,
            "untracked": self.untracked,
            "drift": [
                {key: value for key, value in sample.to_json().items() if key != "table"}
                for sample in self.samples
            ],
        }


@dataclass(frozen=True, slots=True)
class WatchPosition:
    """Where a stream's handled changes end (JSON: an LSN, or a binlog file and position)."""

    stream: str
    position: str
    updated_at: float


class DataWatchStore(Protocol):
    def watch_position(self, stream: str) -> WatchPosition | None:
        """The stream's last confirmed position; None before the first save."""
        ...

    def watch_positions(self) -> list[WatchPosition]:
        """Every stream's position, by stream."""
        ...

    def save_watch(
        self,
        stream: str,
        position: str,
        drift: list[DriftUpdate],
        tables: list[TableWatchDelta],
        now: float,
    ) -> None:
        """In one transaction: apply each drift update (insert or update the key's record, or
        resolve it), add the tables' counters, and set the stream's position."""
        ...

    def forget_watch(self, stream: str) -> None:
        """Drop the stream's position (its slot was dropped: the next watch starts anew)."""
        ...

    def watch_statuses(self) -> dict[str, WatchStatus]:
        """Every table the watch has checked or found drift in, by name."""
        ...

    def drift(
        self, table: str | None = None, *, is_open: bool = True, limit: int = 100
    ) -> list[Drift]:
        """Drift records, oldest first (`is_open`: the unresolved ones only)."""
        ...
