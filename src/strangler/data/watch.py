"""`data watch`: follow the legacy database's change stream and check each changed key on new.

A change source (watch_postgres.py: a logical replication slot; watch_binlog.py: the binlog)
yields the keys of changed rows and the stream position after each commit. Each key is checked
`lag_s` after its change committed, again every `lag_s` while it still differs, and is recorded
as drift (with both values, redacted) once it still differs at its deadline (`max_lag_s`).

Rules:
- Bounded: the stream is read only while the pending queue has room (watch_queue.py).
- The stream is confirmed (the slot advanced, the binlog position kept) only after the store
  kept the outcome of every key changed up to that position, in the same transaction as the
  position: a restart re-reads exactly the changes whose outcome was not kept, so none is missed
  and a drift kept before the restart is updated, not reported again.
- Open drift is checked again every `max_lag_s` (and once at the start): a key the sync job
  caught up on later is resolved.
- One thread; a database error ends the run (the caller reports it, exit 2) after the outcomes
  already known are kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from strangler.config import DataWatchConfig
from strangler.control.data_watch import (
    KEEP_DRIFT_PER_TABLE,
    DataWatchStore,
    DriftUpdate,
    TableWatchDelta,
)
from strangler.data.bisect import Difference, DiffKind, Key
from strangler.data.plan import TablePlan
from strangler.data.recheck import check_keys, key_of
from strangler.data.watch_queue import CommitLog, Pending, PendingKeys

# Keys checked per round (per table, one query per side per KEYS_PER_QUERY keys).
CHECK_BATCH = 1000
# Changes read per round: the queue's room bounds it too.
READ_BATCH = 5000
# Open drift re-checked per round of the periodic re-check.
DRIFT_RECHECK_LIMIT = 1000
# Commits taken per read beyond its changes: transactions of other tables (or, on the binlog,
# other databases) end a read too, so that it stays bounded.
COMMITS_PER_READ = 5000
Redact = Callable[[str, str | None], str | None]


@dataclass(frozen=True, slots=True)
class Change:
    """A row of a watched table changed (its key as `data diff` types it)."""

    table: str
    key: Key
    committed_at: float


@dataclass(frozen=True, slots=True)
class Truncated:
    """A watched table was truncated: the stream does not list the keys that went."""

    table: str


@dataclass(frozen=True, slots=True)
class Committed:
    """The end of a transaction: the stream may be confirmed up to `position` once its keys
    are handled."""

    position: str


Event = Change | Truncated | Committed


class ChangeSource(Protocol):
    """A legacy database's change stream, opened at its last confirmed position."""

    stream: str  # the store's name for it
    position: str  # where reading started (a confirmed position)
    notes: list[str]  # what the user should know before the run starts
    at_end: bool  # whether the last read stopped at the end of the stream (not at a limit)

    def read(self, limit: int) -> list[Event]:
        """The next events, with at most `limit` Changes and about COMMITS_PER_READ more
        commits; [] when nothing new has committed."""
        ...

    def confirm(self, position: str) -> None:
        """Everything up to `position` is handled (the store kept it)."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class WatchSummary:
    """What one run did; `--until-idle --json` prints it."""

    stream: str
    position: str
    changes: int = 0
    coalesced: int = 0
    checked: int = 0
    drift_found: int = 0
    resolved: int = 0
    # The most keys that waited at once: never more than `max_pending`.
    pending_high_water: int = 0
    checked_by_table: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "position": self.position,
            "changes": self.changes,
            "coalesced": self.coalesced,
            "checked": self.checked,
            "drift_found": self.drift_found,
            "resolved": self.resolved,
            "pending_high_water": self.pending_high_water,
            "checked_by_table": dict(sorted(self.checked_by_table.items())),
        }


def key_json(key: Key) -> str:
    """A key as the store keeps it: the value, or a list for a composite key."""
    return json.dumps(key[0] if len(key) == 1 else list(key), ensure_ascii=False)


class Watcher:
    """One run of `data watch`. Call `run()` once."""

    def __init__(
        self,
        source: ChangeSource,
        plans: Mapping[str, TablePlan],
        store: DataWatchStore,
        settings: DataWatchConfig,
        redact: Redact,
        *,
        clock: Callable[[], float] = time.time,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.source = source
        self.plans = plans
        self.store = store
        self.settings = settings
        self.redact = redact
        self.clock = clock
        self.echo = echo or (lambda _line: None)
        self.queue = PendingKeys(
            max_pending=settings.max_pending, lag_s=settings.lag_s, max_lag_s=settings.max_lag_s
        )
        self.commits = CommitLog()
        self.summary = WatchSummary(source.stream, source.position)
        self._seq = 0
        self._queued_in_transaction = False
        self._updates: list[DriftUpdate] = []
        self._deltas: dict[str, TableWatchDelta] = {}
        # The keys with kept open drift (at most KEEP_DRIFT_PER_TABLE per table): only their
        # equal checks need a write.
        self._open: set[tuple[str, str]] = set()

    def __repr__(self) -> str:
        return f"<Watcher {self.source.stream} at {self.summary.position}: {self.queue!r}>"

    def run(self, stop: threading.Event, *, until_idle: bool = False) -> WatchSummary:
        """Follow the stream until `stop` is set (or, `until_idle`, until nothing new has
        committed and no key waits); the handled position is confirmed before returning."""
        next_read = 0.0
        next_drift_check = 0.0
        # Kept at once: a first run's starting point is where the next run resumes.
        self.store.save_watch(self.source.stream, self.source.position, [], [], self.clock())
        for table in self.plans:
            records = self.store.drift(table, is_open=True, limit=KEEP_DRIFT_PER_TABLE)
            self._open.update((table, record.key) for record in records)
        try:
            while not stop.is_set():
                now = self.clock()
                is_idle = False
                if self.queue.room() > 0 and now >= next_read:
                    events = self.source.read(min(self.queue.room(), READ_BATCH))
                    self._take(events)
                    # Caught up: nothing of the watched tables up to the stream's end (on a
                    # busy server, other tables' commits never stop coming).
                    is_idle = self.source.at_end and not any(
                        isinstance(event, Change) for event in events
                    )
                    if self.source.at_end:
                        next_read = now + self.settings.poll_s
                if now >= next_drift_check:
                    self._check_open_drift(now)
                    next_drift_check = now + self.settings.max_lag_s
                due = self.queue.take_due(self.clock(), CHECK_BATCH)
                if due:
                    self._check(due)
                self._save()
                if until_idle and is_idle and not len(self.queue):
                    break
                due_at = self.queue.next_due()
                wake = min(
                    next_read if self.queue.room() > 0 else float("inf"),
                    float("inf") if due_at is None else due_at,
                    next_drift_check,
                )
                delay = wake - self.clock()
                if delay > 0:
                    stop.wait(min(delay, self.settings.poll_s))
        finally:
            self._save()
        self.summary.coalesced = self.queue.coalesced
        return self.summary

    def _take(self, events: Sequence[Event]) -> None:
        # Commit times are the database server's clock: one ahead of this host's must not put
        # a key's check in the future.
        now = self.clock()
        for event in events:
            if isinstance(event, Committed):
                self.commits.add(self._seq, event.position, queued_keys=self._queued_in_transaction)
                self._seq += 1
                self._queued_in_transaction = False
                continue
            if isinstance(event, Truncated):
                self.echo(
                    f"truncated: {event.table} was emptied on legacy; the change stream does not "
                    f"list the keys that went: run `strangler data diff {event.table}`"
                )
                continue
            self.summary.changes += 1
            if self.queue.add(event.table, event.key, self._seq, min(event.committed_at, now)):
                self._queued_in_transaction = True
        self.summary.pending_high_water = max(self.summary.pending_high_water, len(self.queue))

    def _check(self, due: list[Pending]) -> None:
        by_table: dict[str, list[Pending]] = {}
        for entry in due:
            by_table.setdefault(entry.table, []).append(entry)
        for table, entries in sorted(by_table.items()):
            plan = self.plans[table]
            differing = check_keys(plan, [entry.key for entry in entries])
            now = self.clock()
            for entry in entries:
                difference = differing.get(entry.key)
                if difference is not None and not self.queue.is_final(entry, now):
                    self.queue.retry(entry, now)
                    continue
                self._conclude(
                    table, entry.key, difference, now, lag_s=now - entry.first_changed_at
                )
                self.queue.done(entry)

    def _conclude(
        self,
        table: str,
        key: Key,
        difference: Difference | None,
        now: float,
        *,
        lag_s: float | None,
    ) -> None:
        name = (table, key_json(key))
        if difference is None:
            if name in self._open:
                self._updates.append(DriftUpdate(table, name[1], now))
                self._open.discard(name)
                self.summary.resolved += 1
                self.echo(f"resolved: {table} {name[1]} is equal on new now")
        elif len(self._open) < KEEP_DRIFT_PER_TABLE * len(self.plans):
            # Past that, the periodic re-check of open drift resolves what is not here.
            self._open.add(name)
            columns = {
                name: [self.redact(name, before), self.redact(name, after)]
                for name, (before, after) in difference.columns.items()
            }
            self._updates.append(
                DriftUpdate(table, key_json(key), now, difference.kind.value, columns)
            )
        if lag_s is None:
            return
        self.summary.checked += 1
        self.summary.checked_by_table[table] = self.summary.checked_by_table.get(table, 0) + 1
        if difference is not None:
            self.summary.drift_found += 1
            self.echo(_drift_line(table, key, difference, self.redact, lag_s))
        before = self._deltas.get(table)
        self._deltas[table] = TableWatchDelta(
            table, (before.checked if before else 0) + 1, lag_s, now
        )

    def _check_open_drift(self, now: float) -> None:
        """Check the kept open drift of the watched tables again: resolved when equal now."""
        for table, plan in sorted(self.plans.items()):
            records = self.store.drift(table, is_open=True, limit=DRIFT_RECHECK_LIMIT)
            keys: list[Key] = []
            for record in records:
                value = json.loads(record.key)
                key = key_of(plan, value if isinstance(value, list) else [value])
                if key is not None and not self.queue.is_pending(table, key):
                    keys.append(key)
            if not keys:
                continue
            differing = check_keys(plan, keys)
            checked_at = self.clock()
            for key in keys:
                self._open.add((table, key_json(key)))
                self._conclude(table, key, differing.get(key), checked_at, lag_s=None)

    def _save(self) -> None:
        position = self.commits.confirmable(self.queue.oldest_seq())
        if len(self.commits) > 2 * len(self.queue) + 64:
            self.commits.compact(self.queue.first_seqs())
        if position is None and not self._updates and not self._deltas:
            return
        kept = position or self.summary.position
        self.store.save_watch(
            self.source.stream, kept, self._updates, list(self._deltas.values()), self.clock()
        )
        self._updates = []
        self._deltas = {}
        if position is not None:
            self.source.confirm(position)
            self.summary.position = position


def _drift_line(table: str, key: Key, difference: Difference, redact: Redact, lag_s: float) -> str:
    where = f"drift: {table} {key_json(key)} ({lag_s:.1f} s after its change)"
    if difference.kind is not DiffKind.DIFFERENT:
        return f"{where}: {difference.kind.value.replace('_', ' ')}"
    changes = "; ".join(
        f"{name}: {json.dumps(redact(name, before), ensure_ascii=False)} (legacy) != "
        f"{json.dumps(redact(name, after), ensure_ascii=False)} (new)"
        for name, (before, after) in difference.columns.items()
    )
    return f"{where}: {changes}"
