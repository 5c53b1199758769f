"""Errors a user can act on: a backend whose host name does not resolve is reported as such
(`dns_failed`, not `connect_refused`), and every error answer the gateway writes itself is
logged with its reason, at most once per (route, kind) a second."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.gateway_process import GatewayProcess, run_gateway
from tests.integration.upstreams import EchoUpstream

# RFC 2606 reserves .invalid: it never resolves, on any resolver.
UNRESOLVABLE = "http://backend.invalid:3000"


@pytest.fixture
def gateway(tmp_path: Path, legacy_upstream: EchoUpstream) -> Iterator[GatewayProcess]:
    path = tmp_path / "strangler.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        "backends:\n"
        f'  legacy: {{url: "{legacy_upstream.url}"}}\n'
        f'  new: {{url: "{UNRESOLVABLE}", connect_timeout_s: 10}}\n'
        '  nowhere: {url: "http://also.invalid:80", connect_timeout_s: 10}\n'
        '  dead: {url: "http://127.0.0.1:9", connect_timeout_s: 10}\n'
        "routes:\n"
        '  - {name: projects, match: "GET /projects(/:id)", stage: new}\n'
        "  - {name: gone, match: GET /gone, backend: nowhere}\n"
        "  - {name: dead, match: GET /dead, backend: dead}\n"
        'admin: {listen: "127.0.0.1:0"}\n'
    )
    yield from run_gateway(path)


def test_a_name_that_does_not_resolve_is_a_502_saying_so(gateway: GatewayProcess) -> None:
    answer = httpx.get(gateway.url + "/projects/1", timeout=30)
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["reason"], problem["route"], problem["backend"]) == (
        "dns_failed",
        "projects",
        "new",
    )
    assert problem["title"] == "Upstream host name did not resolve"
    line = gateway.wait_for_log("route projects: answered 502 dns_failed")
    assert "backend 'new'" in line
    assert f"(request {answer.headers['x-request-id']})" in line
    # A refused connection is still called that.
    refused = httpx.get(gateway.url + "/dead", timeout=30)
    assert (refused.status_code, refused.json()["reason"]) == (502, "connect_refused")
    gateway.wait_for_log("route dead: answered 502 connect_refused")


def test_error_lines_are_one_per_route_and_kind_a_second(gateway: GatewayProcess) -> None:
    def dead_lines() -> list[str]:
        return [line for line in gateway.stderr_lines if "route dead: answered 502" in line]

    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        started = time.monotonic()
        for _ in range(20):
            assert client.get("/dead").status_code == 502
        elapsed = time.monotonic() - started
        assert client.get("/gone").status_code == 502
        gateway.wait_for_log("route gone: answered 502 dns_failed")
        assert 1 <= len(dead_lines()) <= 1 + int(elapsed)
        # Keep failing until the next line: it says how many answers it stands for.
        sent = 20
        deadline = time.monotonic() + 10
        while len(dead_lines()) < 2 and time.monotonic() < deadline:
            assert client.get("/dead").status_code == 502
            sent += 1
    lines = dead_lines()
    assert len(lines) >= 2
    folded = re.search(r"; (\d+) more like it since the last line", lines[1])
    assert folded is not None, lines[1]
    assert 0 < int(folded.group(1)) < sent
