"""The SloStore contract (per-SLO good/bad series, latest evaluations), run against SQLite on a
real file and PostgreSQL on a fresh database per test."""

from __future__ import annotations

import threading

import pytest

from strangler.control.state import SloDelta, SloSample, Store
from tests.unit.conftest import open_location


def test_counts_add_up_by_second_and_by_minute(store: Store) -> None:
    # Two workers flush the same seconds: the store holds the sums.
    store.add_slo_counts([SloDelta("api", 600, 10, 1), SloDelta("api", 659, 5, 0)])
    store.add_slo_counts([SloDelta("api", 600, 3, 2), SloDelta("api", 660, 7, 7)])
    store.add_slo_counts([SloDelta("other", 600, 100, 100)])
    assert store.slo_samples("api", 600, 661, 1) == [
        SloSample(600.0, 13, 3),
        SloSample(659.0, 5, 0),
        SloSample(660.0, 7, 7),
    ]
    assert store.slo_samples("api", 0, 720, 60) == [
        SloSample(600.0, 18, 3),
        SloSample(660.0, 7, 7),
    ]
    # Buckets of 10 s, and of 2 minutes, start on their own multiples.
    assert store.slo_samples("api", 600, 700, 10) == [
        SloSample(600.0, 13, 3),
        SloSample(650.0, 5, 0),
        SloSample(660.0, 7, 7),
    ]
    assert store.slo_samples("api", 0, 720, 120) == [SloSample(600.0, 25, 10)]


def test_a_bucket_counts_when_it_starts_inside_the_range(store: Store) -> None:
    store.add_slo_counts([SloDelta("api", second, 1, 0) for second in range(590, 730)])
    fine = store.slo_samples("api", 600.5, 610, 1)
    assert [s.at_s for s in fine] == [float(t) for t in range(601, 610)]
    coarse = store.slo_samples("api", 630, 720.5, 60)
    assert [s.at_s for s in coarse] == [660.0, 720.0]
    with pytest.raises(ValueError, match="bucket_s"):
        store.slo_samples("api", 0, 1, 7)


def test_pruning_is_per_slo_and_per_series(store: Store) -> None:
    store.add_slo_counts([SloDelta(name, t, 1, 0) for name in ("a", "b") for t in (60, 3700)])
    removed = store.prune_slo_counts("a", before=120, fine_before=3600)
    assert removed == 2  # a's minute 1 and second 60
    assert store.slo_samples("a", 0, 4000, 1) == [SloSample(3700.0, 1, 0)]
    assert store.slo_samples("a", 0, 4000, 60) == [SloSample(3660.0, 1, 0)]
    assert len(store.slo_samples("b", 0, 4000, 1)) == 2


def test_the_latest_evaluation_replaces_the_one_before(store: Store) -> None:
    assert store.slo_states() == {}
    store.put_slo_state("api", {"name": "api", "budget_left_pct": 90.0}, 10.0)
    store.put_slo_state("web", {"name": "web"}, 10.0)
    store.put_slo_state("api", {"name": "api", "budget_left_pct": 80.5}, 20.0)
    assert store.slo_states() == {
        "api": {"name": "api", "budget_left_pct": 80.5},
        "web": {"name": "web"},
    }


def test_concurrent_flushes_lose_nothing(location: tuple[str, str]) -> None:
    stores = [open_location(location) for _ in range(4)]
    try:

        def flush(store: Store) -> None:
            for n in range(25):
                store.add_slo_counts([SloDelta("api", 1000 + n % 3, 2, 1)])

        threads = [threading.Thread(target=flush, args=(s,)) for s in stores]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        samples = stores[0].slo_samples("api", 0, 2000, 60)
        assert [(s.good, s.bad) for s in samples] == [(200, 100)]
    finally:
        for store in stores:
            store.close()
