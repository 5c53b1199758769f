"""What the canary analyzer logs when it acts, in words a user reads once: a step up is INFO
("canary step 5 % → 25 %") naming the route or the group; a rollback is a WARNING with its
reason. A real SQLite store and an injected clock; the windows are what workers would flush."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.config import Config, parse_config
from strangler.control.analyzer import FLUSH_GRACE_S, Analyzer
from strangler.control.state import Store, WindowDelta
from strangler.control.stores import SqliteShadowStore
from strangler.rollout import LatencyHistogram

CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - name: api
    match: "GET /api/*rest"
    stage: canary
    canary: {weight: 5, plan: {steps: [5, 25, 100], interval_s: 10, min_requests: 10}}
  - name: cart.show
    match: "GET /cart"
    stage: canary
    canary:
      group: checkout
      weight: 5
      plan: {steps: [5, 25, 100], interval_s: 10, min_requests: 10}
  - name: cart.pay
    match: "POST /cart"
    stage: canary
    canary: {group: checkout}
"""
START = 1000.0
INTERVAL_S = 10


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = SqliteShadowStore(tmp_path / "s.db")
    yield opened
    opened.close()


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


def _interval(store: Store, route: str, *, new_errors: int) -> None:
    """One interval's answers on both sides of `route`: 20 a side, all 2xx on legacy."""
    latency = LatencyHistogram()
    for _ in range(20):
        latency.record(0.010)
    for side, errors in (("legacy", 0), ("new", new_errors)):
        statuses = {"2": 20 - errors, "5": errors} if errors else {"2": 20}
        store.add_windows(
            [WindowDelta(route, side, int(START) + 1, 20, errors, statuses, latency.to_json())]
        )


def _judge_first_interval(store: Store, caplog: pytest.LogCaptureFixture) -> list[str]:
    base: Config = parse_config(CONFIG, "strangler.yaml")
    clock = Clock()
    analyzer = Analyzer(store, lambda: base, holder="test", clock=clock)
    with caplog.at_level(logging.INFO, logger="strangler.analyzer"):
        analyzer.run_once()  # starts the rollouts the YAML describes, at 5 %
        clock.now = START + INTERVAL_S + FLUSH_GRACE_S + 1
        analyzer.run_once()
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records]


def test_a_passing_interval_logs_the_step_as_info(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    for route in ("api", "cart.show", "cart.pay"):
        _interval(store, route, new_errors=0)
    lines = _judge_first_interval(store, caplog)
    assert lines[:2] == [
        "INFO canary route api: rollout started at 5 %, from the config",
        "INFO canary group checkout (cart.show, cart.pay): rollout started at 5 %, from the config",
    ]
    steps = [line.split(" (", 1)[0] for line in lines[2:]]
    assert steps == [
        "INFO canary step 5 % → 25 %: route api",
        "INFO canary step 5 % → 25 %: group checkout",
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_rollback_is_a_warning_with_its_reason(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    _interval(store, "api", new_errors=10)
    for route in ("cart.show", "cart.pay"):
        _interval(store, route, new_errors=0)
    lines = _judge_first_interval(store, caplog)
    [rollback] = [line for line in lines if line.startswith("WARNING")]
    assert rollback.startswith(
        "WARNING canary rolled back: route api is on legacy again, from 5 %: "
        "interval failed at 5 %: roll back to 0 % ("
    )
