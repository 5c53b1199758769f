"""`GET /api/v1/events` on a real gateway: a stage change made with the CLI in another process
reaches an open event stream within a second, as the dashboard shows it."""

from __future__ import annotations

import queue
import threading
import time

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli
from tests.integration.upstreams import EchoUpstream

ROUTES = '  - name: projects.index\n    match: "GET /api/projects"\n    stage: legacy\n'
DEADLINE_S = 1.0


def _token(gw: GatewayProcess, scope: str) -> str:
    created = run_cli(
        "token", "create", "--config", str(gw.config_path), "--json", "--name", scope,
        "--scope", scope,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token: str = orjson.loads(created.stdout)["token"]
    return token


def _follow(url: str, token: str, events: queue.Queue[tuple[float, str, str]]) -> None:
    """Reads the stream in a thread: (arrival time, event kind, data) per event."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.stream("GET", url, headers=headers, timeout=30, trust_env=False) as stream:
        kind = ""
        events.put((time.monotonic(), "open", stream.headers["content-type"]))
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.put((time.monotonic(), kind, line.removeprefix("data: ")))


def test_a_cli_change_reaches_an_open_stream_within_a_second(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, routes=ROUTES)
    assert gw.admin_url is not None
    anonymous = httpx.get(gw.admin_url + "/api/v1/events", timeout=10, trust_env=False)
    assert anonymous.status_code == 401

    events: queue.Queue[tuple[float, str, str]] = queue.Queue()
    reader = threading.Thread(
        target=_follow, args=(gw.admin_url + "/api/v1/events", _token(gw, "read"), events),
        daemon=True,
    )  # fmt: skip
    reader.start()
    _, kind, content_type = events.get(timeout=10)
    assert (kind, content_type.split(";")[0]) == ("open", "text/event-stream")
    # The first poll only records where the store stands; let it happen before the change.
    time.sleep(0.5)

    done = run_cli(
        "promote", "projects.index", "-r", "from another terminal", "--config", str(gw.config_path)
    )
    changed_at = time.monotonic()
    assert done.returncode == 0, done.stderr
    arrived_at, kind, data = events.get(timeout=10)
    change = orjson.loads(data)
    assert kind == "change"
    assert (change["unit"], change["action"], change["reason"]) == (
        "projects.index", "promote", "from another terminal",
    )  # fmt: skip
    assert (change["before"]["stage"], change["after"]["stage"]) == ("legacy", "shadow")
    assert arrived_at - changed_at < DEADLINE_S, f"took {arrived_at - changed_at:.2f} s"


@pytest.mark.parametrize("path", ["/api/v1/events"])
def test_the_stream_is_in_the_openapi_document(gateway: GatewayProcess, path: str) -> None:
    assert gateway.admin_url is not None
    document = httpx.get(gateway.admin_url + "/openapi.json", timeout=10, trust_env=False).json()
    assert "text/event-stream" in document["paths"][path]["get"]["responses"]["200"]["content"]
