"""One table's data diff: checksum bisection run against both databases at once.

Rules:
- Both sides answer the same question concurrently: every step is a pair of queries (one per
  side) run on a thread pool, and up to `concurrency` steps are in flight.
- Caps (data-diff#96, #402): at most `max_differences` differences are reported, and no new
  query starts after `max_seconds`; either ends the run with `complete: false` and the counts
  found so far, which are then lower bounds.
- A query that fails ends the table's run with the DataSourceError; nothing partial is returned.
- Progress is reported from the calling thread only, after each step.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, assert_never

from strangler.data.bisect import (
    EMPTY,
    FETCH_ROWS,
    SPLIT_FACTOR,
    Checksum,
    Difference,
    DiffKind,
    Key,
    Segment,
    compare_rows,
    integer_parts,
    integer_width,
    split_at,
)
from strangler.data.dialects import TIMESTAMP_FORMAT
from strangler.data.plan import TablePlan
from strangler.data.queries import SideQueries

# A first cut of an integer key's range aims at this many rows per segment: the segments are
# checksummed concurrently, and progress moves once per segment.
TOP_SEGMENT_ROWS = 64 * 1024
MAX_TOP_SEGMENTS = 256
# Each top segment's one scan already returns the checksums of its leaves of about LEAF_ROWS
# rows (GROUP BY a key-range bucket), so a table with a few differences costs one scan per side
# plus a fetch of each differing leaf, where splitting by SPLIT_FACTOR rescans every differing
# segment once per level. Measured on MariaDB 10.11 and PostgreSQL 15 (bench/bench_data.py):
# the grouped scan costs the same CPU with buckets of 64, 256 or 65,536 keys, so leaves are
# small, and fetching one costs about a millisecond; the GROUP BY's answer stays under
# MAX_BUCKETS rows.
LEAF_ROWS = 64
MAX_BUCKETS = 4096
SIDES = ("legacy", "new")


@dataclass(frozen=True, slots=True)
class Limits:
    max_differences: int = 1000
    max_seconds: float | None = None
    min_age_s: float = 0.0
    concurrency: int = 4


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a table's run stands; `rows_estimated` is None while unknown."""

    table: str
    rows_checked: int
    rows_estimated: int | None
    differences: int


ProgressCallback = Callable[[Progress], None]
Redact = Callable[[str, str | None], str | None]


@dataclass(slots=True)
class TableResult:
    """What one table's run found; counts are lower bounds unless `complete`."""

    name: str
    rows_legacy: int = 0
    rows_new: int = 0
    differences: list[Difference] = field(default_factory=list)
    # Differing rows not judged because one side's copy is younger than min_age_s.
    deferred: int = 0
    seconds: float = 0.0
    complete: bool = True

    def count(self, kind: DiffKind) -> int:
        return sum(1 for difference in self.differences if difference.kind is kind)

    @property
    def is_equal(self) -> bool:
        return not self.differences

    def to_json(self, redact: Redact) -> dict[str, Any]:
        """The issue's JSON shape; `redact(column, value)` filters secret columns' values."""
        samples: dict[str, list[Any]] = {kind.value: [] for kind in DiffKind}
        for difference in self.differences:
            key: Any = difference.key[0] if len(difference.key) == 1 else list(difference.key)
            if difference.kind is DiffKind.DIFFERENT:
                columns = {
                    name: [redact(name, before), redact(name, after)]
                    for name, (before, after) in difference.columns.items()
                }
                samples["different"].append({"key": key, "columns": columns})
            else:
                samples[difference.kind.value].append(key)
        return {
            "name": self.name,
            "rows_legacy": self.rows_legacy,
            "rows_new": self.rows_new,
            "missing_in_new": self.count(DiffKind.MISSING_IN_NEW),
            "missing_in_legacy": self.count(DiffKind.MISSING_IN_LEGACY),
            "different": self.count(DiffKind.DIFFERENT),
            "samples": samples,
            "seconds": round(self.seconds, 3),
            "complete": self.complete,
        }


class StepKind(enum.Enum):
    """What one pair of queries asks."""

    RANGE = "range"  # an integer key's min and max, and the tables' estimated sizes
    CHECKSUM = "checksum"  # a segment's count and hash sum
    INTEGER_BUCKETS = "integer_buckets"  # the checksums of an integer segment's equal parts
    CUTS = "cuts"  # every n-th key of a text or composite segment (one side)
    CUT_BUCKETS = "cut_buckets"  # the checksums of a segment's parts between those keys
    ROWS = "rows"  # a small segment's rows


@dataclass(frozen=True, slots=True, eq=False)
class _Step:
    """One pair of queries: what they ask, of which segment."""

    kind: StepKind
    segment: Segment
    is_top: bool = False
    children: tuple[Segment, ...] = ()
    low: int = 0
    width: int = 1
    cuts: tuple[Key, ...] = ()
    step: int = 1
    sample_side: str = "legacy"

    @property
    def priority(self) -> int:
        """Fetches first, then splits, then top segments: differences surface (and a cap is
        reached) early, and the queue holds few pending leaves."""
        if self.kind is StepKind.ROWS:
            return 0
        return 2 if self.is_top or self.kind is StepKind.RANGE else 1


class _Stop(Exception):
    """The run hit a cap: stop starting queries."""


class TableDiff:
    """The run of one table. Call `run()` once."""

    def __init__(
        self,
        plan: TablePlan,
        limits: Limits,
        *,
        on_progress: ProgressCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: float | None = None,
    ) -> None:
        self.plan = plan
        self.limits = limits
        self.on_progress = on_progress
        self.clock = clock
        self.queries = {side: SideQueries(plan, plan.side(side)) for side in SIDES}
        self.result = TableResult(plan.name)
        self.checked = 0
        self.estimated: int | None = None
        self.bounds: tuple[int, int] | None = None
        wall = time.time() if now is None else now
        self.young_after = datetime.fromtimestamp(wall - limits.min_age_s, UTC).strftime(
            TIMESTAMP_FORMAT
        )

    def __repr__(self) -> str:
        return (
            f"<TableDiff {self.plan.name}: {self.checked} rows checked, "
            f"{len(self.result.differences)} differences>"
        )

    # The queries of each step, run on the query pool.

    def _ask(self, step: _Step, side: str) -> Any:
        queries = self.queries[side]
        match step.kind:
            case StepKind.RANGE:
                return (queries.key_range(), queries.estimate())
            case StepKind.CHECKSUM:
                return queries.checksum(step.segment)
            case StepKind.INTEGER_BUCKETS:
                return queries.integer_buckets(step.segment, step.low, step.width)
            case StepKind.CUTS:
                return (
                    queries.sample_keys(step.segment, step.step) if side == step.sample_side else []
                )
            case StepKind.CUT_BUCKETS:
                return queries.boundary_buckets(step.segment, step.cuts)
            case StepKind.ROWS:
                return queries.rows(step.segment)
            case _:
                assert_never(step.kind)

    def run(self) -> TableResult:
        started = self.clock()
        deadline = None if self.limits.max_seconds is None else started + self.limits.max_seconds
        width = max(1, self.limits.concurrency)
        order = itertools.count()
        todo: list[tuple[int, int, _Step]] = []

        def plan(steps: list[_Step]) -> None:
            for step in steps:
                heapq.heappush(todo, (step.priority, next(order), step))

        if self.plan.has_integer_key:
            plan([_Step(StepKind.RANGE, Segment(None, None))])
        else:
            plan([_Step(StepKind.CHECKSUM, Segment(None, None), is_top=True)])
        pool = ThreadPoolExecutor(max_workers=2 * width, thread_name_prefix="data-diff")
        running: dict[Future[Any], tuple[_Step, str]] = {}
        answers: dict[_Step, dict[str, Any]] = {}
        try:
            while todo or running:
                while todo and len(running) < 2 * width:
                    if deadline is not None and self.clock() >= deadline:
                        self.result.complete = False
                        todo.clear()
                        break
                    step = heapq.heappop(todo)[2]
                    answers[step] = {}
                    for side in SIDES:
                        running[pool.submit(self._ask, step, side)] = (step, side)
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    step, side = running.pop(future)
                    answers[step][side] = future.result()  # a DataSourceError ends the run
                    if len(answers[step]) == len(SIDES):
                        plan(self._handle(step, answers.pop(step)))
                if self.on_progress is not None:
                    self.on_progress(self._progress())
        except _Stop:
            self.result.complete = False
        finally:
            for future in running:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
        # Segments finish in any order; a report lists its rows in key order.
        self.result.differences.sort(key=lambda difference: difference.key)
        self.result.seconds = self.clock() - started
        return self.result

    def _progress(self) -> Progress:
        return Progress(self.plan.name, self.checked, self.estimated, len(self.result.differences))

    # What each answered step leads to.

    def _handle(self, step: _Step, answer: dict[str, Any]) -> list[_Step]:
        legacy, new = answer["legacy"], answer["new"]
        match step.kind:
            case StepKind.RANGE:
                return self._first_cut(legacy, new)
            case StepKind.CHECKSUM:
                if step.is_top:
                    self.result.rows_legacy += legacy.count
                    self.result.rows_new += new.count
                    if not self.plan.has_integer_key:
                        self.estimated = max(legacy.count, new.count)
                return self._judge(step.segment, legacy, new)
            case StepKind.INTEGER_BUCKETS | StepKind.CUT_BUCKETS:
                if step.is_top:
                    self.result.rows_legacy += sum(c.count for c in legacy.values())
                    self.result.rows_new += sum(c.count for c in new.values())
                legacy, new = _by_child(legacy, step), _by_child(new, step)
                follow: list[_Step] = []
                for index, child in enumerate(step.children):
                    follow.extend(
                        self._judge(child, legacy.get(index, EMPTY), new.get(index, EMPTY))
                    )
                return follow
            case StepKind.CUTS:
                cuts = tuple(
                    segment.low
                    for segment in split_at(step.segment, legacy or new)[1:]
                    if segment.low is not None
                )
                if not cuts:
                    return [_Step(StepKind.ROWS, step.segment)]
                children = tuple(split_at(step.segment, cuts))
                return [_Step(StepKind.CUT_BUCKETS, step.segment, children=children, cuts=cuts)]
            case StepKind.ROWS:
                found, deferred = compare_rows(
                    legacy, new, self.plan.columns, is_young=self._is_young
                )
                self.result.deferred += deferred
                self.checked += max(len(legacy), len(new))
                self._add(found)
                return []
            case _:
                assert_never(step.kind)

    def _first_cut(
        self, legacy: tuple[tuple[int, int] | None, int | None], new: tuple[Any, Any]
    ) -> list[_Step]:
        ranges = [r for r in (legacy[0], new[0]) if r is not None]
        estimates = [e for e in (legacy[1], new[1]) if e is not None and e > 0]
        if not ranges:
            self.estimated = 0
            return []
        low, high = min(r[0] for r in ranges), max(r[1] for r in ranges) + 1
        self.bounds = (low, high)
        self.estimated = max(estimates) if estimates else None
        rows = self.estimated if self.estimated is not None else high - low
        parts = max(1, min(MAX_TOP_SEGMENTS, rows // TOP_SEGMENT_ROWS + 1))
        # Keys per leaf, from the rows per key the statistics suggest (1 when unknown).
        density = min(1.0, rows / (high - low))
        leaf_keys = max(1, int(LEAF_ROWS / density)) if density > 0 else high - low
        return [
            self._buckets(segment, leaf_keys, is_top=True)
            for segment in integer_parts(Segment(None, None), low, high, parts)
        ]

    def _bounds(self, segment: Segment) -> tuple[int, int]:
        """The integer key range [low, high) that `segment` covers, its open ends closed at the
        range measured first."""
        assert self.bounds is not None  # set by the first cut, before any checksum
        low = self.bounds[0] if segment.low is None else int(segment.low[0])
        high = self.bounds[1] if segment.high is None else int(segment.high[0])
        return low, high

    def _buckets(self, segment: Segment, leaf_keys: int, *, is_top: bool = False) -> _Step:
        """One scan of `segment` that checksums its ranges of `leaf_keys` keys."""
        low, high = self._bounds(segment)
        parts = min(MAX_BUCKETS, max(1, -(-(high - low) // leaf_keys)))
        return _Step(
            StepKind.INTEGER_BUCKETS,
            segment,
            is_top=is_top,
            children=tuple(integer_parts(segment, low, high, parts)),
            low=low,
            width=integer_width(low, high, parts),
        )

    def _judge(self, segment: Segment, legacy: Checksum, new: Checksum) -> list[_Step]:
        """Equal segments are done; differing ones are fetched when small, else split."""
        larger = max(legacy.count, new.count)
        if legacy == new:
            self.checked += larger
            return []
        if larger <= FETCH_ROWS:
            return [_Step(StepKind.ROWS, segment)]
        if self.plan.has_integer_key:
            low, high = self._bounds(segment)
            if high - low <= 1:
                return [_Step(StepKind.ROWS, segment)]
            # Straight to leaves when the rows allow it, in at least SPLIT_FACTOR parts.
            parts = max(SPLIT_FACTOR, -(-larger // LEAF_ROWS))
            return [self._buckets(segment, max(1, -(-(high - low) // parts)))]
        side = "legacy" if legacy.count >= new.count else "new"
        return [
            _Step(StepKind.CUTS, segment, step=max(1, larger // SPLIT_FACTOR), sample_side=side)
        ]

    def _is_young(self, age: str | None) -> bool:
        return self.limits.min_age_s > 0 and age is not None and age > self.young_after

    def _add(self, found: list[Difference]) -> None:
        room = self.limits.max_differences - len(self.result.differences)
        self.result.differences.extend(found[: max(0, room)])
        if len(found) > room:
            raise _Stop


def _by_child(buckets: dict[int, Checksum], step: _Step) -> dict[int, Checksum]:
    """The checksums of a bucketed step's children, by child index. Integer buckets past either
    end (rows written outside the range since it was measured) belong to the outer children."""
    if step.kind is StepKind.CUT_BUCKETS:
        return buckets
    last = len(step.children) - 1
    children: dict[int, Checksum] = {}
    for bucket, checksum in buckets.items():
        index = min(max(bucket, 0), last)
        before = children.get(index, EMPTY)
        children[index] = Checksum(before.count + checksum.count, before.total + checksum.total)
    return children
