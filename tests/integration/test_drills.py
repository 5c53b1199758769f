"""Fault injection on a real gateway: YAML `faults:` and `strangler drill` abort or delay the
chosen side's requests before any upstream is contacted, count them, mark them in the access
log, and feed the canary judge like real failures, so a drill on a canary's new side makes the
analyzer roll it back; a drill ends by itself."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli
from tests.integration.probes import steady_traffic, wait_until
from tests.integration.test_rollout import PLAN_ROUTE, _audit, _stage, _verdicts, _wait_for
from tests.integration.upstreams import EchoUpstream

FAULTED = """\
  - name: asked
    match: "GET /asked/*rest"
    stage: new
    faults:
      abort: {percent: 100, status: 503}
      only_when_header: X-Strangler-Fault
      side: new
  - name: slow
    match: "GET /slow/*rest"
    stage: new
    faults:
      delay: {percent: 100, ms: 300}
  - name: legacy-only
    match: "GET /old/*rest"
    stage: legacy
    faults:
      abort: {percent: 100}
      side: new
  - name: plain
    match: "GET /plain/*rest"
    stage: new
"""
TRUSTED = 'canary: {override: {networks: ["127.0.0.1/32"]}}\n'


def _injected(gw: GatewayProcess) -> dict[tuple[str, str], float]:
    assert gw.admin_url is not None
    text = httpx.get(gw.admin_url + "/metrics", timeout=10, trust_env=False).text
    found: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if line.startswith("strangler_faults_injected_total{"):
            labels, value = line[len("strangler_faults_injected_total{") :].split("} ")
            pairs = dict(item.split("=", 1) for item in labels.split(","))
            found[(pairs["route"].strip('"'), pairs["kind"].strip('"'))] = float(value)
    return found


def test_yaml_faults_apply_on_their_side_only_when_asked_and_are_counted_and_logged(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream], tmp_path: Path
) -> None:
    legacy, new = upstreams
    log_path = tmp_path / "access.log"
    gw = start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=FAULTED,
        extra=TRUSTED + f"access_log: {{path: {str(log_path)!r}}}\n",
    )
    with httpx.Client(timeout=5.0) as client:
        # Header-gated: only requests carrying it, from a trusted network, get the fault.
        assert client.get(f"{gw.url}/asked/1").status_code == 200
        aborted = client.get(f"{gw.url}/asked/2", headers={"X-Strangler-Fault": "1"})
        assert aborted.status_code == 503
        assert aborted.headers["content-type"].startswith("application/problem+json")
        assert "injected by a drill" in aborted.json()["detail"]
        # The side the fault names only: legacy answers this route, so nothing happens.
        assert client.get(f"{gw.url}/old/1").status_code == 200
        started = time.monotonic()
        assert client.get(f"{gw.url}/slow/1").status_code == 200
        assert time.monotonic() - started >= 0.3
        assert client.get(f"{gw.url}/plain/1").status_code == 200
    # The aborted request never reached the backend.
    assert not any("/asked/2" in hit for hit in new.hits)
    assert any("/asked/1" in hit for hit in new.hits)
    wait_until(
        lambda: _injected(gw) == {("asked", "abort"): 1.0, ("slow", "delay"): 1.0},
        "the faults to be counted",
    )
    assert gw.stop() == 0
    lines = [orjson.loads(line) for line in log_path.read_text().splitlines()]
    faults = {line["route"]: (line["fault"], line["status"], line["side"]) for line in lines}
    assert faults["asked"] in {(None, 200, "new"), ("abort", 503, "new")}
    assert sorted(line["fault"] or "" for line in lines if line["route"] == "asked") == [
        "",
        "abort",
    ]
    assert faults["slow"] == ("delay", 200, "new")
    assert faults["legacy-only"] == (None, 200, "legacy")
    assert faults["plain"] == (None, 200, "new")


def test_a_drill_applies_within_a_second_and_stops_applying_when_it_expires(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=FAULTED, extra=TRUSTED, workers=2)
    config = str(gw.config_path)
    refused = run_cli("drill", "plain", "--abort", "100", "-r", "no duration", "--config", config)
    assert refused.returncode == 2 and "--for" in refused.stderr
    set_up = run_cli(
        "drill", "plain", "--abort", "100", "--status", "502", "--for", "3s",
        "-r", "game day", "--config", config,
    )  # fmt: skip
    assert set_up.returncode == 0, set_up.stderr
    assert "drill on plain: abort 100 % (502) on new until" in set_up.stdout
    with httpx.Client(timeout=5.0) as client:

        def status() -> int:
            return client.get(f"{gw.url}/plain/1").status_code

        wait_until(lambda: status() == 502, "the drill in every worker", timeout_s=2)
        # No state change marks the end: each worker reads the expiry in the fault itself.
        wait_until(lambda: status() == 200 and status() == 200, "the drill to expire", timeout_s=5)
    audit = orjson.loads(run_cli("audit", "plain", "--json", "--config", config).stdout)
    assert [(entry["action"], entry["after"]["fault"]) for entry in audit] == [
        ("drill", {"abort": {"percent": 100.0, "status": 502}, "side": "new"})
    ]
    assert audit[0]["reason"] == "game day" and audit[0]["actor"].startswith("cli:")
    cleared = run_cli("drill", "plain", "--clear", "-r", "over", "--config", config)
    assert cleared.returncode == 2 and "no drill in force" in cleared.stderr

    # The admin API's door, through the same changes table: set one, then end it early.
    made = run_cli(
        "token", "create", "--scope", "write", "--name", "ci", "--json", "--config", config
    )
    writer = {"Authorization": f"Bearer {orjson.loads(made.stdout)['token']}"}
    url = f"{gw.admin_url}/api/v1/routes/plain/drill"
    fault = {"delay": {"percent": 100, "ms": 200}, "side": "both"}
    assert httpx.post(url, json={"reason": "x", "fault": fault, "for_s": 60}).status_code == 401
    bad = httpx.post(url, json={"reason": "x", "fault": fault}, headers=writer)
    assert bad.status_code == 400 and "duration" in bad.json()["detail"]
    done = httpx.post(url, json={"reason": "slow day", "fault": fault, "for_s": 60}, headers=writer)
    assert done.status_code == 200, done.text
    assert (done.json()["action"], done.json()["actor"]) == ("drill", "token:ci")
    detail = httpx.get(f"{gw.admin_url}/api/v1/routes/plain", headers=writer).json()
    assert (detail["drill"]["fault"], detail["drill"]["reason"]) == (fault, "slow day")
    with httpx.Client(timeout=5.0) as client:

        def delayed() -> bool:
            started = time.monotonic()
            client.get(f"{gw.url}/plain/1")
            return time.monotonic() - started >= 0.2

        wait_until(delayed, "the API's drill in force", timeout_s=2)
        ended = httpx.post(url, json={"reason": "enough", "clear": True}, headers=writer)
        assert ended.status_code == 200, ended.text
        assert (ended.json()["action"], ended.json()["after"]) == ("drill_clear", {})
        wait_until(lambda: not delayed() and not delayed(), "the drill to end", timeout_s=2)


def test_a_drill_on_a_canarys_new_side_makes_the_analyzer_roll_it_back(
    upstreams: tuple[EchoUpstream, EchoUpstream], start_gateway: GatewayFactory
) -> None:
    legacy, new = upstreams
    gateway = start_gateway(
        legacy=legacy.url, new=new.url, routes=PLAN_ROUTE.format(interval=2, min_requests=10)
    )
    assert _wait_for(lambda: bool(_audit(gateway)), 10)
    # The drill lands before any traffic: with none, the analyzer has nothing to judge, so it
    # cannot promote the healthy canary while the CLI starts (seen on a loaded machine).
    drill = run_cli(
        "drill", "chaos", "--abort", "50", "--side", "new", "--for", "60s",
        "-r", "does the analyzer catch it?", "--config", str(gateway.config_path),
    )  # fmt: skip
    assert drill.returncode == 0, drill.stderr
    with steady_traffic(f"{gateway.url}/chaos/x", 150) as sides:
        assert _wait_for(lambda: _stage(gateway) == "legacy", 15), _verdicts(gateway)
    changes = _audit(gateway)
    assert [(c.action, c.actor.split(":")[0]) for c in changes] == [
        ("start", "analyzer"),
        ("drill", "cli"),
        ("rollback", "analyzer"),
    ]
    assert changes[1].after["fault"] == {"abort": {"percent": 50.0, "status": 503}, "side": "new"}
    verdict = _verdicts(gateway)[-1]
    assert verdict.outcome == "fail" and verdict.action == "rollback"
    failed = {c["name"] for c in verdict.verdict["checks"] if c["outcome"] == "fail"}  # type: ignore[union-attr]
    assert "error_rate" in failed
    # Aborted answers reached the client as failures, never from legacy.
    assert "error:503" in sides
