"""Config reload: SIGHUP (or `--watch`) swaps the routing while the gateway keeps serving.

A good file takes effect for the next request, also on keep-alive connections that are already
open; a bad file is refused with file:line and the old routing stays in force; requests in
flight finish where they started. With several workers each one reloads and logs it.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import httpx
import orjson
import pytest
from websockets.sync.client import connect as ws_connect

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.probes import AnnouncingUpstream, wait_for_log_count, wait_until
from tests.integration.rawhttp import connect, read_responses
from tests.integration.upstreams import EchoUpstream


def _routes(stage: str) -> str:
    return f'  - name: moving\n    match: "GET /api/moving"\n    stage: {stage}\n'


def _backend(gw: GatewayProcess, path: str) -> str:
    response = httpx.get(gw.url + path, timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["name"])


def _rewrite(path: Path, **config: str) -> None:
    """Replace the file in one step, as editors and config management do."""
    staging = path.with_suffix(".next")
    write_config(staging, **config)
    staging.replace(path)


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_moves_a_route_from_legacy_to_new(
    start_gateway: GatewayFactory,
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    workers: int,
) -> None:
    urls = {"legacy": legacy_upstream.url, "new": new_upstream.url}
    gw = start_gateway(workers=workers, routes=_routes("legacy"), **urls)
    assert _backend(gw, "/api/moving") == "legacy"

    _rewrite(gw.config_path, routes=_routes("new"), **urls)
    gw.signal(signal.SIGHUP)
    wait_for_log_count(gw, "config reloaded: version 2", workers)

    # Fresh connections, so with two workers both are asked.
    assert {_backend(gw, "/api/moving") for _ in range(20)} == {"new"}
    assert _backend(gw, "/api/elsewhere") == "legacy"


@pytest.mark.parametrize("workers", [1, 2])
def test_reloads_under_load_fail_no_request_and_drop_no_connection(
    start_gateway: GatewayFactory,
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    workers: int,
) -> None:
    other_legacy = EchoUpstream("legacy-b").start()
    try:
        # Odd versions move the route to new AND move the legacy backend to another address.
        def config(version: int) -> dict[str, str]:
            odd = version % 2 == 1
            return {
                "legacy": other_legacy.url if odd else legacy_upstream.url,
                "new": new_upstream.url,
                "routes": _routes("new" if odd else "legacy"),
            }

        gw = start_gateway(workers=workers, **config(1))
        stop = threading.Event()
        failures: list[str] = []
        counts = [0] * 6
        sockets = [connect(gw.port) for _ in counts]

        def load(index: int) -> None:
            sock = sockets[index]
            while not stop.is_set():
                path = "/api/moving" if counts[index] % 2 else "/api/other"
                try:
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                    responses, closed = read_responses(sock)
                except OSError as exc:
                    failures.append(f"client {index} request {counts[index]}: {exc!r}")
                    return
                if closed or not responses or responses[0].status != 200:
                    failures.append(f"client {index} request {counts[index]}: {responses} {closed}")
                    return
                name = orjson.loads(responses[0].body)["name"]
                if name not in {"legacy", "legacy-b", "new"}:
                    failures.append(f"client {index}: answered by {name}")
                counts[index] += 1

        threads = [threading.Thread(target=load, args=(i,)) for i in range(len(sockets))]
        for thread in threads:
            thread.start()
        try:
            for version in range(2, 8):
                before = sum(counts)
                _rewrite(gw.config_path, **config(version))
                gw.signal(signal.SIGHUP)
                wait_for_log_count(gw, f"config reloaded: version {version}", workers)
                # Traffic keeps flowing after each reload before the next one.
                wait_until(
                    lambda before=before: bool(failures) or sum(counts) >= before + 50,
                    "requests to flow",
                )
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=10)
        assert failures == []
        assert all(count > 0 for count in counts), counts

        # The same keep-alive connections now follow version 7: route on new, legacy moved.
        for sock in sockets:
            with sock:
                sock.sendall(
                    b"GET /api/moving HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET /api/other HTTP/1.1\r\nHost: a\r\n\r\n"
                )
                responses, _ = read_responses(sock, expect=2)
                names = [orjson.loads(r.body)["name"] for r in responses]
                assert names == ["new", "legacy-b"]
    finally:
        other_legacy.stop()


@pytest.mark.parametrize("trigger", ["sighup", "watch"])
@pytest.mark.parametrize("workers", [1, 2])
def test_bad_file_is_refused_with_its_line_and_the_old_routing_stays(
    start_gateway: GatewayFactory,
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    workers: int,
    trigger: str,
) -> None:
    urls = {"legacy": legacy_upstream.url, "new": new_upstream.url}
    extra_args = ("--watch",) if trigger == "watch" else ()
    gw = start_gateway(workers=workers, extra_args=extra_args, routes=_routes("legacy"), **urls)

    # Line 9 of the written file is the route's `stage:`.
    _rewrite(gw.config_path, routes=_routes("bogus"), **urls)
    assert gw.config_path.read_text().splitlines()[8] == "    stage: bogus"
    if trigger == "sighup":
        gw.signal(signal.SIGHUP)
    refusal = gw.wait_for_log("config reload refused")
    assert f"{gw.config_path}:9: routes[0].stage: " in refusal
    assert "bogus" in refusal

    assert gw.proc is not None and gw.proc.poll() is None
    assert {_backend(gw, "/api/moving") for _ in range(10)} == {"legacy"}
    assert "config reloaded" not in gw.stderr_text()

    # A fixed file is taken next time, as version 2: the refused one never counted.
    _rewrite(gw.config_path, routes=_routes("new"), **urls)
    if trigger == "sighup":
        gw.signal(signal.SIGHUP)
    wait_for_log_count(gw, "config reloaded: version 2", workers)
    assert {_backend(gw, "/api/moving") for _ in range(10)} == {"new"}


@pytest.mark.parametrize("workers", [1, 2])
def test_watch_picks_up_an_edited_file_without_a_signal(
    start_gateway: GatewayFactory,
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    workers: int,
) -> None:
    urls = {"legacy": legacy_upstream.url, "new": new_upstream.url}
    gw = start_gateway(workers=workers, extra_args=("--watch",), routes=_routes("legacy"), **urls)
    assert _backend(gw, "/api/moving") == "legacy"

    write_config(gw.config_path, routes=_routes("new"), **urls)  # edited in place
    wait_for_log_count(gw, "config reloaded: version 2", workers)
    assert {_backend(gw, "/api/moving") for _ in range(10)} == {"new"}

    _rewrite(gw.config_path, routes=_routes("legacy"), **urls)  # replaced by a rename
    wait_for_log_count(gw, "config reloaded: version 3", workers)
    assert {_backend(gw, "/api/moving") for _ in range(10)} == {"legacy"}


def _slow_routes(stage: str) -> str:
    return f'  - name: everything\n    match: "GET /*path"\n    stage: {stage}\n'


# Two ways a reload can take a request's backend away: the route moves to the other stage, or
# the backend itself moves to another address (its pool is replaced).
CHANGES = {
    "route-moves-to-new": lambda old, new: {
        "legacy": old.url,
        "new": new.url,
        "routes": _slow_routes("new"),
    },
    "legacy-moves-address": lambda old, new: {
        "legacy": new.url,
        "new": new.url,
        "routes": _slow_routes("legacy"),
    },
}


def _start_in_flight(gw: GatewayProcess, path: str) -> tuple[threading.Thread, list[object]]:
    result: list[object] = []

    def request() -> None:
        try:
            with connect(gw.port) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                result.append(read_responses(sock))
        except OSError as exc:
            result.append(exc)

    thread = threading.Thread(target=request)
    thread.start()
    return thread, result


@pytest.mark.parametrize("change", list(CHANGES))
def test_request_in_flight_during_a_reload_finishes_where_it_started(
    start_gateway: GatewayFactory, new_upstream: EchoUpstream, change: str
) -> None:
    old = AnnouncingUpstream("old").start()
    try:
        gw = start_gateway(legacy=old.url, new=new_upstream.url, routes=_slow_routes("legacy"))
        thread, result = _start_in_flight(gw, "/slow/1500")
        assert old.wait_arrival() == "/slow/1500"

        _rewrite(gw.config_path, **CHANGES[change](old, new_upstream))
        gw.signal(signal.SIGHUP)
        gw.wait_for_log("config reloaded: version 2")
        assert _backend(gw, "/after-reload") == "new"

        thread.join(timeout=10)
        assert result and not isinstance(result[0], OSError), result
        ((response,), _closed) = result[0]  # type: ignore[misc]
        assert response.status == 200
        assert response.complete
        assert orjson.loads(response.body) == {"name": "old", "path": "/slow/1500"}
    finally:
        old.stop()


@pytest.mark.parametrize("change", list(CHANGES))
def test_connections_to_a_backend_no_longer_used_are_closed_after_their_last_request(
    start_gateway: GatewayFactory, new_upstream: EchoUpstream, change: str
) -> None:
    old = AnnouncingUpstream("old").start()
    try:
        gw = start_gateway(
            legacy=old.url,
            new=new_upstream.url,
            routes=_slow_routes("legacy"),
            backend_options=", pool_idle_s: 1",
        )
        thread, _ = _start_in_flight(gw, "/slow/500")
        assert old.wait_arrival() == "/slow/500"
        _rewrite(
            gw.config_path, backend_options=", pool_idle_s: 1", **CHANGES[change](old, new_upstream)
        )
        gw.signal(signal.SIGHUP)
        gw.wait_for_log("config reloaded: version 2")
        thread.join(timeout=10)
        # Nothing routes to `old` any more and idle connections live 1 s: the one the in-flight
        # request used must not stay open for ever.
        wait_until(
            lambda: old.open_connections == 0,
            "the gateway to close its connection to the backend it no longer uses",
            timeout_s=5,
        )
    finally:
        old.stop()


def test_open_websocket_keeps_working_across_a_reload_that_moves_its_backend(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, new_upstream: EchoUpstream
) -> None:
    extra = "limits:\n  drain_timeout_s: 2\n"
    gw = start_gateway(legacy=legacy_upstream.url, new=new_upstream.url, extra=extra)
    with ws_connect(f"ws://127.0.0.1:{gw.port}/ws", proxy=None) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "echo:before"
        _rewrite(gw.config_path, legacy=new_upstream.url, new=new_upstream.url, extra=extra)
        gw.signal(signal.SIGHUP)
        gw.wait_for_log("config reloaded: version 2")
        assert _backend(gw, "/after-reload") == "new"
        ws.send("after")
        assert ws.recv(timeout=10) == "echo:after"
