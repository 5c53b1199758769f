"""The data gate on the way to stage new: a canary whose route reads a table that was never
diffed (or whose last diff found differences) is not moved to new or to 100 %, by a person (refused;
`--force` passes and is audited) or by the analyzer (held at its weight until a clean diff).
A real SQLite store, the run summaries `strangler data diff` writes, and an injected clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler.cli.progress import progress_report
from strangler.config import parse_config
from strangler.control.data_runs import DataRun
from strangler.control.reports import rollout_report
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.state import Store
from strangler.control.stores import SqliteShadowStore
from strangler.runtime.snapshot_build import build_snapshot
from tests.integration.test_confirm_gates import Rollout

CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - name: api
    match: "GET /api/*rest"
    stage: canary
    canary:
      weight: 5
      plan: {steps: [5, 100], interval_s: 10, min_requests: 10}
data:
  legacy: {url: "sqlite:///legacy.db"}
  new: {url: "sqlite:///new.db"}
  tables:
    - {name: projects, key: [id], routes: [api]}
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = SqliteShadowStore(tmp_path / "strangler.db")
    yield opened
    opened.close()


def _diffed(store: Store, at: float, *, different: int) -> None:
    store.add_data_run(DataRun("projects", at, 0.5, 100, 100, 0, 0, different, complete=True))


def test_a_person_cannot_move_a_canary_to_new_until_its_table_agrees(store: Store) -> None:
    service = ControlService(store, parse_config(CONFIG, "strangler.yaml"), clock=lambda: 5000.0)
    with pytest.raises(ChangeRefused) as refused:
        service.promote("api", actor="ana", reason="done")
    assert str(refused.value) == (
        "api stays in canary: its data disagrees or is not known to agree: table projects "
        "(read or written by api): never diffed; run `strangler data diff projects` (pass "
        "--force with a reason to override the data gate)"
    )
    _diffed(store, 4000.0, different=3)
    with pytest.raises(ChangeRefused, match="found 3 different"):
        service.promote("api", actor="ana", reason="done")
    forced = service.promote("api", actor="ana", reason="the sync job is fixed", force=True)
    # The plan's last step: every request on new, so nothing reads legacy's data any more.
    assert (forced.after["stage"], forced.after["weight_bp"]) == ("canary", 10_000)
    assert forced.evidence is not None
    gate: Any = forced.evidence["data_gate"]
    assert gate["forced"] is True and "found 3 different" in gate["tables"][0]


def test_the_analyzer_holds_the_step_to_new_until_a_clean_diff(store: Store) -> None:
    rollout = Rollout(store, CONFIG)
    held = rollout.judge()
    assert (held.outcome, held.action) == ("pass", "none")
    assert "held by the data gate: table projects (read or written by api): never diffed" in str(
        held.verdict["reason"]
    )
    assert rollout.weight_bp() == 500
    _diffed(store, rollout.now, different=0)
    moved = rollout.judge()
    assert (moved.outcome, moved.action) == ("pass", "complete")
    assert store.overrides()["api"].stage == "new"


def test_the_route_report_and_progress_say_the_data_gate_blocks_new(store: Store) -> None:
    """What the dashboard's "what blocks the next stage" shows: the route's report (the route
    page, `strangler rollout status`) and `progress` (the routes table) name the table."""
    config = parse_config(CONFIG, "strangler.yaml")
    snapshot = build_snapshot(config, source="strangler.yaml")
    now = time.time()

    def said() -> tuple[str | None, str]:
        (route,) = progress_report(snapshot, store, now=now)["routes"]
        return rollout_report(store, config, "api")["blocked_by"], route["next_step"]

    blocked_by, step = said()
    gate = (
        "table projects (read or written by api): never diffed; run `strangler data diff projects`"
    )
    assert blocked_by == f"the data gate (for new): {gate}"
    assert step.startswith("canary at 5 % (group api), 0 errors in 0 answers from new")
    assert step.endswith(f"; new is blocked by the data gate: {gate}")
    _diffed(store, now - 60, different=2)
    blocked_by, step = said()
    assert blocked_by is not None and "found 2 different" in blocked_by
    assert "found 2 different" in step
    _diffed(store, now - 30, different=0)
    blocked_by, step = said()
    assert blocked_by is None and "data gate" not in step
