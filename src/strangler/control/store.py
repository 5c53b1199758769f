"""The store port: what workers hand over (shadow results, traffic counts) and what the CLI and
admin read back.

Pure: dataclasses and a Protocol, no I/O and no database imports. Adapters live in
`strangler.control.stores`; one contract suite runs against each of them.

Rules every adapter keeps:
- `apply` is additive. Workers send DELTAS (counts since their last flush), so several processes
  writing the same store concurrently end with exact totals, whatever the interleaving.
- Everything that grows is bounded: examples per path (newest K kept), paths per route, and
  traffic minutes older than the retention (`prune`); the route series' buckets by width (a
  minute's for 3 h, a quarter hour's for 2 d, two hours' for the retention).
- The route series' buckets are additive upserts too, latency histograms included: the store
  adds their bucket counts, so one row holds a bucket's whole histogram and a 7 d read is 168
  rows per route, whatever the number of workers and flushes.
- A human review ("accepted" / "noise") is never overwritten by `apply` nor removed by `prune`.
- Calls block (file or network I/O). Call them from a worker thread, never from the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from strangler.errors import StranglerError


class PathKind(StrEnum):
    """How one JSON path (or header) differed between the primary and the shadow answer."""

    CHANGED = "changed"
    MISSING = "missing"
    EXTRA = "extra"
    TYPE_CHANGED = "type_changed"


_KINDS = frozenset(kind.value for kind in PathKind)


class Verdict(StrEnum):
    """A human's decision about a differing path."""

    ACCEPTED = "accepted"  # a real, intended difference; needs a reason
    NOISE = "noise"  # not a real difference (timestamps, ids): ignore it from now on


def is_learned_noise(differed: int, samples: int) -> bool:
    """Learned noise: legacy differed from itself here at least twice and in >= 1 % of the
    samples (one flap is chance; a field that changes on every answer is noise)."""
    return differed >= 2 and differed * 100 >= samples


# The last element of the signature of a comparison that had more differences than it kept: no
# review can clear it, because nobody has seen the rest.
UNSEEN_DIFFERENCES = "(more differences not kept)"


class StoreUnavailable(StranglerError):
    """The store could not be opened, read or written (locked past the timeout, disk, schema).

    Raised by adapters, chained to the driver's exception. Belongs in `strangler.errors` next to
    the rest of the tree; it lives here until the store has more than one port.
    """


@dataclass(frozen=True, slots=True)
class PathDelta:
    """Differences seen at one rule path of one route since the last flush."""

    rule_path: str  # e.g. "$.projects[*].name" or "header:content-type"
    kind: str  # a PathKind value
    count: int
    first_seen: float  # unix seconds
    last_seen: float
    # JSON-able, oldest first:
    # {"request": "GET /x", "path": "$.a[3].b", "primary": ..., "shadow": ...}
    examples: tuple[dict[str, object], ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown path kind {self.kind!r}")
        if self.count < 0:
            raise ValueError(f"negative count {self.count} for {self.rule_path!r}")
        if self.first_seen > self.last_seen:
            raise ValueError(f"first_seen after last_seen for {self.rule_path!r}")


@dataclass(frozen=True, slots=True)
class NoiseDelta:
    """Times `rule_path` differed between two answers of the LEGACY backend to one request."""

    rule_path: str
    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"negative noise count {self.count} for {self.rule_path!r}")


@dataclass(frozen=True, slots=True)
class SignatureDelta:
    """How many different comparisons differed at exactly this set of rule paths.

    Kept so the parity can be recomputed whenever reviews or learned noise change: a comparison
    is "equal but noise" when every path of its signature is reviewed or learned noise, now.
    """

    rule_paths: tuple[str, ...]  # sorted, unique
    count: int

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"negative signature count {self.count}")
        if list(self.rule_paths) != sorted(set(self.rule_paths)):
            raise ValueError(f"signature paths must be sorted and unique: {self.rule_paths!r}")


@dataclass(frozen=True, slots=True)
class RouteDelta:
    """One route's counts since the worker's last flush."""

    route: str
    mirrored: int
    compared: int
    equal: int
    different: int
    dropped: Mapping[str, int]  # reason -> count; reasons are a small fixed set
    paths: tuple[PathDelta, ...] = ()
    noise_samples: int = 0  # legacy-vs-legacy comparisons made (noise learning)
    noise: tuple[NoiseDelta, ...] = ()
    signatures: tuple[SignatureDelta, ...] = ()

    def __post_init__(self) -> None:
        counters = (self.mirrored, self.compared, self.equal, self.different, self.noise_samples)
        if min(counters) < 0 or any(n < 0 for n in self.dropped.values()):
            raise ValueError(f"negative counter in delta for route {self.route!r}")


@dataclass(frozen=True, slots=True)
class TrafficDelta:
    """Requests one route answered in one minute since the last flush, by side.

    "legacy" is every answer not from the new backend (stage legacy, and the client's answer in
    stage shadow); errors are 5xx answers, including the gateway's own 502/503/504.
    """

    route: str  # the route name, or DEFAULT_ROUTE for requests no route matched
    minute: int  # unix time // 60
    legacy: int
    new: int
    legacy_errors: int = 0
    new_errors: int = 0
    # Latency histograms of those answers (LatencyHistogram.to_json), for the route series.
    legacy_latency: Mapping[str, int] = field(default_factory=dict)
    new_latency: Mapping[str, int] = field(default_factory=dict)
    # The new backend's answers to shadow copies of this route's requests (series only: the
    # client got legacy's answer, so they are not traffic).
    shadow: int = 0
    shadow_errors: int = 0
    shadow_latency: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        counts = (self.legacy, self.new, self.legacy_errors, self.new_errors, self.shadow)
        is_over = self.legacy_errors > self.legacy or self.new_errors > self.new
        if min(counts) < 0 or is_over or not 0 <= self.shadow_errors <= self.shadow:
            raise ValueError(f"bad traffic counts for route {self.route!r}: {counts}")


@dataclass(frozen=True, slots=True)
class TrafficTotals:
    """One route's answers over a period, summed over every worker."""

    route: str
    legacy: int
    new: int
    legacy_errors: int
    new_errors: int


# The bucket widths the route series keeps, one per window the admin API offers (1 h in
# minutes, 24 h in quarter hours, 7 d in two hours): a read sums at most a few hundred rows.
SERIES_WIDTHS_S = (60, 900, 7200)


@dataclass(frozen=True, slots=True)
class SeriesBucket:
    """One side's answers to one route (or to all) in one bucket, summed over every worker.

    `latency` is a LatencyHistogram's `to_json` (empty when all routes are summed)."""

    start: int  # unix seconds, a multiple of the bucket width
    side: str  # "legacy", "new" or "shadow" (new's answers to shadow copies)
    requests: int
    errors: int
    latency: Mapping[str, int]


# Requests no route matched (the config's `default` backend answered them).
DEFAULT_ROUTE = "(default)"


@dataclass(frozen=True, slots=True)
class PathTotals:
    """Everything known about one differing path of one route."""

    route: str
    rule_path: str
    kind: str  # the kind most recently reported
    count: int  # 0 for a path only ever seen as legacy noise
    first_seen: float
    last_seen: float
    noise_count: int
    review: str | None  # a Verdict value, or None when nobody has looked yet
    review_reason: str | None
    reviewed_by: str | None
    reviewed_at: float | None


@dataclass(frozen=True, slots=True)
class RouteTotals:
    """One route's counters, summed over every worker and flush."""

    route: str
    mirrored: int
    compared: int
    equal: int
    different: int
    dropped: dict[str, int]
    noise_samples: int
    updated_at: float
    # Different comparisons whose every differing path is, as of this read, reviewed (accepted or
    # noise) or learned noise: a review made today also clears last week's comparisons.
    equal_but_noise: int = 0


def check_review(verdict: str, reason: str) -> Verdict:
    """The verdict as a Verdict, or ValueError. Shared by adapters so they refuse the same input."""
    try:
        checked = Verdict(verdict)
    except ValueError:
        raise ValueError(
            f"verdict must be one of {[v.value for v in Verdict]}, not {verdict!r}"
        ) from None
    # An accepted difference changes what "equal" means for this route: say why, for the audit.
    if checked is Verdict.ACCEPTED and not reason.strip():
        raise ValueError("accepting a difference needs a reason")
    return checked


class ShadowStore(Protocol):
    """Durable, shared aggregate of shadow comparisons. Blocking; thread-confined per caller."""

    def apply(
        self, deltas: Sequence[RouteDelta], now: float, traffic: Sequence[TrafficDelta] = ()
    ) -> None:
        """Add one flush of deltas, atomically. Called every few seconds by each worker."""
        ...

    def route_series(
        self, route: str | None, since: float, until: float, width_s: int
    ) -> list[SeriesBucket]:
        """Buckets of `width_s` (one of SERIES_WIDTHS_S) that start in [since, until), by
        start then side; only those with answers. `route` None sums every route, without
        latency."""
        ...

    def traffic(self, since: float) -> list[TrafficTotals]:
        """Answers per route from the minute of `since` on, ordered by route."""
        ...

    def routes(self) -> list[RouteTotals]:
        """Totals per route, ordered by route."""
        ...

    def paths(self, route: str) -> list[PathTotals]:
        """The route's differing paths, most frequent first."""
        ...

    def examples(self, route: str, rule_path: str | None = None) -> list[dict[str, object]]:
        """Stored examples, newest first; each carries its "rule_path"."""
        ...

    def review(
        self, route: str, rule_path: str, verdict: str, reason: str, who: str, now: float
    ) -> None:
        """Record a verdict on a known path. "accepted" needs a reason (ValueError otherwise);
        an unknown path raises KeyError."""
        ...

    def reviewed(self) -> dict[str, frozenset[str]]:
        """Per route, the paths a person marked `accepted` or `noise`: they leave the parity."""
        ...

    def prune(
        self,
        now: float,
        *,
        max_age_s: float,
        max_paths_per_route: int,
        max_signatures_per_route: int = 1000,
    ) -> int:
        """Drop unreviewed paths unseen for `max_age_s`, then the least frequent unreviewed paths
        past `max_paths_per_route` per route, with their examples; and the least frequent
        signatures past `max_signatures_per_route` (their comparisons then stay "different",
        the safe side). Returns paths removed."""
        ...

    def close(self) -> None:
        """Release connections. The store is unusable afterwards."""
        ...
