"""Good and bad answers per SLO and second, counted in one worker for the store's SLO series.

Rules: a route with no SLO costs one dict lookup on the request path (in the caller); a route
with SLOs one comparison chain and one dict update per SLO. The second comes from the worker's
sweeper (`tick`), never from a clock read per request. Pending counts are bounded by the SLOs
times the seconds between two flushes, and by MAX_PENDING_SECONDS while a flush is stuck (the
oldest go first, counted in `dropped_seconds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from strangler.config import Config
from strangler.control.state import SloDelta
from strangler.observe.slo.evaluator import is_bad

# Seconds kept while flushes fail; older counts are dropped (and counted) rather than held.
MAX_PENDING_SECONDS = 600
# Workers flush SLO counts this often: the evaluator reads them every few seconds at most.
FLUSH_INTERVAL_S = 2.0
# A second's counts are in the store this long after it ended, at the latest (one flush
# interval, plus the sweep that closes the second, plus the write): windows that end this long
# ago are complete.
DATA_LAG_S = FLUSH_INTERVAL_S + 1.0


@dataclass(frozen=True, slots=True)
class SloTarget:
    """What counting one answer for one SLO needs, precomputed from its config."""

    name: str
    latency_s: float  # math.inf without a latency objective
    # None: both sides count; True: only the new backend's answers; False: only legacy's.
    new_side: bool | None


def slo_targets(config: Config) -> dict[str, tuple[SloTarget, ...]]:
    """Per route name, the SLOs that count its answers (routes in no SLO are left out)."""
    targets: dict[str, tuple[SloTarget, ...]] = {}
    for slo in config.slos:
        target = SloTarget(
            slo.name,
            math.inf if slo.latency_ms is None else slo.latency_ms / 1000,
            None if slo.side == "all" else slo.side == "new",
        )
        for route in config.routes:
            if slo.selects(route):
                targets[route.name] = (*targets.get(route.name, ()), target)
    return targets


class SloCounter:
    """Counts since the last `take_deltas`: per second, per SLO, [good, bad]."""

    def __init__(self, now: float) -> None:
        self.second = int(now)
        self._open: dict[str, list[int]] = {}
        self._closed: list[tuple[int, dict[str, list[int]]]] = []
        self.dropped_seconds = 0

    def tick(self, now: float) -> None:
        second = int(now)
        if second != self.second:
            if self._open:
                self._closed.append((self.second, self._open))
                self._open = {}
                if len(self._closed) > MAX_PENDING_SECONDS:
                    del self._closed[0]
                    self.dropped_seconds += 1
            self.second = second

    def record(
        self, targets: tuple[SloTarget, ...], is_new: bool, status: int, elapsed_s: float
    ) -> None:
        """Called once per answer of a route in some SLO (an upstream's answer or the
        gateway's own error), with the time from its head to its last byte."""
        counts = self._open
        for target in targets:
            if target.new_side is not None and target.new_side is not is_new:
                continue
            pair = counts.get(target.name)
            if pair is None:
                pair = counts[target.name] = [0, 0]
            pair[1 if is_bad(status, elapsed_s, target.latency_s) else 0] += 1

    @property
    def has_closed(self) -> bool:
        return bool(self._closed)

    def take_deltas(self) -> list[SloDelta]:
        """The counts of the seconds that ended; the current one keeps filling."""
        closed, self._closed = self._closed, []
        return [
            SloDelta(name, second, good, bad)
            for second, counts in closed
            for name, (good, bad) in counts.items()
        ]
