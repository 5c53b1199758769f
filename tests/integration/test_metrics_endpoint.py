"""`GET /metrics` on a real gateway: exact counts summed over its workers within a second, counts
that survive a killed worker, the side that answered, and who may read it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - {name: projects, match: "GET /projects(/:id)", stage: shadow}
  - {name: reports, match: "GET /reports", stage: legacy}
  - {name: orders, match: "ANY /orders", stage: new}
"""
# Workers publish every 0.5 s from a sweeper that runs every 0.1 s: a request shows within
# 0.6 s; the rest is slack for a loaded 2-core machine.
WITHIN_S = 1.5

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(gw: GatewayProcess, token: str | None = None) -> httpx.Response:
    assert gw.admin_url is not None
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.get(gw.admin_url + "/metrics", headers=headers, timeout=10, trust_env=False)


def _samples(gw: GatewayProcess) -> Samples:
    response = _scrape(gw)
    assert response.status_code == 200, response.text
    found: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _requests(samples: Samples, **labels: str) -> float:
    return samples.get(("strangler_requests_total", tuple(sorted(labels.items()))), 0.0)


def _total_requests(samples: Samples) -> float:
    return sum(v for (name, _), v in samples.items() if name == "strangler_requests_total")


def _get_each_on_a_new_connection(base: str, paths: list[str]) -> None:
    # A new connection per request: SO_REUSEPORT spreads connections, not requests.
    for path in paths:
        with httpx.Client(base_url=base, trust_env=False) as client:
            assert client.get(path).status_code < 500


def _wait_for_count(gw: GatewayProcess, expected: float) -> tuple[Samples, float]:
    """The first scrape whose request total is `expected`, and how long it took."""
    started = time.monotonic()
    while True:
        samples = _samples(gw)
        elapsed = time.monotonic() - started
        if _total_requests(samples) >= expected or elapsed > 5:
            return samples, elapsed
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_scrape_counts_every_request_of_every_worker_exactly(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    workers: int,
) -> None:
    legacy, new = upstreams
    gw = start_gateway(workers=workers, legacy=legacy.url, new=new.url, routes=ROUTES)
    _get_each_on_a_new_connection(gw.url, ["/projects/1"] * 23 + ["/reports"] * 9)
    _get_each_on_a_new_connection(gw.url, ["/orders"] * 5 + ["/nowhere"] * 2)
    # Refused by the gateway itself before any route: side "gateway", route "_default".
    with httpx.Client(base_url=gw.url, trust_env=False) as client:
        assert client.get("/projects//1").status_code == 400

    samples, elapsed = _wait_for_count(gw, 40)
    assert elapsed <= WITHIN_S, f"the counts took {elapsed:.2f} s to show"
    assert _total_requests(samples) == 40
    assert (
        _requests(samples, route="projects", stage="shadow", side="legacy", code_class="2xx") == 23
    )
    assert _requests(samples, route="reports", stage="legacy", side="legacy", code_class="2xx") == 9
    assert _requests(samples, route="orders", stage="new", side="new", code_class="2xx") == 5
    assert _requests(samples, route="_default", stage="none", side="legacy", code_class="2xx") == 2
    assert _requests(samples, route="_default", stage="none", side="gateway", code_class="4xx") == 1

    duration = "strangler_request_duration_seconds_count"
    assert samples[(duration, (("route", "projects"), ("side", "legacy")))] == 23
    upstream = "strangler_upstream_duration_seconds_count"
    assert samples[(upstream, (("backend", "legacy"),))] == 34
    assert samples[(upstream, (("backend", "new"),))] == 5
    # The shadow copies: timed, and compared (the echo servers answer alike but for their name).
    wait_until(
        lambda: (
            _samples(gw).get(("strangler_shadow_duration_seconds_count", (("route", "projects"),)))
            == 23
        ),
        "23 shadow answers timed",
    )
    samples = _samples(gw)
    compared = sum(
        value
        for (name, labels), value in samples.items()
        if name == "strangler_shadow_comparisons_total" and ("route", "projects") in labels
    )
    dropped = sum(
        value
        for (name, labels), value in samples.items()
        if name == "strangler_shadow_dropped_total" and ("route", "projects") in labels
    )
    assert compared + dropped == 23
    assert samples[("strangler_route_stage", (("route", "orders"), ("stage", "new")))] == 1
    assert samples[("strangler_client_requests_refused_total", (("reason", "path"),))] == 1
    workers_seen = {
        dict(labels)["worker"]
        for (name, labels) in samples
        if name == "process_resident_memory_bytes"
    }
    assert workers_seen == {str(index) for index in range(workers)}


def test_counts_of_a_killed_worker_are_kept_and_its_replacement_adds_to_them(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(workers=2, legacy=legacy.url, new=new.url, routes=ROUTES)
    _get_each_on_a_new_connection(gw.url, ["/reports"] * 30)
    samples, _ = _wait_for_count(gw, 30)
    assert _total_requests(samples) == 30
    children = psutil.Process(gw.pid).children()
    assert len(children) == 2
    os.kill(children[0].pid, signal.SIGKILL)
    wait_until(
        lambda: (
            len(psutil.Process(gw.pid).children()) == 2
            and children[0].pid not in [c.pid for c in psutil.Process(gw.pid).children()]
        ),
        "the supervisor replaced the killed worker",
    )
    assert _total_requests(_samples(gw)) == 30
    _get_each_on_a_new_connection(gw.url, ["/reports"] * 10)
    samples, _ = _wait_for_count(gw, 40)
    assert _total_requests(samples) == 40


def _token(config: Path) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "strangler",
            "token",
            "create",
            "--config",
            str(config),
            "--json",
            "--name",
            "prometheus",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    token: str = orjson.loads(result.stdout)["token"]
    return token


def test_metrics_need_a_read_token_unless_public(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, _ = upstreams
    gw = start_gateway(
        legacy=legacy.url, extra='admin: {listen: "127.0.0.1:0", metrics_public: false}\n'
    )
    refused = _scrape(gw)
    assert refused.status_code == 401
    assert refused.headers["content-type"] == "application/problem+json"
    answered = _scrape(gw, token=_token(gw.config_path))
    assert answered.status_code == 200
    assert answered.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "strangler_build_info" in answered.text


def test_metrics_off_answers_404_and_loopback_is_public_by_default(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, _ = upstreams
    off = start_gateway(legacy=legacy.url, extra="metrics: {enabled: false}\n")
    assert _scrape(off).status_code == 404
    on = start_gateway(legacy=legacy.url)
    assert _scrape(on).status_code == 200
