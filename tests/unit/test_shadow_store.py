"""The ShadowStore contract, run against every adapter: SQLite on a real file, and PostgreSQL on
a fresh database per test (skipped, saying why, when no server is reachable; see tests/postgres).

Then what one adapter has alone: SQLite's file and WAL mode; PostgreSQL's migration lock, its
32-bit types, its reconnects and its refusals.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, inspect, make_url, text
from sqlalchemy.exc import DBAPIError

from strangler.control.store import (
    UNSEEN_DIFFERENCES,
    NoiseDelta,
    PathDelta,
    RouteDelta,
    SeriesBucket,
    ShadowStore,
    SignatureDelta,
    StoreUnavailable,
    TrafficDelta,
    TrafficTotals,
)
from strangler.control.stores import PostgresShadowStore, SqliteShadowStore
from strangler.control.stores.postgres import MIGRATION_LOCK_KEY, engine_url
from strangler.control.stores.schema import upgrade
from tests.postgres import create_database, drop_database

ADAPTERS = ["sqlite", "postgresql"]
HEAD = "v0011"


@dataclass(frozen=True, slots=True)
class Target:
    """Where one adapter's store lives: a file path (sqlite) or a database URL (postgresql)."""

    kind: str
    location: str

    def open(self, max_examples_per_path: int = 5) -> ShadowStore:
        return open_target(self.kind, self.location, max_examples_per_path)

    def engine(self) -> Engine:
        """A plain engine on the same database, to look behind the adapter's back."""
        if self.kind == "sqlite":
            return create_engine(f"sqlite:///{self.location}")
        return create_engine(engine_url(self.location))


def open_target(kind: str, location: str, max_examples_per_path: int = 5) -> ShadowStore:
    # Module-level, so spawned processes can pickle it.
    if kind == "sqlite":
        return SqliteShadowStore(location, max_examples_per_path=max_examples_per_path)
    return PostgresShadowStore(location, max_examples_per_path=max_examples_per_path)


@pytest.fixture(params=ADAPTERS)
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "sqlite":
        return Target("sqlite", str(tmp_path / "shadow.db"))
    return Target("postgresql", request.getfixturevalue("postgres_url"))


@pytest.fixture
def store(target: Target) -> Iterator[ShadowStore]:
    opened = target.open(max_examples_per_path=3)
    yield opened
    opened.close()


@pytest.fixture
def postgres(postgres_url: str) -> Target:
    return Target("postgresql", postgres_url)


def example(n: int) -> dict[str, object]:
    return {"request": f"GET /projects/{n}", "path": f"$.a[{n}].b", "primary": n, "shadow": -n}


def route_delta(
    route: str = "projects#index",
    *,
    paths: tuple[PathDelta, ...] = (),
    noise: tuple[NoiseDelta, ...] = (),
    dropped: dict[str, int] | None = None,
) -> RouteDelta:
    return RouteDelta(
        route=route,
        mirrored=3,
        compared=2,
        equal=1,
        different=1,
        dropped=dropped if dropped is not None else {"queue_full": 1},
        paths=paths,
        noise_samples=1,
        noise=noise,
    )


def path_delta(
    rule_path: str, count: int = 1, *, seen: float = 100.0, examples: int = 0
) -> PathDelta:
    return PathDelta(
        rule_path=rule_path,
        kind="changed",
        count=count,
        first_seen=seen,
        last_seen=seen,
        examples=tuple(example(n) for n in range(examples)),
    )


TABLES = {
    "shadow_routes",
    "shadow_dropped",
    "shadow_paths",
    "shadow_examples",
    "shadow_signatures",
    "traffic",
    "route_series",
    "data_watch_positions",
    "data_watch_tables",
    "data_drift",
    "control_overrides",
    "control_audit",
    "rollout_windows",
    "rollout_verdicts",
    "leases",
    "admin_tokens",
    "slo_seconds",
    "slo_minutes",
    "slo_states",
    "data_runs",
    "control_drills",
    "admin_sessions",
    "alembic_version",
}


def _schema(target: Target) -> tuple[set[str], list[str]]:
    engine = target.engine()
    try:
        tables = set(inspect(engine).get_table_names())
        with engine.connect() as conn:
            versions = list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars())
    finally:
        engine.dispose()
    return tables, versions


def test_a_new_store_gets_the_whole_schema(target: Target) -> None:
    target.open().close()
    assert _schema(target) == (TABLES, [HEAD])


@pytest.mark.parametrize("previous", ["v0001", "v0002", "v0003", "v0004", "v0005"])
def test_a_database_at_a_previous_schema_is_upgraded_and_keeps_its_data(
    target: Target, previous: str
) -> None:
    engine = target.engine()
    try:
        with engine.begin() as conn:
            upgrade(conn, previous)
            conn.execute(
                text(
                    "INSERT INTO shadow_routes (route, mirrored, compared, equal, different, "
                    "noise_samples, updated_at) VALUES ('r', 5, 4, 3, 1, 0, 1.0)"
                )
            )
    finally:
        engine.dispose()
    store = target.open()
    try:
        assert _schema(target) == (TABLES, [HEAD])
        (totals,) = store.routes()
        # The old comparison has no signature: it stays different, whatever is reviewed later.
        assert (totals.compared, totals.equal, totals.equal_but_noise) == (4, 3, 0)
        store.apply(
            [
                RouteDelta(
                    "r", 1, 1, 0, 1, {},
                    paths=(path_delta("$.x", examples=1),),
                    signatures=(SignatureDelta(("$.x",), 1),),
                )
            ],
            now=2.0,
        )  # fmt: skip
        store.review("r", "$.x", "noise", "", "ann", now=3.0)
        (totals,) = store.routes()
        assert (totals.compared, totals.different, totals.equal_but_noise) == (5, 2, 1)
        assert len(store.examples("r", "$.x")) == 1
    finally:
        store.close()


def test_reopening_keeps_data(target: Target) -> None:
    first = target.open()
    first.apply([route_delta(paths=(path_delta("$.a", 2),))], now=1.0)
    first.close()

    for _ in range(2):  # migrating an up-to-date store is a no-op
        again = target.open()
        assert [p.count for p in again.paths("projects#index")] == [2]
        assert again.routes()[0].mirrored == 3
        again.close()


def _different(route: str, *signatures: tuple[tuple[str, ...], int], samples: int = 0,
               noise: tuple[NoiseDelta, ...] = ()) -> RouteDelta:  # fmt: skip
    paths = sorted({p for sig, _ in signatures for p in sig})
    total = sum(count for _, count in signatures)
    return RouteDelta(
        route, mirrored=total, compared=total, equal=0, different=total, dropped={},
        paths=tuple(path_delta(p) for p in paths),
        signatures=tuple(SignatureDelta(sig, count) for sig, count in signatures),
        noise_samples=samples, noise=noise,
    )  # fmt: skip


def test_traffic_adds_up_per_route_and_reads_from_a_minute_on(store: ShadowStore) -> None:
    minute = 29_000_000
    store.apply(
        [],
        now=1.0,
        traffic=[TrafficDelta("a", minute, 5, 2, 1, 0), TrafficDelta("b", minute, 0, 3)],
    )
    store.apply([], now=2.0, traffic=[TrafficDelta("a", minute, 1, 1, 0, 1)])
    store.apply([], now=3.0, traffic=[TrafficDelta("a", minute + 10, 4, 4)])
    everything = store.traffic(since=minute * 60)
    assert everything == [TrafficTotals("a", 10, 7, 1, 1), TrafficTotals("b", 0, 3, 0, 0)]
    assert store.traffic(since=(minute + 5) * 60) == [TrafficTotals("a", 4, 4, 0, 0)]
    # Older than the retention: pruned.
    store.prune((minute + 11) * 60, max_age_s=300, max_paths_per_route=10)
    assert store.traffic(since=0) == [TrafficTotals("a", 4, 4, 0, 0)]


def test_route_series_adds_histograms_per_width_and_prunes_each_width_on_its_own(
    store: ShadowStore,
) -> None:
    minute = 29_000_040  # a multiple of 120: the 15 min and 2 h buckets start with it
    fast, slow = {"400": 3}, {"400": 1, "600": 2}
    store.apply([], 1.0, traffic=[TrafficDelta("a", minute, 3, 0, 1, 0, legacy_latency=fast)])
    store.apply(
        [],
        2.0,
        traffic=[
            TrafficDelta("a", minute, 3, 1, 0, 1, legacy_latency=slow, new_latency={"7": 1}),
            TrafficDelta("a", minute + 1, 1, 0, legacy_latency={"400": 1}),
            TrafficDelta("b", minute, 0, 2, new_latency={"5": 2}),
        ],
    )
    at = minute * 60
    assert store.route_series("a", at, at + 120, 60) == [
        SeriesBucket(at, "legacy", 6, 1, {"400": 4, "600": 2}),
        SeriesBucket(at, "new", 1, 1, {"7": 1}),
        SeriesBucket(at + 60, "legacy", 1, 0, {"400": 1}),
    ]
    for width in (900, 7200):
        assert store.route_series("a", at, at + 60, width) == [
            SeriesBucket(at, "legacy", 7, 1, {"400": 5, "600": 2}),
            SeriesBucket(at, "new", 1, 1, {"7": 1}),
        ]
    # Every route summed, counts only.
    assert store.route_series(None, at, at + 60, 900) == [
        SeriesBucket(at, "legacy", 7, 1, {}),
        SeriesBucket(at, "new", 3, 1, {}),
    ]
    # Minutes go after 3 h; quarter hours after 2 d, two-hour buckets after the retention.
    store.prune(at + 4 * 3600, max_age_s=7 * 86400, max_paths_per_route=10)
    assert store.route_series("a", at, at + 120, 60) == []
    assert len(store.route_series("a", at, at + 60, 900)) == 2
    store.prune(at + 3 * 86400, max_age_s=7 * 86400, max_paths_per_route=10)
    assert store.route_series("a", at, at + 60, 900) == []
    assert len(store.route_series("a", at, at + 60, 7200)) == 2
    with pytest.raises(ValueError, match="width_s"):
        store.route_series("a", at, at + 60, 120)


def test_shadow_copies_are_in_the_series_but_not_in_the_traffic(store: ShadowStore) -> None:
    minute = 29_000_040
    store.apply(
        [], 1.0, traffic=[TrafficDelta("s", minute, 0, 0, shadow=2, shadow_latency={"9": 2})]
    )
    store.apply([], 2.0, traffic=[TrafficDelta("s", minute, 1, 0, legacy_latency={"8": 1})])
    assert store.traffic(since=0) == [TrafficTotals("s", 1, 0, 0, 0)]
    assert store.route_series("s", minute * 60, minute * 60 + 60, 60) == [
        SeriesBucket(minute * 60, "legacy", 1, 0, {"8": 1}),
        SeriesBucket(minute * 60, "shadow", 2, 0, {"9": 2}),
    ]


def test_a_review_clears_earlier_comparisons_too(store: ShadowStore) -> None:
    store.apply([_different("r", (("$.a",), 5), (("$.a", "$.b"), 3), (("$.b",), 2))], now=1.0)
    assert store.routes()[0].equal_but_noise == 0
    store.review("r", "$.a", "accepted", "renamed on purpose", "ann", now=2.0)
    # Only the 5 that differed at $.a alone: the 3 that also differed at $.b still count.
    assert store.routes()[0].equal_but_noise == 5
    store.review("r", "$.b", "noise", "", "ann", now=3.0)
    assert store.routes()[0].equal_but_noise == 10


def test_noise_learned_by_any_worker_clears_every_workers_comparisons(
    store: ShadowStore,
) -> None:
    # Worker 1 compared; worker 2 did the noise sampling. Neither alone knows both halves.
    store.apply([_different("r", (("$.at",), 4), (("$.at", "$.name"), 1))], now=1.0)
    store.apply([_different("r", samples=10, noise=(NoiseDelta("$.at", 9),))], now=2.0)
    assert store.routes()[0].equal_but_noise == 4


def test_a_truncated_comparison_is_never_cleared(store: ShadowStore) -> None:
    store.apply([_different("r", (("$.a", UNSEEN_DIFFERENCES), 2))], now=1.0)
    store.review("r", "$.a", "noise", "", "ann", now=2.0)
    assert store.routes()[0].equal_but_noise == 0


def test_signatures_are_pruned_to_the_most_frequent(store: ShadowStore) -> None:
    store.apply([_different("r", (("$.a",), 5), (("$.b",), 1), (("$.c",), 3))], now=1.0)
    store.prune(2.0, max_age_s=1e9, max_paths_per_route=100, max_signatures_per_route=2)
    store.review("r", "$.b", "noise", "", "ann", now=3.0)
    store.review("r", "$.c", "noise", "", "ann", now=3.0)
    # $.b's signature was the rarest and is gone: its comparison stays different.
    assert store.routes()[0].equal_but_noise == 3


def test_apply_then_read_back(store: ShadowStore) -> None:
    delta = route_delta(
        paths=(path_delta("$.name", 2, examples=1),), noise=(NoiseDelta("$.at", 4),)
    )
    store.apply([delta], now=500.0)

    [totals] = store.routes()
    assert (totals.route, totals.mirrored, totals.compared, totals.equal, totals.different) == (
        "projects#index",
        3,
        2,
        1,
        1,
    )
    assert (totals.dropped, totals.noise_samples, totals.updated_at) == (
        {"queue_full": 1},
        1,
        500.0,
    )

    name, at = store.paths("projects#index")
    assert (name.rule_path, name.kind, name.count, name.noise_count) == ("$.name", "changed", 2, 0)
    assert (name.first_seen, name.last_seen, name.review) == (100.0, 100.0, None)
    # A path only seen in legacy-vs-legacy noise exists with count 0, so its noise is visible.
    assert (at.rule_path, at.count, at.noise_count) == ("$.at", 0, 4)

    assert store.examples("projects#index") == [{**example(0), "rule_path": "$.name"}]
    assert store.paths("no-such-route") == []


def test_two_applies_add_up(store: ShadowStore) -> None:
    first = route_delta(paths=(PathDelta("$.n", "missing", 1, 50.0, 60.0),))
    second = route_delta(
        paths=(PathDelta("$.n", "type_changed", 2, 40.0, 55.0),),
        noise=(NoiseDelta("$.n", 1),),
        dropped={"queue_full": 2, "too_large": 1},
    )
    store.apply([first], now=1.0)
    store.apply([second], now=2.0)

    [totals] = store.routes()
    assert (totals.mirrored, totals.compared, totals.equal, totals.different) == (6, 4, 2, 2)
    assert totals.dropped == {"queue_full": 3, "too_large": 1}
    assert (totals.noise_samples, totals.updated_at) == (2, 2.0)
    [path] = store.paths("projects#index")
    assert (path.count, path.noise_count, path.first_seen, path.last_seen) == (3, 1, 40.0, 60.0)
    assert path.kind == "type_changed"  # the most recently reported kind


def test_noise_first_then_real_difference_takes_its_times(store: ShadowStore) -> None:
    store.apply([route_delta(noise=(NoiseDelta("$.x", 2),))], now=900.0)
    store.apply([route_delta(paths=(PathDelta("$.x", "extra", 1, 10.0, 20.0),))], now=950.0)
    [path] = store.paths("projects#index")
    assert (path.kind, path.count, path.noise_count) == ("extra", 1, 2)
    assert (path.first_seen, path.last_seen) == (10.0, 20.0)


def test_paths_are_ranked_by_count(store: ShadowStore) -> None:
    deltas = (path_delta("$.low", 1), path_delta("$.high", 9), path_delta("$.mid", 5))
    store.apply([route_delta(paths=deltas)], now=1.0)
    assert [p.rule_path for p in store.paths("projects#index")] == ["$.high", "$.mid", "$.low"]


def test_examples_keep_only_the_newest(store: ShadowStore) -> None:
    for flush in range(4):
        batch = tuple(example(flush * 10 + n) for n in range(2))
        delta = PathDelta("$.a", "changed", 2, float(flush), float(flush), batch)
        store.apply([route_delta(paths=(delta, path_delta("$.other", examples=1)))], now=flush)

    newest = store.examples("projects#index", "$.a")
    assert [e["request"] for e in newest] == [
        "GET /projects/31",
        "GET /projects/30",
        "GET /projects/21",
    ]
    assert all(e["rule_path"] == "$.a" for e in newest)
    # Without a rule_path: every path's examples, still capped per path, newest first.
    assert len(store.examples("projects#index")) == 3 + 3


def test_a_single_flush_with_more_examples_than_the_cap(store: ShadowStore) -> None:
    store.apply([route_delta(paths=(path_delta("$.a", 7, examples=7),))], now=1.0)
    assert [e["primary"] for e in store.examples("projects#index", "$.a")] == [6, 5, 4]


def test_review_survives_further_applies(store: ShadowStore) -> None:
    store.apply([route_delta(paths=(path_delta("$.id", 1),))], now=1.0)
    store.review("projects#index", "$.id", "accepted", "ids are UUIDs now", "ana", now=5.0)
    store.apply([route_delta(paths=(path_delta("$.id", 3),), noise=(NoiseDelta("$.id", 1),))], 6.0)

    [path] = store.paths("projects#index")
    assert (path.count, path.noise_count) == (4, 1)
    assert (path.review, path.review_reason, path.reviewed_by, path.reviewed_at) == (
        "accepted",
        "ids are UUIDs now",
        "ana",
        5.0,
    )


def test_noise_verdict_needs_no_reason(store: ShadowStore) -> None:
    store.apply([route_delta(paths=(path_delta("$.at", 1),))], now=1.0)
    store.review("projects#index", "$.at", "noise", "", "bob", now=2.0)
    [path] = store.paths("projects#index")
    assert (path.review, path.review_reason, path.reviewed_by) == ("noise", None, "bob")


@pytest.mark.parametrize(
    ("verdict", "reason", "error"),
    [
        ("accepted", "", ValueError),
        ("accepted", "   ", ValueError),
        ("maybe", "why not", ValueError),
    ],
)
def test_bad_reviews_are_refused(
    store: ShadowStore, verdict: str, reason: str, error: type[Exception]
) -> None:
    store.apply([route_delta(paths=(path_delta("$.id", 1),))], now=1.0)
    with pytest.raises(error):
        store.review("projects#index", "$.id", verdict, reason, "ana", now=2.0)
    assert store.paths("projects#index")[0].review is None


def test_reviewing_an_unknown_path_is_a_key_error(store: ShadowStore) -> None:
    with pytest.raises(KeyError):
        store.review("projects#index", "$.nope", "noise", "", "ana", now=2.0)


def test_prune_by_age_keeps_recent_and_reviewed(store: ShadowStore) -> None:
    old = (path_delta("$.old", 5, seen=100.0, examples=2), path_delta("$.old_reviewed", seen=100.0))
    store.apply([route_delta(paths=(*old, path_delta("$.new", 1, seen=950.0)))], now=950.0)
    store.review("projects#index", "$.old_reviewed", "noise", "", "ana", now=960.0)

    removed = store.prune(1000.0, max_age_s=500.0, max_paths_per_route=100)

    assert removed == 1
    assert {p.rule_path for p in store.paths("projects#index")} == {"$.new", "$.old_reviewed"}
    assert store.examples("projects#index", "$.old") == []


def test_a_path_only_seen_as_noise_is_kept_while_noise_arrives(store: ShadowStore) -> None:
    for now in (100.0, 200.0, 300.0):
        store.apply([route_delta(noise=(NoiseDelta("$.at", 1),))], now=now)
    store.prune(310.0, max_age_s=50.0, max_paths_per_route=100)
    assert [(p.rule_path, p.noise_count) for p in store.paths("projects#index")] == [("$.at", 3)]
    store.prune(400.0, max_age_s=50.0, max_paths_per_route=100)
    assert store.paths("projects#index") == []


def test_prune_by_count_drops_least_frequent_first_per_route(store: ShadowStore) -> None:
    counts = {"$.a": 1, "$.b": 7, "$.c": 3, "$.d": 5, "$.e": 2}
    paths = tuple(path_delta(p, n, seen=990.0, examples=1) for p, n in counts.items())
    store.apply([route_delta("r1", paths=paths), route_delta("r2", paths=paths[:2])], now=990.0)
    store.review("r1", "$.a", "accepted", "rounding differs on purpose", "ana", now=995.0)

    removed = store.prune(1000.0, max_age_s=3600.0, max_paths_per_route=2)

    # r1: $.a is reviewed and stays outside the cap; of the rest, $.b and $.d are the top two.
    assert removed == 2
    assert [p.rule_path for p in store.paths("r1")] == ["$.b", "$.d", "$.a"]
    assert [p.rule_path for p in store.paths("r2")] == ["$.b", "$.a"]
    assert {e["rule_path"] for e in store.examples("r1")} == {"$.a", "$.b", "$.d"}
    assert store.prune(1000.0, max_age_s=3600.0, max_paths_per_route=2) == 0


def _apply_many(kind: str, location: str, worker: int, flushes: int) -> None:
    opened = open_target(kind, location, max_examples_per_path=2)
    try:
        for i in range(flushes):
            delta = RouteDelta(
                route="shared",
                mirrored=1,
                compared=1,
                equal=0,
                different=1,
                dropped={"queue_full": 1},
                paths=(
                    PathDelta("$.common", "changed", 1, float(i), float(i), (example(i),)),
                    PathDelta(f"$.only{worker}", "extra", 2, float(i), float(i)),
                ),
                noise_samples=1,
                noise=(NoiseDelta("$.common", 1),),
                signatures=(SignatureDelta(("$.common",), 1),),
            )
            other = RouteDelta("other", 1, 0, 0, 0, {})
            # The two workers name the routes in opposite orders: row locks must not deadlock.
            routes = [delta, other] if worker == 1 else [other, delta]
            minutes = [TrafficDelta("shared", 7, 1, 0), TrafficDelta("other", 7, 0, 1)]
            opened.apply(routes, now=float(i), traffic=minutes[:: 1 if worker == 1 else -1])
    finally:
        opened.close()


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_two_processes_writing_at_once_end_with_exact_totals(
    target: Target, start_method: str
) -> None:
    flushes = 200
    ctx = multiprocessing.get_context(start_method)
    # Both processes open (and migrate) the fresh store at the same moment too.
    workers = [
        ctx.Process(target=_apply_many, args=(target.kind, target.location, w, flushes))
        for w in (1, 2)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=90)
    assert [w.exitcode for w in workers] == [0, 0]

    reader = target.open()
    try:
        other, shared = reader.routes()
        assert (shared.mirrored, shared.compared, shared.different) == (400, 400, 400)
        assert (shared.equal, shared.noise_samples, shared.dropped) == (0, 400, {"queue_full": 400})
        assert (other.route, other.mirrored) == ("other", 400)
        counts = {p.rule_path: (p.count, p.noise_count) for p in reader.paths("shared")}
        assert counts == {"$.common": (400, 400), "$.only1": (400, 0), "$.only2": (400, 0)}
        assert len(reader.examples("shared", "$.common")) == 2
        # $.common is learned noise (400 of 400 samples): every signature clears.
        assert shared.equal_but_noise == 400
        assert reader.traffic(since=0) == [
            TrafficTotals("other", 0, 400, 0, 0),
            TrafficTotals("shared", 400, 0, 0, 0),
        ]
    finally:
        reader.close()


def _open_and_apply(kind: str, location: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        store = open_target(kind, location)
        store.apply([RouteDelta("r", 1, 1, 1, 0, {})], now=1.0)
        store.close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(repr(exc))


def _open_at_once(kind: str, location: str) -> None:
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_open_and_apply, args=(kind, location, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
    assert sorted([results.get(timeout=5), results.get(timeout=5)]) == ["ok", "ok"]
    store = open_target(kind, location)
    try:
        assert store.routes()[0].compared == 2
    finally:
        store.close()


def test_two_workers_opening_a_new_sqlite_file_at_once_both_succeed(tmp_path: Path) -> None:
    for attempt in range(10):
        _open_at_once("sqlite", str(tmp_path / f"fresh-{attempt}.db"))


def test_two_replicas_migrating_a_new_postgres_database_at_once_both_succeed(
    postgres_admin_url: str,
) -> None:
    for _ in range(5):
        url = create_database(postgres_admin_url)
        try:
            _open_at_once("postgresql", url)
        finally:
            drop_database(postgres_admin_url, url)


def test_counters_go_past_32_bits(store: ShadowStore) -> None:
    big = 2**31 - 1
    for now in (1.0, 2.0):
        store.apply(
            [RouteDelta("r", big, big, big, 0, {"queue_full": big},
                        paths=(path_delta("$.a", big),), noise=(NoiseDelta("$.a", big),),
                        signatures=(SignatureDelta(("$.a",), big),))],
            now=now,
        )  # fmt: skip
    (totals,) = store.routes()
    assert (totals.mirrored, totals.dropped) == (2 * big, {"queue_full": 2 * big})
    (path,) = store.paths("r")
    assert (path.count, path.noise_count) == (2 * big, 2 * big)


def test_text_is_listed_in_codepoint_order(store: ShadowStore) -> None:
    # Whatever the database's collation: "B" < "a" < "b" < "[", as in SQLite and Python.
    names = ["$.b", "$['a b']", "$.B", "$.a"]
    store.apply(
        [route_delta(name, paths=tuple(path_delta(p) for p in names)) for name in names], 1.0
    )
    assert [r.route for r in store.routes()] == sorted(names)
    assert [p.rule_path for p in store.paths("$.a")] == sorted(names)
    store.apply([], 2.0, traffic=[TrafficDelta(name, 1, 1, 0) for name in names])
    assert [t.route for t in store.traffic(since=0)] == sorted(names)


def test_a_nul_in_a_path_is_stored_as_a_replacement_character(store: ShadowStore) -> None:
    # A JSON key can hold NUL; PostgreSQL text can't, and a refused flush would lose its routes.
    nul, stored = "$['a\x00b']", "$['a\ufffdb']"
    store.apply(
        [RouteDelta("r", 2, 2, 0, 2, {}, paths=(path_delta(nul, 2, examples=1),),
                    signatures=(SignatureDelta((nul,), 2),))],
        now=1.0,
    )  # fmt: skip
    assert [(p.rule_path, p.count) for p in store.paths("r")] == [(stored, 2)]
    assert [e["rule_path"] for e in store.examples("r", nul)] == [stored]
    store.review("r", nul, "noise", "", "ann", now=2.0)
    assert store.reviewed() == {"r": frozenset({stored})}
    assert store.routes()[0].equal_but_noise == 2


def test_a_sqlite_store_is_one_file_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "fresh.db"
    db.parent.mkdir()
    store = SqliteShadowStore(db)
    assert repr(store) == f"<SqliteShadowStore {db}>"
    store.close()
    with sqlite3.connect(db) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_an_unopenable_file_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteShadowStore(tmp_path / "missing-dir" / "x.db")


def test_an_unreachable_server_is_store_unavailable_without_the_password() -> None:
    # Port 1: nothing listens there, so this runs (and must pass) without any PostgreSQL.
    with pytest.raises(StoreUnavailable) as raised:
        PostgresShadowStore("postgresql://ann:hunter2@127.0.0.1:1/strangler")
    assert isinstance(raised.value.__cause__, DBAPIError)
    assert "127.0.0.1" in str(raised.value)
    assert "hunter2" not in str(raised.value)


@pytest.mark.parametrize(
    "url", ["mysql://ann:hunter2@db/strangler", "postgresql+psycopg2://ann:hunter2@db/strangler",
            "ann:hunter2@db"],
)  # fmt: skip
def test_a_url_for_another_database_is_refused_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        PostgresShadowStore(url)
    assert "hunter2" not in str(raised.value)


def test_a_missing_database_is_store_unavailable(postgres_url: str) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        PostgresShadowStore(postgres_url + "_nope")


def test_the_repr_hides_the_password(postgres: Target) -> None:
    url = make_url(postgres.location)
    # Trust authentication (the local test server) ignores a password; other servers need theirs.
    secret = url.password or "hunter2"
    store = PostgresShadowStore(url.set(password=str(secret)).render_as_string(hide_password=False))
    try:
        assert str(secret) not in repr(store)
        assert repr(store).startswith(
            f"<PostgresShadowStore postgresql+psycopg://{url.username}:***@"
        )
    finally:
        store.close()


def _waiting_for_advisory_lock(admin: psycopg.Connection[Any]) -> bool:
    row = admin.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).fetchone()
    return row is not None and row[0] > 0


def test_a_replica_waits_for_the_migration_lock(postgres: Target) -> None:
    opened: list[ShadowStore] = []
    with psycopg.connect(postgres.location, autocommit=True) as holder:
        # Another replica is migrating: it holds the lock.
        holder.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        opener = threading.Thread(target=lambda: opened.append(postgres.open()))
        opener.start()
        deadline = time.monotonic() + 10
        while not _waiting_for_advisory_lock(holder):
            assert time.monotonic() < deadline, "the opening store never asked for the lock"
            time.sleep(0.02)
        # It waits before touching the schema.
        assert opened == []
        assert holder.execute("SELECT to_regclass('alembic_version')").fetchone() == (None,)
        holder.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))
        opener.join(timeout=30)
    (store,) = opened
    try:
        store.apply([route_delta()], now=1.0)
        assert store.routes()[0].mirrored == 3
    finally:
        store.close()
    assert _schema(postgres) == (TABLES, [HEAD])


def test_example_ids_go_past_32_bits(postgres: Target) -> None:
    store = postgres.open()
    try:
        with psycopg.connect(postgres.location, autocommit=True) as conn:
            conn.execute(
                "SELECT setval(pg_get_serial_sequence('shadow_examples', 'id'), 3e9::bigint)"
            )
        store.apply([route_delta(paths=(path_delta("$.a", examples=2),))], now=1.0)
        assert len(store.examples("projects#index")) == 2
    finally:
        store.close()


def test_a_store_reconnects_after_the_server_dropped_its_connection(postgres: Target) -> None:
    store = postgres.open()
    try:
        store.apply([route_delta()], now=1.0)
        with psycopg.connect(postgres.location, autocommit=True) as admin:
            dropped = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'strangler'"
            ).fetchone()
        assert dropped is not None and dropped[0] >= 1
        store.apply([route_delta()], now=2.0)
        assert store.routes()[0].mirrored == 6
    finally:
        store.close()


@pytest.mark.parametrize(
    "build",
    [
        lambda: PathDelta("$.a", "renamed", 1, 1.0, 1.0),
        lambda: PathDelta("$.a", "changed", -1, 1.0, 1.0),
        lambda: PathDelta("$.a", "changed", 1, 2.0, 1.0),
        lambda: NoiseDelta("$.a", -1),
        lambda: RouteDelta("r", -1, 0, 0, 0, {}),
        lambda: RouteDelta("r", 0, 0, 0, 0, {"queue_full": -2}),
        lambda: SignatureDelta(("$.b", "$.a"), 1),
        lambda: SignatureDelta(("$.a", "$.a"), 1),
        lambda: SignatureDelta(("$.a",), -1),
        lambda: TrafficDelta("r", 1, -1, 0),
        lambda: TrafficDelta("r", 1, 1, 0, legacy_errors=2),
    ],
)
def test_malformed_deltas_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


def _store_waits_for_a_lock(postgres: Target) -> bool:
    with psycopg.connect(postgres.location, autocommit=True) as watcher:
        row = watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'strangler' AND wait_event_type = 'Lock'"
        ).fetchone()
    return row is not None and row[0] > 0


def test_a_flush_chosen_as_a_deadlock_victim_runs_again_and_counts_once(
    postgres: Target,
) -> None:
    store = postgres.open()
    try:
        store.apply([route_delta("a"), route_delta("b")], now=1.0)
        finished: list[float] = []

        def flush() -> None:
            store.apply([route_delta("a"), route_delta("b")], now=2.0)
            finished.append(time.monotonic())

        with psycopg.connect(postgres.location) as other:  # one transaction until commit
            # Whichever backend's deadlock_timeout runs out first is the victim: this one waits
            # far longer than the store's (1 s), so a busy machine cannot make it the victim.
            other.execute("SET deadlock_timeout = '20s'")
            other.execute("UPDATE shadow_routes SET noise_samples = noise_samples + 100"
                          " WHERE route = 'b'")  # fmt: skip
            flusher = threading.Thread(target=flush)
            flusher.start()
            deadline = time.monotonic() + 10
            while not _store_waits_for_a_lock(postgres):  # the flush holds a, waits for b
                assert time.monotonic() < deadline, "the flush never waited for route b"
                time.sleep(0.02)
            # Close the cycle. The flush waited first, so its backend finds the deadlock first
            # (after deadlock_timeout) and rolls the flush back; this update then goes on.
            other.execute("UPDATE shadow_routes SET noise_samples = noise_samples + 100"
                          " WHERE route = 'a'")  # fmt: skip
            other.commit()
        flusher.join(timeout=30)
        assert len(finished) == 1
        totals = {t.route: (t.mirrored, t.noise_samples) for t in store.routes()}
        assert totals == {"a": (6, 102), "b": (6, 102)}
    finally:
        store.close()
