"""The demo's canary stack for tests: demo.yaml with its ports rewritten as the runner does, the
real gateway (`strangler run`, with its analyzer) in front of the real legacy and new apps, and
the demo's traffic generator with its stream of project detail reads from many cookie-keeping
clients. Only the canary's plan is shortened (PLAN), so a rollout moves within seconds.

Shared by tests/integration/test_demo_canary.py (what the analyzer did, read with the CLI) and
tests/e2e/test_demo_live.py (the same, watched on the dashboard).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from strangler.demo.cookie_store import DEMO_SECRET_KEY_BASE, SECRET_KEY_BASE_ENV
from strangler.demo.legacy_app import create_legacy_app
from strangler.demo.new_app import ChaosMode, create_new_app
from strangler.demo.runner import JWKS_PATH, demo_config
from strangler.demo.traffic import CANARY_ROUTE, TrafficStats, generate_traffic
from tests.integration.demo_servers import free_ports, serve
from tests.integration.gateway_process import GatewayProcess

# 1 s intervals, the shortest a plan allows. At the demo's first step, 5 %, new would see about
# two of the stream's 40 requests a second; starting at 25 % gives it about ten per interval,
# twice min_requests, so no interval waits for traffic. The latency checks get 50 ms of slack
# instead of 5: both apps run on threads of this process, beside the traffic generator, so
# their tails measure the test host more than the apps. A broken app fails the error checks,
# which keep the demo's limits.
PLAN: dict[str, Any] = {
    "steps": [25, 50, 100],
    "interval_s": 1,
    "min_requests": 5,
    "checks": {"latency_slack_ms": 50},
}
# Traffic as the runner sends it, less the mix: the canary's own stream does the work here.
MIX_RATE_PER_S = 2.0
API_RATE_PER_S = 40.0


@dataclass(frozen=True, slots=True)
class CanaryStack:
    gateway: GatewayProcess
    new_url: str
    config_path: Path


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@contextlib.contextmanager
def demo_stack(folder: Path) -> Iterator[CanaryStack]:
    """A demo stack whose config and store live in `folder`: rollout state lives in the
    gateway's store, next to the config, so a new folder starts from the YAML's canary."""
    (admin_port,) = free_ports(1)
    with contextlib.ExitStack() as running, pytest.MonkeyPatch.context() as env:
        # Read by the legacy app's factory and by the gateway's `rails.secret_key_base_env`.
        env.setenv(SECRET_KEY_BASE_ENV, DEMO_SECRET_KEY_BASE)
        issuer = str(demo_config(0, 0, 0, admin_port)["identity"]["issuer"])
        legacy_url = running.enter_context(serve(create_legacy_app(), "/up"))
        jwks_url = f"http://127.0.0.1:{admin_port}{JWKS_PATH}"
        new_app = create_new_app(jwks_url=jwks_url, issuer=issuer, chaos=ChaosMode.OK)
        new_url = running.enter_context(serve(new_app, "/healthz"))
        config = demo_config(0, _port(legacy_url), _port(new_url), admin_port)
        route = next(r for r in config["routes"] if r["name"] == CANARY_ROUTE)
        route["canary"]["plan"].update(PLAN)
        # The demo's SLO would race the analyzer to roll the canary back; here the analyzer
        # acts and the SLO only watches (its own rollback is tests/integration/test_slo_gateway).
        for slo in config["slos"]:
            slo["on_page"] = "none"
        path = folder / "demo.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        gateway = GatewayProcess(path).start()
        running.callback(gateway.stop)
        yield CanaryStack(gateway, new_url, path)


@contextlib.contextmanager
def demo_traffic(url: str) -> Iterator[TrafficStats]:
    """The demo's traffic into `url` on a thread of its own until the block ends; the tally
    fills while it runs."""
    stats = TrafficStats()
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    sending = generate_traffic(
        url, MIX_RATE_PER_S, None, stop, stats=stats, api_rate_per_s=API_RATE_PER_S
    )
    thread = threading.Thread(target=loop.run_until_complete, args=(sending,), name="traffic")
    thread.start()
    try:
        yield stats
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()
