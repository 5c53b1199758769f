"""Stage `retired` on a real gateway: promote from new retires a route (audited), new keeps
answering it, a rollback is refused unless forced, and `strangler progress` says whether legacy
can be switched off."""

from __future__ import annotations

import httpx
import orjson

from strangler.cli.progress import legacy_switch_off
from strangler.config import parse_config
from strangler.control.store import DEFAULT_ROUTE, TrafficTotals
from strangler.runtime.snapshot_build import build_snapshot
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import run_cli
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: pages
    match: "GET /pages/*rest"
    stage: legacy
  - name: api
    match: "GET /api/*rest"
    stage: new
"""


def test_a_retired_route_is_served_by_new_and_rolls_back_only_when_forced(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES)
    config = str(gw.config_path)
    promoted = run_cli("promote", "api", "-r", "legacy's code is deleted", "--config", config)
    assert promoted.returncode == 0, promoted.stderr
    assert "promoted api: new → retired" in promoted.stdout
    with httpx.Client() as client:

        def answered_by_new() -> bool:
            return client.get(f"{gw.url}/api/1").json()["name"] == "new"

        wait_until(answered_by_new, "the retired route to be answered by new")
        client.get(f"{gw.url}/pages/1")

    refused = run_cli("rollback", "api", "-r", "oops", "--config", config)
    assert refused.returncode == 2
    assert "api is retired: legacy may no longer have the code" in refused.stderr
    forced = run_cli("rollback", "api", "--force", "-r", "it still does", "--config", config)
    assert forced.returncode == 0, forced.stderr
    audit = orjson.loads(run_cli("audit", "api", "--json", "--config", config).stdout)
    assert [(entry["action"], entry["after"]["stage"]) for entry in audit] == [
        ("rollback", "legacy"),
        ("promote", "retired"),
    ]
    assert audit[0]["evidence"] == {"forced_from_retired": True}

    assert gw.stop() == 0
    result = run_cli("progress", "--config", config, "--days", "3")
    assert result.returncode == 0, result.stderr
    assert (
        "legacy can be switched off: no: 3 routes still on legacy (pages, api, (default)); "
        in result.stdout
    )
    report = orjson.loads(run_cli("progress", "--config", config, "--json").stdout)
    switch_off = report["legacy_switch_off"]
    assert (switch_off["ready"], switch_off["days"]) == (False, 7)
    assert switch_off["legacy_answers_by_route"] == {"pages": 1}


SWITCHED = """\
backends: {legacy: {url: "http://127.0.0.1:1"}, new: {url: "http://127.0.0.1:2"}}
default: new
routes:
  - {name: a, match: "GET /a", stage: retired}
  - {name: b, match: "GET /b", stage: new}
"""


def test_legacy_can_be_switched_off_once_no_route_uses_it_and_it_answered_nothing() -> None:
    snapshot = build_snapshot(parse_config(SWITCHED, "s.yaml"), source="s.yaml")
    quiet = [TrafficTotals("a", 0, 40, 0, 0), TrafficTotals(DEFAULT_ROUTE, 0, 3, 0, 0)]
    assert legacy_switch_off(snapshot, quiet, days=7) == {
        "ready": True,
        "days": 7,
        "routes_on_legacy": [],
        "legacy_answers": 0,
        "legacy_answers_by_route": {},
    }
    # A stage-new route that legacy answered within the window (before its promotion).
    noisy = [TrafficTotals("b", 2, 40, 0, 0)]
    assert legacy_switch_off(snapshot, noisy, days=7)["legacy_answers_by_route"] == {"b": 2}
    assert not legacy_switch_off(snapshot, noisy, days=7)["ready"]
