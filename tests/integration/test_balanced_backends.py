"""A backend with several servers, against real servers on loopback: balancing, active health
checks, passive outlier detection, the retry of a safe request on another server, /readyz,
`strangler status`, and DNS re-resolution.

Two gateways are shared by the module's tests: `farm_gateway` (two workers, three servers with
checks and outlier detection, one of them slow) and `outlier_gateway` (one worker, outlier
detection alone, round robin).
pytest-xdist deals a module's tests to several processes, each with its own gateways: every test
leaves its gateway's servers as it found them, and steps that build on each other are one test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.abuse import closed_port
from tests.integration.gateway_process import GatewayProcess, run_cli
from tests.integration.probes import wait_until
from tests.integration.server_farm import FarmServer, ServerFarm


@pytest.fixture(scope="module")
def farm() -> Iterator[ServerFarm]:
    farm = ServerFarm()
    yield farm
    farm.stop()


def _start(
    path: Path, text: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> GatewayProcess:
    path.write_text(text)
    return GatewayProcess(path, workers=workers, env=env).start()


@pytest.fixture(scope="module")
def servers(farm: ServerFarm) -> tuple[FarmServer, FarmServer, FarmServer]:
    fast_a, fast_b, slow = farm.add("a"), farm.add("b"), farm.add("slow")
    slow.delay_s = 0.15
    return fast_a, fast_b, slow


@pytest.fixture(scope="module")
def farm_gateway(
    tmp_path_factory: pytest.TempPathFactory,
    servers: tuple[FarmServer, FarmServer, FarmServer],
) -> Iterator[GatewayProcess]:
    urls = ", ".join(f'"{server.url}"' for server in servers)
    text = f"""\
listen: 127.0.0.1:0
backends:
  legacy:
    urls: [{urls}]
    balance: least_request
    health: {{path: /up, interval_s: 0.2, timeout_s: 0.5, unhealthy_after: 2, healthy_after: 2}}
    outlier: {{consecutive_failures: 2, eject_s: 0.5, max_ejected_percent: 50}}
    connect_timeout_s: 0.5
default: legacy
routes: []
admin: {{listen: "127.0.0.1:0"}}
"""
    gateway = _start(tmp_path_factory.mktemp("farm") / "strangler.yaml", text, workers=2)
    yield gateway
    gateway.stop()


def _get(gateway: GatewayProcess, client: httpx.Client | None = None) -> httpx.Response:
    if client is None:
        return httpx.get(f"{gateway.url}/items", timeout=10)
    return client.get(f"{gateway.url}/items", timeout=10)


def _readyz(gateway: GatewayProcess) -> dict[str, object]:
    body: dict[str, object] = httpx.get(f"{gateway.admin_url}/readyz", timeout=5).json()
    return body


def test_least_request_sends_fewer_requests_to_the_slow_server(
    farm_gateway: GatewayProcess, servers: tuple[FarmServer, FarmServer, FarmServer]
) -> None:
    fast_a, fast_b, slow = servers

    def burst(_: int) -> list[int]:
        with httpx.Client() as client:
            return [_get(farm_gateway, client).status_code for _ in range(12)]

    with ThreadPoolExecutor(8) as pool:
        codes = [code for batch in pool.map(burst, range(8)) for code in batch]
    assert codes == [200] * 96
    counts = fast_a.requests(), fast_b.requests(), slow.requests()
    assert sum(counts) == 96
    # Power of two choices: the slow server holds requests longer, so it loses most draws.
    assert slow.requests() < min(fast_a.requests(), fast_b.requests()), counts
    assert _readyz(farm_gateway)["status"] == "ready"


def test_a_server_answering_5xx_is_ejected_for_a_while(
    farm_gateway: GatewayProcess, servers: tuple[FarmServer, FarmServer, FarmServer]
) -> None:
    failing = servers[0]
    failing.status = 500
    try:
        wanted = (
            f"server {failing.address}: ejected for 0.5 s after 2 failures in a row (last: 5xx)"
        )

        def ejected() -> bool:
            _get(farm_gateway)
            return any(wanted in line for line in farm_gateway.stderr_lines)

        wait_until(ejected, "the server answering 500 to be ejected")
    finally:
        failing.status = 200
    farm_gateway.wait_for_log(f"server {failing.address}: ejection over, back in rotation")


def test_a_server_answering_head_with_5xx_is_ejected_too(
    farm_gateway: GatewayProcess, servers: tuple[FarmServer, FarmServer, FarmServer]
) -> None:
    # A HEAD answer ends at its head: its status still counts for outlier detection.
    failing = servers[1]
    wanted = f"server {failing.address}: ejected for 0.5 s after 2 failures in a row (last: 5xx)"
    before = sum(wanted in line for line in farm_gateway.stderr_lines)
    failing.status = 503
    try:

        def ejected() -> bool:
            answer = httpx.head(f"{farm_gateway.url}/items", timeout=10)
            assert answer.status_code in (200, 503)
            return sum(wanted in line for line in farm_gateway.stderr_lines) > before

        wait_until(ejected, "the server answering HEAD with 503 to be ejected")
    finally:
        failing.status = 200
    assert _get(farm_gateway).status_code == 200


def test_a_killed_server_is_marked_down_and_requests_keep_succeeding(
    farm_gateway: GatewayProcess, servers: tuple[FarmServer, FarmServer, FarmServer]
) -> None:
    fast_a, fast_b, slow = servers
    fast_b.kill()
    # Safe requests that meet the dead server's refused connect go to another server.
    codes = [_get(farm_gateway).status_code for _ in range(20)]
    assert codes == [200] * 20
    line = farm_gateway.wait_for_log(f"server {fast_b.address}: down after 2 failed checks")
    assert "of /up" in line
    before = fast_a.requests() + slow.requests()
    assert [_get(farm_gateway).status_code for _ in range(10)] == [200] * 10
    assert fast_a.requests() + slow.requests() == before + 10
    # One server of the backend answers: still ready.
    assert _readyz(farm_gateway) == {
        "status": "ready",
        "config_version": 1,
        "reason": None,
        "backends_down": [],
    }
    # In one test, not three: pytest-xdist may run a module's tests in different processes.
    _status_shows_each_server(farm_gateway, servers)
    _server_comes_back(farm_gateway, fast_b)


def _status_shows_each_server(
    farm_gateway: GatewayProcess, servers: tuple[FarmServer, FarmServer, FarmServer]
) -> None:
    fast_a, fast_b, slow = servers
    config = str(farm_gateway.config_path)
    made = run_cli(
        "token", "create", "--scope", "read", "--name", "ops", "--json", "--config", config
    )
    assert made.returncode == 0, made.stderr
    env = {"STRANGLER_ADMIN_TOKEN": json.loads(made.stdout)["token"]}
    admin = ["--admin", str(farm_gateway.admin_url)]
    shown = run_cli("status", *admin, "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    backend = json.loads(shown.stdout)["backends"]["legacy"]
    states = {server["server"]: server["state"] for server in backend["servers"]}
    assert states == {fast_a.address: "up", fast_b.address: "down", slow.address: "up"}
    assert backend["healthy"] == 2 and backend["balance"] == "least_request"
    table = run_cli("status", *admin, env=env)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if fast_b.address in line)
    assert row.split()[:2] == [fast_b.address, "down"]
    assert "legacy (2 healthy)" in table.stdout
    # From the store alone (no --admin), it says where the servers' health is.
    local = run_cli("status", "--config", config)
    assert local.returncode == 0, local.stderr
    assert "`strangler status --admin URL` asks the running gateway" in local.stdout


def _server_comes_back(farm_gateway: GatewayProcess, fast_b: FarmServer) -> None:
    fast_b.start()
    farm_gateway.wait_for_log(f"server {fast_b.address}: up after 2 passed checks")
    before = fast_b.requests()

    def reaches_b() -> bool:
        _get(farm_gateway)
        return fast_b.requests() > before

    wait_until(reaches_b, "the revived server to get requests")


def test_readyz_is_degraded_while_no_server_of_a_backend_answers(
    farm_gateway: GatewayProcess, servers: tuple[FarmServer, FarmServer, FarmServer]
) -> None:
    for server in servers:
        server.kill()
    wait_until(lambda: _readyz(farm_gateway)["status"] == "degraded", "/readyz degraded")
    ready = _readyz(farm_gateway)
    assert ready["backends_down"] == ["legacy"]
    assert ready["reason"] == "no healthy server in backend(s) legacy"
    # All down: answered as an unreachable backend is.
    answer = _get(farm_gateway)
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] == "connect_refused"
    for server in servers:
        server.start()
    wait_until(lambda: _readyz(farm_gateway)["status"] == "ready", "/readyz ready again")
    assert _get(farm_gateway).status_code == 200


@pytest.fixture(scope="module")
def outlier_gateway(
    tmp_path_factory: pytest.TempPathFactory, farm: ServerFarm
) -> Iterator[tuple[GatewayProcess, FarmServer, list[str]]]:
    alive = farm.add("alive")
    dead = [f"http://127.0.0.1:{closed_port()}", f"http://127.0.0.1:{closed_port()}"]
    urls = ", ".join(f'"{url}"' for url in [alive.url, *dead])
    text = f"""\
listen: 127.0.0.1:0
backends:
  legacy:
    urls: [{urls}]
    balance: round_robin
    outlier: {{consecutive_failures: 1, eject_s: 60, max_ejected_percent: 50}}
default: legacy
routes: []
admin: {{listen: "127.0.0.1:0"}}
"""
    gateway = _start(tmp_path_factory.mktemp("outlier") / "strangler.yaml", text)
    yield gateway, alive, [url.removeprefix("http://") for url in dead]
    gateway.stop()


def test_outlier_detection_never_ejects_past_max_ejected_percent(
    outlier_gateway: tuple[GatewayProcess, FarmServer, list[str]],
) -> None:
    gateway, _, dead = outlier_gateway
    answers = [_get(gateway) for _ in range(8)]
    assert [a.status_code for a in answers] == [200] * 8
    assert {a.headers["x-server"] for a in answers} == {"alive"}
    gateway.wait_for_log("ejected for 60 s after 1 failures in a row (last: connect_refused)")
    # Both dead servers failed, but ejecting the second would take 2 of 3 (> 50 %) out.
    ejected = [line for line in gateway.stderr_lines if "ejected for" in line]
    assert len(ejected) == 1, ejected
    (address,) = [address for address in dead if address in ejected[0]]
    counted = f'strangler_backend_ejections_total{{backend="legacy",server="{address}"}} 1'
    out = f'strangler_backend_server_healthy{{backend="legacy",server="{address}"}} 0'

    def scraped() -> bool:
        text = httpx.get(f"{gateway.admin_url}/metrics", timeout=5).text
        return counted in text and out in text

    wait_until(scraped, "the ejection in /metrics")


def test_a_post_is_not_retried_on_another_server(
    outlier_gateway: tuple[GatewayProcess, FarmServer, list[str]],
) -> None:
    gateway, alive, _ = outlier_gateway
    before = alive.requests("POST")
    codes = [
        httpx.post(f"{gateway.url}/items", content=b"{}", timeout=10).status_code for _ in range(4)
    ]
    # Round robin takes turns among the live server and the dead ones not ejected (at least
    # one: max_ejected_percent): a POST that met a refused connect is answered 502, never sent
    # elsewhere.
    assert set(codes) == {200, 502}
    assert alive.requests("POST") == before + codes.count(200)


def test_a_host_name_is_resolved_again_when_its_ttl_ends(tmp_path: Path, farm: ServerFarm) -> None:
    first = farm.add("first", host="127.0.0.1")
    second = FarmServer(farm, "second", "127.0.0.2")
    second.port = first.port
    second.start()
    farm.servers.append(second)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 app.internal\n")
    text = f"""\
listen: 127.0.0.1:0
backends:
  legacy:
    urls: ["http://app.internal:{first.port}"]
    dns_ttl_s: 0.1
default: legacy
routes: []
admin: {{listen: null}}
"""
    gateway = _start(tmp_path / "strangler.yaml", text, env={"STRANGLER_HOSTS_FILE": str(hosts)})
    try:
        gateway.wait_for_log("app.internal resolves to 127.0.0.1")
        assert _get(gateway).headers["x-server"] == "first"
        hosts.write_text("127.0.0.2 app.internal\n")
        gateway.wait_for_log("app.internal resolves to 127.0.0.2")
        assert {_get(gateway).headers["x-server"] for _ in range(4)} == {"second"}
        # A name with two addresses is two servers.
        hosts.write_text("127.0.0.1 app.internal\n127.0.0.2 app.internal\n")
        gateway.wait_for_log("app.internal resolves to 127.0.0.1, 127.0.0.2")
        assert {_get(gateway).headers["x-server"] for _ in range(12)} == {"first", "second"}
    finally:
        gateway.stop()
