"""The SLO budget gate: while an SLO's error budget left is below its `budget_gate`, a person's
promote is refused with the SLO's numbers (`--force` passes and is audited), and the analyzer
holds a passing canary at its weight until the budget is back. A real SQLite store with the
SLO counts workers would flush, and an injected clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from strangler.config import parse_config
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.state import SloDelta, Store
from strangler.control.stores import SqliteShadowStore
from tests.integration.gateway_process import run_cli
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
      plan: {steps: [5, 25, 100], interval_s: 10, min_requests: 10}
  - name: other
    match: "GET /other"
    stage: shadow
slos:
  - name: api-slo
    routes: [api]
    objective: 99
    window_days: 1
    budget_gate: 50
"""


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = SqliteShadowStore(tmp_path / "strangler.db")
    yield opened
    opened.close()


def _spend(store: Store, now: float, *, good: int, bad: int) -> None:
    """Answers counted a minute before `now` (long flushed)."""
    store.add_slo_counts([SloDelta("api-slo", int(now) - 60, good, bad)])


def test_a_person_s_promote_is_refused_below_the_gate_and_forced_with_an_audit(
    store: Store,
) -> None:
    base = parse_config(CONFIG, "strangler.yaml")
    service = ControlService(store, base, clock=lambda: 5000.0)
    # 1 000 answers, 6 bad: 60 % of the 10 allowed spent, 40 % left, under the gate of 50 %.
    _spend(store, 5000.0, good=994, bad=6)
    with pytest.raises(ChangeRefused) as refused:
        service.promote("api", actor="ana", reason="next step")
    assert str(refused.value) == (
        "api stays in canary: api-slo has 40.0 % of its error budget left, below its gate of "
        "50 % (pass --force with a reason to override the budget gate)"
    )
    assert store.audit("api") == []
    # A route no SLO covers is not gated.
    service.promote("other", actor="ana", reason="parity is fine", force=True)
    forced = service.promote("api", actor="ana", reason="the budget is a test's", force=True)
    assert forced.after["weight_bp"] == 2500
    assert forced.evidence is not None
    gate: Any = forced.evidence["budget_gate"]
    assert gate["forced"] is True
    [slo] = gate["slos"]
    assert (slo["slo"], slo["gate_pct"], slo["good"], slo["bad"]) == ("api-slo", 50, 994, 6)
    assert slo["budget_left_pct"] == pytest.approx(40.0)


def test_the_analyzer_holds_a_passing_canary_until_the_budget_is_back(
    store: Store,
) -> None:
    rollout = Rollout(store, CONFIG)
    _spend(store, rollout.now, good=990, bad=10)  # the whole budget spent
    held = rollout.judge()
    assert (held.outcome, held.action) == ("pass", "none")
    assert held.verdict["reason"] == (
        "1 passing interval at 5 %: promote to 25 %; held by the budget gate: api-slo has no "
        "error budget left (100.0 % spent), below its gate of 50 %"
    )
    budget: Any = held.verdict["budget_gate"]
    assert budget["forced"] is False and budget["slos"][0]["bad"] == 10
    assert rollout.weight_bp() == 500
    # Good answers refill the budget (10 bad of 4 000: 75 % left): the next pass promotes.
    _spend(store, rollout.now, good=3000, bad=0)
    moved = rollout.judge()
    assert (moved.outcome, moved.action) == ("pass", "promote")
    assert rollout.weight_bp() == 2500


def test_the_cli_says_why_and_exits_2(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG)
    _spend(store, time.time(), good=90, bad=10)
    refused = run_cli("promote", "api", "-r", "next", "--config", str(path))
    assert refused.returncode == 2
    assert "api-slo has no error budget left" in refused.stderr
    assert "--force" in refused.stderr
