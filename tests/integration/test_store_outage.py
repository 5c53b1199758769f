"""The control store going away under a running gateway: PostgreSQL stopped mid-load costs no
request, `/readyz` says degraded and why, and the gateway catches up once the server is back.
A gateway that starts while the store is down serves the YAML and says so.

Each test runs a PostgreSQL server of its own (tests/postgres.PrivatePostgres), so stopping it
disturbs nothing else.
"""

from __future__ import annotations

import time

import httpx

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli
from tests.integration.probes import steady_traffic, wait_until
from tests.integration.upstreams import EchoUpstream
from tests.postgres import PrivatePostgres

ROUTES = """\
  - name: chaos
    match: "GET /chaos/*rest"
    stage: canary
    canary: {weight: 100}
"""


def _readiness(gateway: GatewayProcess) -> dict[str, object]:
    response = httpx.get(f"{gateway.admin_url}/readyz", timeout=5.0)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


def _start(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    server: PrivatePostgres,
) -> GatewayProcess:
    legacy, new = upstreams
    return start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        extra=f'store: {{url: "{server.url}"}}\n',
        workers=2,
    )


def test_postgres_stopped_mid_load_costs_no_request_and_the_gateway_catches_up(
    private_postgres: PrivatePostgres,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    start_gateway: GatewayFactory,
) -> None:
    gateway = _start(start_gateway, upstreams, private_postgres)
    assert _readiness(gateway)["status"] == "ready"
    with steady_traffic(f"{gateway.url}/chaos/x", per_second=100) as sides:
        time.sleep(0.5)
        private_postgres.stop()
        wait_until(lambda: _readiness(gateway)["status"] == "degraded", "degraded", 10)
        reason = str(_readiness(gateway)["reason"])
        assert "control store unavailable" in reason
        time.sleep(1.0)  # load while the store is down
        private_postgres.start()
        wait_until(lambda: _readiness(gateway)["status"] == "ready", "ready again", 15)
        # A change made while the gateway was cut off... (here: right after) is caught up.
        done = run_cli(
            "rollback", "chaos", "-r", "outage drill", "--config", str(gateway.config_path)
        )
        assert done.returncode == 0, done.stderr
        changed = time.monotonic()
        wait_until(lambda: sides[-20:] == ["legacy"] * 20, "traffic on legacy", 5)
        caught_up = time.monotonic() - changed
    failed = [side for side in sides if side.startswith("error")]
    assert failed == [], failed[:5]
    assert len(sides) > 200
    assert caught_up < 3.0


def test_a_gateway_started_while_the_store_is_down_serves_the_yaml_and_says_so(
    private_postgres: PrivatePostgres,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    start_gateway: GatewayFactory,
) -> None:
    private_postgres.stop()
    gateway = _start(start_gateway, upstreams, private_postgres)
    assert httpx.get(f"{gateway.url}/chaos/x").headers["x-upstream"] == "new"
    gateway.wait_for_log("starting from the YAML file alone")
    readiness = _readiness(gateway)
    assert readiness["status"] == "degraded"
    private_postgres.start()
    wait_until(lambda: _readiness(gateway)["status"] == "ready", "ready once the store is up", 15)
