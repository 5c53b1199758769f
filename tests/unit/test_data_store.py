"""The DataStore contract (each `data diff` run's per-table summary), run against SQLite on a
real file and PostgreSQL on a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.control.data_runs import KEEP_RUNS_PER_TABLE, DataRun, DataStatus
from strangler.control.state import Store
from strangler.control.stores import PostgresShadowStore, SqliteShadowStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteShadowStore(tmp_path / "control.db")
    else:
        opened = PostgresShadowStore(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


def run(table: str, at: float, *, different: int = 0, complete: bool = True) -> DataRun:
    return DataRun(table, at, 1.5, 5000, 4999, 1, 0, different, complete)


def test_the_newest_run_and_the_newest_complete_run_per_table(store: Store) -> None:
    assert store.data_statuses() == {}
    store.add_data_run(run("projects", 100.0))
    store.add_data_run(run("projects", 200.0, different=3, complete=False))
    store.add_data_run(run("users", 150.0, complete=False))
    assert store.data_statuses() == {
        "projects": DataStatus(
            run("projects", 200.0, different=3, complete=False), run("projects", 100.0)
        ),
        "users": DataStatus(run("users", 150.0, complete=False), None),
    }
    assert [r.finished_at for r in store.data_runs("projects")] == [200.0, 100.0]
    assert store.data_runs("projects")[1].differences == 1


def test_each_table_keeps_only_its_newest_runs(store: Store) -> None:
    store.add_data_run(run("users", 1.0))
    for at in range(KEEP_RUNS_PER_TABLE + 5):
        store.add_data_run(run("projects", float(at)))
    kept = store.data_runs("projects", limit=1000)
    assert len(kept) == KEEP_RUNS_PER_TABLE
    assert kept[-1].finished_at == 5.0
    assert len(store.data_runs("users")) == 1
