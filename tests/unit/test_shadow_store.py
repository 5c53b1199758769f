"""SqliteShadowStore on real SQLite files: additive deltas, concurrent writers, bounds, reviews."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler.control.store import (
    UNSEEN_DIFFERENCES,
    NoiseDelta,
    PathDelta,
    RouteDelta,
    SignatureDelta,
    StoreUnavailable,
    TrafficDelta,
    TrafficTotals,
)
from strangler.control.stores import SqliteShadowStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteShadowStore]:
    opened = SqliteShadowStore(tmp_path / "shadow.db", max_examples_per_path=3)
    yield opened
    opened.close()


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


def test_fresh_file_is_created_with_its_schema(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "fresh.db"
    db.parent.mkdir()
    SqliteShadowStore(db).close()
    with sqlite3.connect(db) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert {
        "shadow_routes",
        "shadow_dropped",
        "shadow_paths",
        "shadow_examples",
        "shadow_signatures",
        "traffic",
    } <= tables
    assert mode == "wal"
    assert version == [("v0004",)]


@pytest.mark.parametrize("previous", ["v0001", "v0002", "v0003"])
def test_a_database_at_a_previous_schema_is_upgraded_and_keeps_its_data(
    tmp_path: Path, previous: str
) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine

    from strangler.control.stores.sqlite import MIGRATIONS_DIR

    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, previous)
        conn.exec_driver_sql(
            "INSERT INTO shadow_routes (route, mirrored, compared, equal, different, "
            "noise_samples, updated_at) VALUES ('r', 5, 4, 3, 1, 0, 1.0)"
        )
    engine.dispose()
    store = SqliteShadowStore(db)
    try:
        (totals,) = store.routes()
        # The old comparison has no signature: it stays different, whatever is reviewed later.
        assert (totals.compared, totals.equal, totals.equal_but_noise) == (4, 3, 0)
        store.apply(
            [
                RouteDelta(
                    "r", 1, 1, 0, 1, {},
                    paths=(path_delta("$.x"),),
                    signatures=(SignatureDelta(("$.x",), 1),),
                )
            ],
            now=2.0,
        )  # fmt: skip
        store.review("r", "$.x", "noise", "", "ann", now=3.0)
        (totals,) = store.routes()
        assert (totals.compared, totals.different, totals.equal_but_noise) == (5, 2, 1)
    finally:
        store.close()


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


def test_traffic_adds_up_per_route_and_reads_from_a_minute_on(store: SqliteShadowStore) -> None:
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


def test_a_review_clears_earlier_comparisons_too(store: SqliteShadowStore) -> None:
    store.apply([_different("r", (("$.a",), 5), (("$.a", "$.b"), 3), (("$.b",), 2))], now=1.0)
    assert store.routes()[0].equal_but_noise == 0
    store.review("r", "$.a", "accepted", "renamed on purpose", "ann", now=2.0)
    # Only the 5 that differed at $.a alone: the 3 that also differed at $.b still count.
    assert store.routes()[0].equal_but_noise == 5
    store.review("r", "$.b", "noise", "", "ann", now=3.0)
    assert store.routes()[0].equal_but_noise == 10


def test_noise_learned_by_any_worker_clears_every_workers_comparisons(
    store: SqliteShadowStore,
) -> None:
    # Worker 1 compared; worker 2 did the noise sampling. Neither alone knows both halves.
    store.apply([_different("r", (("$.at",), 4), (("$.at", "$.name"), 1))], now=1.0)
    store.apply([_different("r", samples=10, noise=(NoiseDelta("$.at", 9),))], now=2.0)
    assert store.routes()[0].equal_but_noise == 4


def test_a_truncated_comparison_is_never_cleared(store: SqliteShadowStore) -> None:
    store.apply([_different("r", (("$.a", UNSEEN_DIFFERENCES), 2))], now=1.0)
    store.review("r", "$.a", "noise", "", "ann", now=2.0)
    assert store.routes()[0].equal_but_noise == 0


def test_signatures_are_pruned_to_the_most_frequent(store: SqliteShadowStore) -> None:
    store.apply([_different("r", (("$.a",), 5), (("$.b",), 1), (("$.c",), 3))], now=1.0)
    store.prune(2.0, max_age_s=1e9, max_paths_per_route=100, max_signatures_per_route=2)
    store.review("r", "$.b", "noise", "", "ann", now=3.0)
    store.review("r", "$.c", "noise", "", "ann", now=3.0)
    # $.b's signature was the rarest and is gone: its comparison stays different.
    assert store.routes()[0].equal_but_noise == 3


def test_apply_then_read_back(store: SqliteShadowStore) -> None:
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


def test_two_applies_add_up(store: SqliteShadowStore) -> None:
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


def test_noise_first_then_real_difference_takes_its_times(store: SqliteShadowStore) -> None:
    store.apply([route_delta(noise=(NoiseDelta("$.x", 2),))], now=900.0)
    store.apply([route_delta(paths=(PathDelta("$.x", "extra", 1, 10.0, 20.0),))], now=950.0)
    [path] = store.paths("projects#index")
    assert (path.kind, path.count, path.noise_count) == ("extra", 1, 2)
    assert (path.first_seen, path.last_seen) == (10.0, 20.0)


def test_paths_are_ranked_by_count(store: SqliteShadowStore) -> None:
    deltas = (path_delta("$.low", 1), path_delta("$.high", 9), path_delta("$.mid", 5))
    store.apply([route_delta(paths=deltas)], now=1.0)
    assert [p.rule_path for p in store.paths("projects#index")] == ["$.high", "$.mid", "$.low"]


def _apply_many(db: str, worker: int, flushes: int) -> None:
    opened = SqliteShadowStore(db, max_examples_per_path=2)
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
            )
            opened.apply([delta], now=float(i))
    finally:
        opened.close()


@pytest.mark.parametrize("start_method", ["spawn", "fork"])
def test_two_processes_writing_at_once_end_with_exact_totals(
    tmp_path: Path, start_method: str
) -> None:
    db = str(tmp_path / "shared.db")
    flushes = 200
    ctx = multiprocessing.get_context(start_method)
    # Both processes open (and migrate) the fresh file at the same moment too.
    workers = [ctx.Process(target=_apply_many, args=(db, w, flushes)) for w in (1, 2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=90)
    assert [w.exitcode for w in workers] == [0, 0]

    reader = SqliteShadowStore(db)
    try:
        [totals] = reader.routes()
        assert (totals.mirrored, totals.compared, totals.different) == (400, 400, 400)
        assert (totals.equal, totals.noise_samples, totals.dropped) == (0, 400, {"queue_full": 400})
        counts = {p.rule_path: (p.count, p.noise_count) for p in reader.paths("shared")}
        assert counts == {"$.common": (400, 400), "$.only1": (400, 0), "$.only2": (400, 0)}
        assert len(reader.examples("shared", "$.common")) == 2
    finally:
        reader.close()


def test_examples_keep_only_the_newest(store: SqliteShadowStore) -> None:
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


def test_a_single_flush_with_more_examples_than_the_cap(store: SqliteShadowStore) -> None:
    store.apply([route_delta(paths=(path_delta("$.a", 7, examples=7),))], now=1.0)
    assert [e["primary"] for e in store.examples("projects#index", "$.a")] == [6, 5, 4]


def test_review_survives_further_applies(store: SqliteShadowStore) -> None:
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


def test_noise_verdict_needs_no_reason(store: SqliteShadowStore) -> None:
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
    store: SqliteShadowStore, verdict: str, reason: str, error: type[Exception]
) -> None:
    store.apply([route_delta(paths=(path_delta("$.id", 1),))], now=1.0)
    with pytest.raises(error):
        store.review("projects#index", "$.id", verdict, reason, "ana", now=2.0)
    assert store.paths("projects#index")[0].review is None


def test_reviewing_an_unknown_path_is_a_key_error(store: SqliteShadowStore) -> None:
    with pytest.raises(KeyError):
        store.review("projects#index", "$.nope", "noise", "", "ana", now=2.0)


def test_prune_by_age_keeps_recent_and_reviewed(store: SqliteShadowStore) -> None:
    old = (path_delta("$.old", 5, seen=100.0, examples=2), path_delta("$.old_reviewed", seen=100.0))
    store.apply([route_delta(paths=(*old, path_delta("$.new", 1, seen=950.0)))], now=950.0)
    store.review("projects#index", "$.old_reviewed", "noise", "", "ana", now=960.0)

    removed = store.prune(1000.0, max_age_s=500.0, max_paths_per_route=100)

    assert removed == 1
    assert {p.rule_path for p in store.paths("projects#index")} == {"$.new", "$.old_reviewed"}
    assert store.examples("projects#index", "$.old") == []


def test_a_path_only_seen_as_noise_is_kept_while_noise_arrives(store: SqliteShadowStore) -> None:
    for now in (100.0, 200.0, 300.0):
        store.apply([route_delta(noise=(NoiseDelta("$.at", 1),))], now=now)
    store.prune(310.0, max_age_s=50.0, max_paths_per_route=100)
    assert [(p.rule_path, p.noise_count) for p in store.paths("projects#index")] == [("$.at", 3)]
    store.prune(400.0, max_age_s=50.0, max_paths_per_route=100)
    assert store.paths("projects#index") == []


def test_prune_by_count_drops_least_frequent_first_per_route(store: SqliteShadowStore) -> None:
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


def test_reopening_an_existing_file_keeps_data(tmp_path: Path) -> None:
    db = tmp_path / "again.db"
    first = SqliteShadowStore(db)
    first.apply([route_delta(paths=(path_delta("$.a", 2),))], now=1.0)
    first.close()

    for _ in range(2):  # migrating an up-to-date file is a no-op
        again = SqliteShadowStore(db)
        assert [p.count for p in again.paths("projects#index")] == [2]
        assert again.routes()[0].mirrored == 3
        again.close()


def test_an_unopenable_file_is_store_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable):
        SqliteShadowStore(tmp_path / "missing-dir" / "x.db")


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


def _open_and_apply(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    try:
        store = SqliteShadowStore(path)
        store.apply([RouteDelta("r", 1, 1, 1, 0, {})], now=1.0)
        store.close()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test with it
        results.put(repr(exc))


def test_two_workers_opening_a_new_file_at_once_both_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    for attempt in range(10):
        path = str(tmp_path / f"fresh-{attempt}.db")
        barrier, results = context.Barrier(2), context.Queue()
        workers = [
            context.Process(target=_open_and_apply, args=(path, barrier, results)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=30)
        assert sorted([results.get(timeout=5), results.get(timeout=5)]) == ["ok", "ok"]
        store = SqliteShadowStore(path)
        try:
            assert store.routes()[0].compared == 2
        finally:
            store.close()
