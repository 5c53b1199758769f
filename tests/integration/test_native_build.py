"""A gateway says at startup whether its hot path is compiled."""

from __future__ import annotations

import os

import httpx

from strangler import native
from tests.integration.conftest import GatewayFactory
from tests.integration.upstreams import EchoUpstream


def test_the_gateway_logs_how_its_hot_path_runs_and_serves(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url)
    if os.environ.get("STRANGLER_REQUIRE_NATIVE") == "1":
        expected = f"hot path compiled with mypyc ({len(native.COMPILED_MODULES)} modules)"
    else:
        expected = "hot path"
    gw.wait_for_log(expected)
    answer = httpx.get(gw.url + "/anything?x=1", trust_env=False)
    assert answer.status_code == 200
    assert "stale" not in gw.stderr_text() and "older than" not in gw.stderr_text()
