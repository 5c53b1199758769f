"""Per-route shadow results: counts, parity, and the difference paths seen, with examples.

Rules:
- Bounded: at most `max_paths` difference paths per route (more are counted, not kept) and
  `max_examples` examples per path (the newest replace the oldest).
- Examples keep the request line and the two differing values only: no headers, no cookies.
- Time comes from the injected clock, so tests decide what "now" is.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strangler.control.store import (
    UNSEEN_DIFFERENCES,
    NoiseDelta,
    PathDelta,
    RouteDelta,
    SignatureDelta,
    is_learned_noise,
)
from strangler.diff import Comparison, wilson_interval

# Distinct signatures one route keeps between two flushes; more are counted, not kept.
MAX_SIGNATURES_PER_FLUSH = 1000
# What a route that has never been flushed counts as: nothing (never mutated).
_NOTHING_REPORTED: tuple[tuple[int, ...], collections.Counter[str]] = (
    (0, 0, 0, 0, 0),
    collections.Counter(),
)


@dataclass(slots=True)
class DifferencePath:
    """One place where the new backend's answers differ, aggregated across requests."""

    rule_path: str
    kind: str
    count: int
    first_seen: float
    last_seen: float
    examples: collections.deque[dict[str, Any]]


@dataclass(slots=True)
class RouteShadowStats:
    """What shadowing learned about one route."""

    route: str
    mirrored: int = 0
    compared: int = 0
    equal: int = 0
    different: int = 0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    paths: dict[str, DifferencePath] = field(default_factory=dict)
    paths_not_kept: int = 0
    # Noise learning: legacy-vs-legacy comparisons, and how often each path differed in them.
    noise_samples: int = 0
    noise_paths: dict[str, int] = field(default_factory=dict)
    # Comparisons whose every difference was on a path learned as noise at the time.
    equal_but_noise: int = 0
    # Different comparisons by the set of rule paths they differed at (pending deltas only).
    signatures: collections.Counter[tuple[str, ...]] = field(default_factory=collections.Counter)
    signatures_not_kept: int = 0

    def is_noise(self, rule_path: str) -> bool:
        return is_learned_noise(self.noise_paths.get(rule_path, 0), self.noise_samples)

    def parity(self) -> tuple[float | None, tuple[float, float]]:
        """(equal/compared or None, Wilson 95 % interval); learned noise counts as equal."""
        equal = self.equal + self.equal_but_noise
        ratio = equal / self.compared if self.compared else None
        return ratio, wilson_interval(equal, self.compared)

    def as_dict(self) -> dict[str, Any]:
        """The figures as the worker logs them: counts and paths, without examples (response
        values, redacted but still the application's data: they go to the store only)."""
        ratio, (low, high) = self.parity()
        return {
            "route": self.route,
            "mirrored": self.mirrored,
            "compared": self.compared,
            "equal": self.equal,
            "different": self.different,
            "dropped": {str(reason): count for reason, count in self.dropped.items()},
            "equal_but_noise": self.equal_but_noise,
            "parity": ratio,
            "parity_interval_95": [low, high],
            "strict_parity": self.equal / self.compared if self.compared else None,
            "noise_samples": self.noise_samples,
            "noise": [
                {"path": path, "differed": count, "learned": self.is_noise(path)}
                for path, count in sorted(self.noise_paths.items(), key=lambda item: -item[1])
            ],
            "paths": [
                {
                    "path": p.rule_path,
                    "kind": p.kind,
                    "count": p.count,
                    "is_noise": self.is_noise(p.rule_path),
                    "first_seen": p.first_seen,
                    "last_seen": p.last_seen,
                }
                for p in sorted(self.paths.values(), key=lambda p: -p.count)
            ],
            "paths_not_kept": self.paths_not_kept,
            "signatures_not_kept": self.signatures_not_kept,
        }


class ShadowResults:
    """All routes' shadow results in one worker: running totals for the log, and the deltas
    since the last `take_deltas()` for the store (which adds up every worker's deltas).

    Counters live in the totals only, and a flush reports how far they moved since the last
    one: counting a copy is then one increment on one object, which matters on the hot path
    (bench/proxy_bench.py --shadow). What can't be diffed (paths, examples, signatures, noise
    paths) is also kept per flush in `_pending`."""

    def __init__(
        self, clock: Callable[[], float], *, max_paths: int = 200, max_examples: int = 5
    ) -> None:
        self._clock = clock
        self._max_paths = max_paths
        self._max_examples = max_examples
        self._max_signatures = MAX_SIGNATURES_PER_FLUSH
        self.routes: dict[str, RouteShadowStats] = {}
        self._pending: dict[str, RouteShadowStats] = {}
        # The counters as of the last flush, by route: (mirrored, compared, equal, different,
        # noise_samples) and the drops by reason.
        self._reported: dict[str, tuple[tuple[int, ...], collections.Counter[str]]] = {}
        # Paths a person reviewed (accepted or noise), read back from the store.
        self.reviewed: dict[str, frozenset[str]] = {}

    def _pending_for(self, name: str) -> RouteShadowStats:
        pending = self._pending.get(name)
        if pending is None:
            pending = self._pending[name] = RouteShadowStats(name)
        return pending

    def count_mirrored(self, route: str) -> None:
        self.route(route).mirrored += 1

    def count_drop(self, route: str, reason: str) -> None:
        self.route(route).dropped[reason] += 1

    def take_deltas(self) -> tuple[RouteDelta, ...]:
        """What changed since the last call, as store deltas; called from the event loop."""
        pending, self._pending = self._pending, {}
        deltas: list[RouteDelta] = []
        for name, totals in self.routes.items():
            counters = (
                totals.mirrored,
                totals.compared,
                totals.equal,
                totals.different,
                totals.noise_samples,
            )
            last_counters, last_dropped = self._reported.get(name, _NOTHING_REPORTED)
            maps = pending.get(name)
            if counters == last_counters and totals.dropped == last_dropped and maps is None:
                continue
            self._reported[name] = (counters, collections.Counter(totals.dropped))
            moved = [now - then for now, then in zip(counters, last_counters, strict=True)]
            dropped = totals.dropped - last_dropped
            maps = maps or RouteShadowStats(name)
            deltas.append(
                RouteDelta(
                    route=name,
                    mirrored=moved[0],
                    compared=moved[1],
                    equal=moved[2],
                    different=moved[3],
                    dropped={str(reason): count for reason, count in dropped.items() if count},
                    paths=tuple(
                        PathDelta(
                            rule_path=p.rule_path,
                            kind=p.kind,
                            count=p.count,
                            first_seen=p.first_seen,
                            last_seen=p.last_seen,
                            examples=tuple(p.examples),
                        )
                        for p in maps.paths.values()
                    ),
                    noise_samples=moved[4],
                    signatures=tuple(
                        SignatureDelta(paths, count) for paths, count in maps.signatures.items()
                    ),
                    noise=tuple(
                        NoiseDelta(rule_path=path, count=count)
                        for path, count in maps.noise_paths.items()
                    ),
                )
            )
        return tuple(deltas)

    def route(self, name: str) -> RouteShadowStats:
        stats = self.routes.get(name)
        if stats is None:
            stats = self.routes[name] = RouteShadowStats(name)
        return stats

    def record_noise(self, route: str, comparison: Comparison) -> list[str]:
        """Count one legacy-vs-legacy comparison; returns paths that differed for the first time."""
        totals, pending = self.route(route), self._pending_for(route)
        totals.noise_samples += 1
        new_paths: list[str] = []
        for rule_path in {d.rule_path for d in comparison.differences}:
            for stats in (totals, pending):
                if rule_path not in stats.noise_paths:
                    if len(stats.noise_paths) >= self._max_paths:
                        continue
                    if stats is totals:
                        new_paths.append(rule_path)
                stats.noise_paths[rule_path] = stats.noise_paths.get(rule_path, 0) + 1
        return new_paths

    def count_equal(self, route: str) -> None:
        """Count one comparison that found no difference (the common case, kept cheap)."""
        stats = self.route(route)
        stats.compared += 1
        stats.equal += 1

    def record(self, route: str, request_line: str, comparison: Comparison) -> list[str]:
        """Count one comparison; returns the difference paths seen here for the first time."""
        totals = self.route(route)
        totals.compared += 1
        if comparison.is_equal:
            totals.equal += 1
            return []
        totals.different += 1
        # Noise is judged on the worker's running totals, which the pending deltas can't know.
        reviewed = self.reviewed.get(route, frozenset())
        if all(
            d.rule_path in reviewed or totals.is_noise(d.rule_path) for d in comparison.differences
        ):
            totals.equal_but_noise += 1
        pending = self._pending_for(route)
        new_paths = self._add(totals, request_line, comparison)
        self._add(pending, request_line, comparison)
        paths = {d.rule_path for d in comparison.differences}
        if comparison.is_truncated:
            paths.add(UNSEEN_DIFFERENCES)
        signature = tuple(sorted(paths))
        if signature in pending.signatures or len(pending.signatures) < self._max_signatures:
            pending.signatures[signature] += 1
        else:
            pending.signatures_not_kept += 1
            totals.signatures_not_kept += 1
        return new_paths

    def _add(self, stats: RouteShadowStats, request_line: str, comparison: Comparison) -> list[str]:
        """Add a different comparison's paths and examples to `stats`; returns new paths."""
        now = self._clock()
        new_paths: list[str] = []
        for difference in comparison.differences:
            entry = stats.paths.get(difference.rule_path)
            if entry is None:
                if len(stats.paths) >= self._max_paths:
                    stats.paths_not_kept += 1
                    continue
                entry = stats.paths[difference.rule_path] = DifferencePath(
                    rule_path=difference.rule_path,
                    kind=difference.kind.value,
                    count=0,
                    first_seen=now,
                    last_seen=now,
                    examples=collections.deque(maxlen=self._max_examples),
                )
                new_paths.append(difference.rule_path)
            entry.count += 1
            entry.last_seen = now
            entry.examples.append(
                {
                    "request": request_line,
                    "path": difference.path,
                    "primary": difference.primary,
                    "shadow": difference.shadow,
                }
            )
        return new_paths
