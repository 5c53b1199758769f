"""The keys `data watch` waits to check, and how far the change stream may be confirmed.

Pure: no I/O, no clock (times are passed in). Rules:
- At most `max_pending` keys wait; the caller reads the stream only while `room()` is positive
  (backpressure: a burst waits in the database's log, not in this process).
- A key changed again while it waits is not queued twice (coalesced): its first check stays
  due `lag_s` after its first change. Each further change gives it `max_lag_s` again from that
  change, but never more than 2 x `max_lag_s` from its first: a key that changes every second
  is still judged.
- The stream is confirmed up to the last commit before the oldest change whose key still
  waits: a restart re-reads exactly the changes whose outcome was not kept.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass

from strangler.data.bisect import Key

TableKey = tuple[str, Key]


@dataclass(slots=True)
class Pending:
    """A key waiting for its check."""

    table: str
    key: Key
    first_seq: int  # the transaction of its oldest unhandled change
    first_changed_at: float  # that change's commit time (unix)
    last_changed_at: float
    due: float
    checks: int = 0

    def deadline(self, max_lag_s: float) -> float:
        return min(self.last_changed_at + max_lag_s, self.first_changed_at + 2 * max_lag_s)


class PendingKeys:
    """Keys to check, by due time; bounded by `max_pending`."""

    def __init__(self, *, max_pending: int, lag_s: float, max_lag_s: float) -> None:
        self.max_pending = max_pending
        self.lag_s = lag_s
        self.max_lag_s = max_lag_s
        # Insertion order is first_seq order: the first entry holds back the confirmation.
        self._entries: OrderedDict[TableKey, Pending] = OrderedDict()
        self._due: list[tuple[float, int, TableKey]] = []
        self._tiebreak = itertools.count()
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<PendingKeys {len(self._entries)}/{self.max_pending}, {self.coalesced} coalesced>"

    def room(self) -> int:
        return max(0, self.max_pending - len(self._entries))

    def add(self, table: str, key: Key, seq: int, changed_at: float) -> bool:
        """Queue a changed key; False when it was waiting already (coalesced)."""
        found = self._entries.get((table, key))
        if found is not None:
            found.last_changed_at = max(found.last_changed_at, changed_at)
            self.coalesced += 1
            return False
        entry = Pending(table, key, seq, changed_at, changed_at, changed_at + self.lag_s)
        self._entries[(table, key)] = entry
        self._push(entry)
        return True

    def _push(self, entry: Pending) -> None:
        heapq.heappush(self._due, (entry.due, next(self._tiebreak), (entry.table, entry.key)))

    def next_due(self) -> float | None:
        while self._due:
            due, _, name = self._due[0]
            entry = self._entries.get(name)
            if entry is not None and entry.due == due:
                return due
            heapq.heappop(self._due)  # stale: the key was handled or rescheduled
        return None

    def take_due(self, now: float, limit: int) -> list[Pending]:
        """Up to `limit` keys due at `now`, soonest first; they stay pending until `done` or
        `retry`."""
        taken: list[Pending] = []
        while len(taken) < limit:
            due = self.next_due()
            if due is None or due > now:
                break
            _, _, name = heapq.heappop(self._due)
            taken.append(self._entries[name])
        return taken

    def is_final(self, entry: Pending, now: float) -> bool:
        """Whether a check at `now` that still finds a difference makes it drift."""
        return now >= entry.deadline(self.max_lag_s)

    def retry(self, entry: Pending, now: float) -> None:
        """Check the key again later (it still differed before its deadline)."""
        entry.checks += 1
        entry.due = min(now + self.lag_s, entry.deadline(self.max_lag_s))
        self._push(entry)

    def done(self, entry: Pending) -> None:
        """The key's outcome is known (equal, or drift kept)."""
        self._entries.pop((entry.table, entry.key), None)

    def oldest_seq(self) -> int | None:
        """The transaction of the oldest change still waiting; None when nothing waits."""
        for entry in self._entries.values():
            return entry.first_seq
        return None

    def is_pending(self, table: str, key: Key) -> bool:
        return (table, key) in self._entries

    def first_seqs(self) -> list[int]:
        """The first transaction of every waiting key (for `CommitLog.compact`)."""
        return [entry.first_seq for entry in self._entries.values()]


class CommitLog:
    """The commits read but not yet confirmed, each with its stream position, in order.
    Consecutive commits that queued no key are kept as one (the newest), and `compact` keeps only
    the commits a confirmation can still stop at: bounded by about twice the pending keys."""

    def __init__(self) -> None:
        self._commits: deque[tuple[int, str, bool]] = deque()

    def __len__(self) -> int:
        return len(self._commits)

    def add(self, seq: int, position: str, *, queued_keys: bool) -> None:
        if not queued_keys and self._commits and not self._commits[-1][2]:
            self._commits[-1] = (seq, position, False)
        else:
            self._commits.append((seq, position, queued_keys))

    def compact(self, pending_seqs: Iterable[int]) -> None:
        """Keep, for each pending key's first transaction, only the newest commit before it
        (where the stream may be confirmed once the keys before are handled), and the newest
        commit of all."""
        firsts = sorted(set(pending_seqs))
        kept: deque[tuple[int, str, bool]] = deque()
        commits = list(self._commits)
        at = 0
        for index, commit in enumerate(commits):
            following = commits[index + 1][0] if index + 1 < len(commits) else None
            while at < len(firsts) and firsts[at] <= commit[0]:
                at += 1
            if following is None or (at < len(firsts) and firsts[at] <= following):
                kept.append(commit)
        self._commits = kept

    def confirmable(self, oldest_pending_seq: int | None) -> str | None:
        """Drop and return the newest position whose commits' keys are all handled (None when
        no new one is)."""
        position = None
        while self._commits and (
            oldest_pending_seq is None or self._commits[0][0] < oldest_pending_seq
        ):
            position = self._commits.popleft()[1]
        return position
