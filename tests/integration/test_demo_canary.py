"""The demo's canary end to end: the analyzer promotes a healthy new app and rolls a broken one
back, as a user of `make demo` sees it; and its shadowed route shows what the demo promises.

The stack is the demo's own: demo.yaml with its ports rewritten as the runner does, the real
gateway (`strangler run`, with its analyzer) in front of the real legacy and new apps, and the
demo's traffic generator with its stream of project detail reads from many cookie-keeping
clients (tests/integration/demo_stack.py). Only the canary's plan is shortened, so a rollout
moves within seconds. The chaos switch is flipped on the new app's own port, as the runner's
banner says, and what the analyzer did is read the way a user reads it: `strangler rollout
status ROUTE --json`; tests/e2e/test_demo_live.py watches the same on the dashboard.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strangler.control.stores import SqliteShadowStore
from strangler.demo.new_app import CHAOS_PATH
from strangler.demo.traffic import CANARY_ROUTE
from tests.integration.demo_stack import CanaryStack, demo_stack
from tests.integration.demo_stack import demo_traffic as _traffic
from tests.integration.gateway_process import run_cli

# An interval is judged 2 s after it ends (the workers' flush grace): a step takes about 3 s.
ROLLOUT_TIMEOUT_S = 20.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[CanaryStack]:
    """A fresh demo stack per test: every test starts from the YAML's canary."""
    with demo_stack(tmp_path) as running:
        yield running


def _rollout(stack: CanaryStack) -> dict[str, Any]:
    """`strangler rollout status CANARY_ROUTE --json`, run as a user runs it."""
    command = [sys.executable, "-m", "strangler", "rollout", "status", CANARY_ROUTE]
    done = subprocess.run(
        [*command, "--json", "--config", str(stack.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _wait_for(
    stack: CanaryStack, what: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """The first rollout report that meets `condition`; each poll is a CLI run (about 0.5 s)."""
    deadline_s = time.monotonic() + ROLLOUT_TIMEOUT_S
    report = _rollout(stack)
    while not condition(report):
        if time.monotonic() > deadline_s:
            raise AssertionError(f"no {what} within {ROLLOUT_TIMEOUT_S:g} s; last report: {report}")
        report = _rollout(stack)
    return report


def _wait_until(what: str, condition: Callable[[], bool]) -> None:
    deadline_s = time.monotonic() + ROLLOUT_TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline_s:
            raise AssertionError(f"no {what} within {ROLLOUT_TIMEOUT_S:g} s")
        time.sleep(0.02)


def _page_alert(stack: CanaryStack) -> dict[str, Any] | None:
    """The demo SLO's page alert once it has fired (firing, or resolved since), else None."""
    store = SqliteShadowStore(stack.config_path.parent / "strangler.db")
    try:
        state = store.slo_states().get("projects-show-new")
    finally:
        store.close()
    alerts: list[dict[str, Any]] = [] if state is None else state["alerts"]  # type: ignore[assignment]
    for alert in alerts:
        if alert["severity"] == "page" and alert["fired_at"] is not None:
            return alert
    return None


def _by_analyzer(report: dict[str, Any], *actions: str) -> bool:
    return any(c["actor"] == "analyzer" and c["action"] in actions for c in report["audit"])


def test_a_healthy_new_app_is_promoted_step_by_step(stack: CanaryStack) -> None:
    with _traffic(stack.gateway.url) as stats:
        report = _wait_for(stack, "promotion", lambda r: _by_analyzer(r, "promote", "complete"))
    changes = report["audit"]  # newest first
    assert [(c["actor"], c["action"]) for c in changes[-2:]] == [
        ("analyzer", "promote"),
        ("analyzer", "start"),
    ]
    assert changes[-1]["after"]["weight_bp"] == 2500
    assert (changes[-2]["before"]["weight_bp"], changes[-2]["after"]["weight_bp"]) == (2500, 5000)
    assert {c["action"] for c in changes} <= {"start", "promote", "complete"}
    passed = [v for v in report["verdicts"] if v["action"] == "promote"]
    assert passed and passed[-1]["outcome"] == "pass"
    assert passed[-1]["verdict"]["summary"].startswith("pass: new ")
    # Sticky users on both sides, and nothing broken: no 5xx, no generator or identity errors.
    assert stats.canary["new"] > 0 and stats.canary["legacy"] > 0
    assert stats.canary_5xx == {}
    assert stats.errors == {}


def test_the_analyzer_rolls_back_once_the_chaos_switch_breaks_the_new_app(
    stack: CanaryStack,
) -> None:
    with _traffic(stack.gateway.url) as stats:
        # The canary is live: some users are answered by new. Its rollout can't complete before
        # the flip: that takes two judged intervals, and the first ends a second after it began.
        _wait_until("an answer from new", lambda: stats.canary["new"] > 0)
        flipped = httpx.post(stack.new_url + CHAOS_PATH, json={"mode": "fail"}, trust_env=False)
        assert flipped.json()["mode"] == "fail"
        report = _wait_for(stack, "rollback", lambda r: _by_analyzer(r, "rollback"))
        # Everyone is on legacy again, though the new app still fails.
        after = httpx.get(stack.gateway.url + "/api/projects/1.json", trust_env=False)
    last = report["audit"][0]
    assert (last["action"], last["actor"]) == ("rollback", "analyzer")
    assert (last["after"]["stage"], report["stage"], report["status"]) == (
        "legacy",
        "legacy",
        "rolled_back",
    )
    failed = report["verdicts"][0]
    assert (failed["outcome"], failed["action"]) == ("fail", "rollback")
    # New's errors failed it (the interval of the flip may catch only a few: then the ratio to
    # legacy's rate fails before the 5 % ceiling does).
    failing = {c["name"] for c in failed["verdict"]["checks"] if c["outcome"] == "fail"}
    assert failing & {"error_rate", "error_ratio"}, failed["verdict"]["summary"]
    assert after.status_code == 200
    assert "x-runtime" in after.headers and "x-served-by" not in after.headers
    # The demo's SLO saw the new app's 503s too: its page alert fired (budget and burn in the
    # store, where `strangler slo status` reads them).
    _wait_until("the SLO's page alert", lambda: _page_alert(stack) is not None)
    fired = _page_alert(stack)
    assert fired is not None and fired["fired_with"]["short"]["bad"] > 0
    # The 503s are the canary's, from new only, and none of them is a generator error.
    assert stats.canary_5xx["new"] > 0 and set(stats.canary_5xx) == {"new"}
    assert stats.errors == {}


def test_the_gateway_never_sends_the_chaos_switch_to_the_new_app(stack: CanaryStack) -> None:
    with httpx.Client(base_url=stack.gateway.url, trust_env=False) as client:
        answers = [
            client.get(CHAOS_PATH),
            client.post(CHAOS_PATH, json={"mode": "fail"}),
            client.post(CHAOS_PATH, data={"mode": "fail"}),
        ]
    # Legacy answered each (the default backend; Rails' X-Runtime), and none reached new.
    assert [a.status_code for a in answers] == [404, 404, 404]
    assert all("x-runtime" in a.headers and "x-served-by" not in a.headers for a in answers)
    assert httpx.get(stack.new_url + CHAOS_PATH, trust_env=False).json()["mode"] == "ok"


def test_the_shadowed_tasks_route_shows_the_real_differences_and_learns_the_noise(
    stack: CanaryStack,
) -> None:
    with httpx.Client(trust_env=False) as client:
        for index in range(30):
            url = f"{stack.gateway.url}/api/projects/{index % 5 + 1}/tasks.json"
            assert client.get(url).headers["x-runtime"]  # the client's answer is legacy's
    assert stack.gateway.stop() == 0  # the worker flushes its results as it stops
    config = str(stack.config_path)
    (route,) = json.loads(run_cli("diffs", "--json", "--config", config).stdout)
    assert (route["route"], route["compared"]) == ("projects.tasks.api", 30)
    done = run_cli("diffs", "projects.tasks.api", "--json", "--config", config)
    assert done.returncode == 0, done.stderr
    paths = {p["rule_path"]: p for p in json.loads(done.stdout)}
    # The deliberate differences: a renamed field, a timestamp format and an off-by-one count,
    # never seen as noise.
    assert paths["$.tasks[*].done"]["kind"] == "missing"
    assert paths["$.tasks[*].completed"]["kind"] == "extra"
    assert paths["$.tasks[*].updated_at"]["kind"] == "changed"
    assert paths["$.meta.pending_count"]["kind"] == "changed"
    intended = ("done", "completed", "updated_at")
    for path in [f"$.tasks[*].{name}" for name in intended] + ["$.meta.pending_count"]:
        assert paths[path]["noise_count"] == 0
    # The natural noise: legacy differs from itself there on every probe, so it is learned.
    samples = route["noise_samples"]
    assert samples >= 2
    assert paths["$.meta.db_runtime_ms"]["noise_count"] == samples
