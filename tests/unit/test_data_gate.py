"""The data gate: which tables block a route's move to `new`, against a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.config import parse_config
from strangler.control.data_runs import DataRun
from strangler.control.stores import SqliteShadowStore
from strangler.data.gate import data_gate_refusals

CONFIG = parse_config(
    """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - {name: projects.index, match: "GET /projects"}
  - {name: projects.show, match: "GET /projects/:id"}
  - {name: users.index, match: "GET /users"}
  - {name: health, match: "GET /health"}
data:
  legacy: {url: "mysql://root@127.0.0.1:3306/legacy"}
  new: {url: "postgresql://127.0.0.1:5432/new"}
  max_age_h: 24
  tables:
    - {name: projects, key: id, routes: ["projects.*"]}
    - {name: users, key: id, routes: [users.index, projects.show]}
""",
    "s.yaml",
)
NOW = 1_000_000.0
HOUR = 3600.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteShadowStore]:
    opened = SqliteShadowStore(tmp_path / "control.db")
    yield opened
    opened.close()


def run(table: str, hours_ago: float, *, different: int = 0, complete: bool = True) -> DataRun:
    return DataRun(table, NOW - hours_ago * HOUR, 2.0, 10, 10, 0, 0, different, complete)


def test_the_gate_refuses_then_allows_a_promotion(store: SqliteShadowStore) -> None:
    never = data_gate_refusals(store, CONFIG, ["projects.index"], NOW)
    assert never == [
        "table projects (read or written by projects.index): never diffed; "
        "run `strangler data diff projects`"
    ]
    store.add_data_run(run("projects", 1, different=3))
    (found,) = data_gate_refusals(store, CONFIG, ["projects.index"], NOW)
    assert "found 3 different" in found
    store.add_data_run(run("projects", 0.5))
    assert data_gate_refusals(store, CONFIG, ["projects.index"], NOW) == []


@pytest.mark.parametrize(
    ("runs", "expected"),
    [
        ([run("projects", 25)], "older than data.max_age_h (24 h)"),
        ([run("projects", 2, complete=False)], "no diff of it has completed"),
        (
            [run("projects", 30), run("projects", 1, complete=False)],
            "its last complete diff is 30.0 h old",
        ),
        ([run("projects", 1, different=2, complete=False)], "at least that many"),
    ],
)
def test_each_reason_is_named(store: SqliteShadowStore, runs: list[DataRun], expected: str) -> None:
    for item in runs:
        store.add_data_run(item)
    (refusal,) = data_gate_refusals(store, CONFIG, ["projects.index"], NOW)
    assert expected in refusal


def test_only_the_tables_of_the_routes_moved_count(store: SqliteShadowStore) -> None:
    store.add_data_run(run("projects", 1))
    assert data_gate_refusals(store, CONFIG, ["health"], NOW) == []
    (refusal,) = data_gate_refusals(store, CONFIG, ["projects.show", "projects.index"], NOW)
    assert refusal.startswith("table users (read or written by projects.show): never diffed")
    no_data = CONFIG.model_copy(update={"data": None})
    assert data_gate_refusals(store, no_data, ["projects.show"], NOW) == []
