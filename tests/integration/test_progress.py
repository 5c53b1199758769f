"""`strangler progress` after real traffic: routes by stage, the share answered by new, and what
each route needs next; counts come from every worker through the store."""

from __future__ import annotations

import subprocess
import sys

import httpx
import orjson
import pytest

from strangler.cli.progress import MIN_COMPARED, next_step
from strangler.control.store import RouteTotals, TrafficTotals
from strangler.routing.model import Stage
from tests.integration.conftest import GatewayFactory
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: pages
    match: "GET /pages/*rest"
    stage: legacy
  - name: api
    match: "GET /api/*rest"
    stage: new
  - name: status
    match: "GET /status/:code"
    stage: new
  - name: shadowed
    match: "GET /echo/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
    diff: {ignore: ["$.name", "$.headers"]}
"""


def test_progress_counts_every_workers_traffic_by_route_and_side(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, workers=2)
    with httpx.Client() as client:
        for i in range(3):
            client.get(f"{gw.url}/pages/{i}")
        for i in range(2):
            client.get(f"{gw.url}/api/{i}")
        assert client.get(f"{gw.url}/status/503").status_code == 503
        for i in range(4):
            client.get(f"{gw.url}/echo/{i}")
        client.get(f"{gw.url}/nowhere")
    wait_until(lambda: len(new.requests) >= 4, "the shadow copies")
    assert gw.stop() == 0
    result = subprocess.run(
        [sys.executable, "-m", "strangler", "progress", "--config", str(gw.config_path), "--json"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = orjson.loads(result.stdout)
    assert report["routes_by_stage"] == {"legacy": 1, "new": 2, "shadow": 1}
    routes = {r["route"]: r for r in report["routes"]}
    assert routes["pages"]["last_hour"] == {
        "legacy": 3, "new": 0, "legacy_errors": 0, "new_errors": 0}  # fmt: skip
    api, status = routes["api"]["last_hour"], routes["status"]["last_hour"]
    assert (api["new"], api["new_errors"], api["legacy"]) == (2, 0, 0)
    assert (status["new"], status["new_errors"], status["legacy"]) == (1, 1, 0)
    assert routes["status"]["next_step"] == "done; 1 errors on new in the last hour"
    # Shadowed: the client's answers come from legacy.
    assert routes["shadowed"]["last_hour"]["legacy"] == 4
    assert routes["shadowed"]["compared"] == 4
    assert routes["shadowed"]["next_step"] == f"gathering evidence: 4 of {MIN_COMPARED} comparisons"
    assert report["unmatched"]["legacy"] == 1
    # 3 of 11 answers came from new.
    assert report["share_on_new"]["hour"]["new"] == 3
    assert report["share_on_new"]["hour"]["total"] == 11
    text = subprocess.run(
        [sys.executable, "-m", "strangler", "progress", "--config", str(gw.config_path)],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout  # fmt: skip
    assert "answered by new: last hour 27.3% (3 of 11)" in text


def _totals(compared: int, equal: int, noise: int = 0) -> RouteTotals:
    return RouteTotals("r", compared, compared, equal, compared - equal, {}, 0, 0.0, noise)


@pytest.mark.parametrize(
    ("stage", "totals", "expected"),
    [
        (
            Stage.LEGACY,
            None,
            "implement it in the new backend, then `strangler promote ROUTE` (to shadow)",
        ),
        (Stage.SHADOW, None, f"gathering evidence: 0 of {MIN_COMPARED} comparisons"),
        (Stage.SHADOW, _totals(499, 499), f"gathering evidence: 499 of {MIN_COMPARED} comparisons"),
        (Stage.SHADOW, _totals(1000, 990), "blocked by parity: lower bound"),
        (Stage.SHADOW, _totals(1000, 990, noise=10), "ready to leave shadow: parity lower bound"),
        (Stage.SHADOW, _totals(5000, 4995), "ready to leave shadow"),
        (Stage.NEW, None, "done: served by the new backend"),
        (Stage.RETIRED, None, "done: retired, legacy is no longer called"),
    ],
)
def test_the_gate_out_of_shadow_needs_enough_comparisons_and_parity(
    stage: Stage, totals: RouteTotals | None, expected: str
) -> None:
    assert next_step(stage, totals, None).startswith(expected)


def test_a_canary_route_names_its_share_and_errors() -> None:
    from strangler.routing.canary import CanaryPlan

    plan = CanaryPlan(group="projects", weight_bp=500, stickiness=())
    hour = TrafficTotals("r", 90, 10, 0, 1)
    assert next_step(Stage.CANARY, None, hour, plan).startswith(
        "canary at 5 % (group projects), 1 errors in 10 answers from new in the last hour"
    )


def test_errors_on_new_are_named() -> None:
    hour = TrafficTotals("r", 0, 10, 0, 2)
    assert next_step(Stage.NEW, None, hour) == "done; 2 errors on new in the last hour"
