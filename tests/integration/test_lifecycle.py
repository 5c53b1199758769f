"""Process lifecycle: SIGTERM drains, the drain has a deadline, workers share one port and are
restarted when they die, and a port that is taken is reported instead of half-started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import orjson
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from tests.integration.conftest import GatewayFactory
from tests.integration.demo_servers import free_ports
from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.probes import (
    AnnouncingUpstream,
    connections_to,
    listening_pids,
    wait_until,
)
from tests.integration.rawhttp import RawResponse, connect, exchange, is_closed, read_responses
from tests.integration.upstreams import EchoUpstream


class InFlight:
    """One request on its own connection in a thread; `outcome` is (responses, closed) or an
    OSError, and `done` is set when it is known."""

    def __init__(self, port: int, path: str) -> None:
        self.port = port
        self.path = path
        self.outcome: tuple[list[RawResponse], bool] | OSError | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            with connect(self.port, timeout_s=20) as sock:
                sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
                self.outcome = read_responses(sock)
        except OSError as exc:
            self.outcome = exc
        finally:
            self.done.set()

    def result(self) -> tuple[list[RawResponse], bool] | OSError | None:
        self.thread.join(timeout=20)
        return self.outcome


def _refuses_connections(port: int) -> bool:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False  # queued just as the listener closed; the next attempt tells
    sock.close()
    return False


def _is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _children(gw: GatewayProcess) -> list[int]:
    return [child.pid for child in psutil.Process(gw.pid).children()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("workers", [1, 2])
def test_stop_signal_lets_the_request_in_flight_finish_refuses_new_connections_and_exits_0(
    start_gateway: GatewayFactory, workers: int, signum: signal.Signals
) -> None:
    upstream = AnnouncingUpstream("slow").start()
    try:
        gw = start_gateway(workers=workers, legacy=upstream.url)
        in_flight = InFlight(gw.port, "/slow/1000")
        assert upstream.wait_arrival() == "/slow/1000"

        gw.signal(signum)
        wait_until(lambda: _refuses_connections(gw.port), "new connections to be refused", 5)
        assert not in_flight.done.is_set(), "the in-flight request should still be running"

        outcome = in_flight.result()
        assert isinstance(outcome, tuple), outcome
        (response,), _ = outcome
        assert response.status == 200
        assert response.complete
        assert orjson.loads(response.body) == {"name": "slow", "path": "/slow/1000"}
        assert response.header("connection") == "close"
        assert gw.proc is not None
        assert gw.proc.wait(timeout=10) == 0
    finally:
        upstream.stop()


def test_drain_timeout_aborts_what_is_left_and_exits(start_gateway: GatewayFactory) -> None:
    upstream = AnnouncingUpstream("slow").start()
    try:
        gw = start_gateway(legacy=upstream.url, extra="limits:\n  drain_timeout_s: 1\n")
        in_flight = InFlight(gw.port, "/slow/5000")
        assert upstream.wait_arrival() == "/slow/5000"

        gw.signal(signal.SIGTERM)
        assert gw.proc is not None
        try:
            code = gw.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 3 s after SIGTERM with drain_timeout_s: 1")
        assert code == 0
        assert "drain timeout: aborting 1 connections" in gw.stderr_text()

        # The client never sees a complete-looking answer: its connection was cut.
        outcome = in_flight.result()
        assert outcome is not None, "the client heard nothing at all"
        if isinstance(outcome, tuple):
            responses, closed = outcome
            assert closed
            assert not any(r.complete for r in responses)
    finally:
        upstream.stop()


def test_open_websocket_is_cut_at_the_drain_deadline(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra="limits:\n  drain_timeout_s: 1\n")
    with ws_connect(f"ws://127.0.0.1:{gw.port}/ws", proxy=None) as ws:
        ws.send("hello")
        assert ws.recv(timeout=10) == "echo:hello"
        gw.signal(signal.SIGTERM)
        assert gw.proc is not None
        try:
            code = gw.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            pytest.fail("still running 3 s after SIGTERM with drain_timeout_s: 1")
        assert code == 0
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)


def test_idle_keep_alive_connections_do_not_hold_up_the_drain(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra="limits:\n  drain_timeout_s: 20\n")
    idle = [connect(gw.port) for _ in range(5)]
    for sock in idle:
        sock.sendall(b"GET /before HTTP/1.1\r\nHost: a\r\n\r\n")
        (response,), closed = read_responses(sock)
        assert response.status == 200 and not closed
    gw.signal(signal.SIGTERM)
    assert gw.proc is not None
    assert gw.proc.wait(timeout=5) == 0
    for sock in idle:
        with sock:
            assert is_closed(sock)


def test_two_workers_share_the_port_survive_a_killed_worker_and_stop_together(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(workers=2, legacy=legacy_upstream.url)
    workers = _children(gw)
    assert len(workers) == 2
    assert sorted(listening_pids(gw.port, workers)) == sorted(workers)
    assert listening_pids(gw.port, [gw.pid]) == []

    def request_all(count: int) -> None:
        for index in range(count):
            (response,), _ = exchange(
                gw.port,
                f"GET /fresh/{index} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode(),
            )
            assert response.status == 200
            assert orjson.loads(response.body)["path"] == f"/fresh/{index}"
            assert response.header("connection") == "close"

    request_all(200)
    # Each worker keeps its own idle connections to the upstream: both have served requests.
    assert all(connections_to(pid, legacy_upstream.port) > 0 for pid in workers), [
        (pid, connections_to(pid, legacy_upstream.port)) for pid in workers
    ]

    killed = workers[0]
    psutil.Process(killed).send_signal(signal.SIGKILL)
    # Once the supervisor has reaped it, the dead worker's socket has left the port's group;
    # connections the kernel had already queued on it are lost with it, as with any server.
    gw.wait_for_log(f"worker {killed} exited")
    request_all(50)

    wait_until(
        lambda: len(listening_pids(gw.port, _children(gw))) == 2,
        "the supervisor to run two listening workers again",
    )
    replacement = next(pid for pid in _children(gw) if pid not in workers)
    request_all(200)
    assert connections_to(replacement, legacy_upstream.port) > 0

    final = _children(gw)
    assert gw.stop() == 0
    assert [pid for pid in final if _is_running(pid)] == []


def test_a_worker_that_dies_after_a_refused_reload_is_replaced_with_the_config_in_force(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, new_upstream: EchoUpstream
) -> None:
    gw = start_gateway(workers=2, legacy=legacy_upstream.url, new=new_upstream.url)
    workers = _children(gw)
    # An edit the supervisor refuses (an unknown stage): the workers keep version 1, on which
    # everything goes to legacy.
    bad_route = '  - name: all\n    match: "ANY /*path"\n    stage: bogus\n'
    write_config(gw.config_path, legacy=legacy_upstream.url, new=new_upstream.url, routes=bad_route)
    gw.signal(signal.SIGHUP)
    gw.wait_for_log("config reload refused")

    psutil.Process(workers[0]).send_signal(signal.SIGKILL)
    gw.wait_for_log(f"worker {workers[0]} exited")
    wait_until(
        lambda: len(listening_pids(gw.port, _children(gw))) == 2,
        "the supervisor to run two listening workers again",
        timeout_s=5,
    )
    for index in range(50):
        (response,), _ = exchange(
            gw.port, f"GET /r/{index} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode()
        )
        assert response.status == 200
        assert orjson.loads(response.body)["name"] == "legacy"


@pytest.mark.parametrize("workers", [1, 2])
def test_port_in_use_exits_1_naming_the_address(
    tmp_path: Path, legacy_upstream: EchoUpstream, workers: int
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_config(
            tmp_path / "strangler.yaml",
            legacy=legacy_upstream.url,
            listen=f"127.0.0.1:{port}",
        )
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "strangler",
                "run",
                "--config",
                str(path),
                "--workers",
                str(workers),
            ],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}" in result.stderr
    assert "strangler listening" not in result.stdout


def test_restart_on_the_same_port_works_at_once(
    tmp_path: Path, legacy_upstream: EchoUpstream
) -> None:
    (port,) = free_ports(1)
    path = write_config(
        tmp_path / "strangler.yaml", legacy=legacy_upstream.url, listen=f"127.0.0.1:{port}"
    )
    for _ in range(2):
        gw = GatewayProcess(path).start()
        try:
            assert gw.port == port
            # The gateway closes first, so its side of this connection lingers in TIME_WAIT.
            (response,), _ = exchange(
                port, b"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            assert response.status == 200
            assert response.header("connection") == "close"
        finally:
            assert gw.stop() == 0


def test_workers_drain_and_exit_when_their_supervisor_is_killed(
    upstreams: tuple[EchoUpstream, EchoUpstream], start_gateway: GatewayFactory
) -> None:
    legacy, _ = upstreams
    gateway = start_gateway(legacy=legacy.url, workers=2)
    workers = psutil.Process(gateway.pid).children()
    assert len(workers) == 2
    os.kill(gateway.pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == [], "orphaned workers kept running"
