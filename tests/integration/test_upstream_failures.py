"""Upstreams that fail: refused, slow, reset, truncated, garbage, stale keep-alive, full pool.

The client always gets a problem+json answer (502/503/504) when the upstream failed before its
answer started, or an aborted connection it can tell from a complete answer when it failed
during it; and the gateway lives on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.abuse import closed_port, problem, read_until_closed, send_raw
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.rawhttp import RawResponse, connect, read_responses
from tests.integration.upstreams import RawUpstream, read_request_head

READ_TIMEOUT = ", read_timeout_s: 0.5"
ROUTES = """\
  - name: dead
    match: "ANY /dead/*rest"
    stage: new
  - name: misbehaving
    match: "ANY /m/*rest"
    stage: legacy
"""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# What the misbehaving upstream does for GET /m/<action>.
ANSWERS: dict[bytes, bytes] = {
    b"garbage": b"SSH-2.0-OpenSSH_9.6\r\nthis is not http\r\n\r\n",
    b"bad-status": b"HTTP/1.1 2xx OK\r\nContent-Length: 0\r\n\r\n",
    b"bad-header": b"HTTP/1.1 200 OK\r\nNot A Header\r\nContent-Length: 0\r\n\r\n",
    b"two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    ),
    b"truncate-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"t" * 10,
    b"truncate-chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
    + b"t" * 10,
    b"close-delimited": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"c" * 5000,
}
CLOSE_AFTER = {b"truncate-length", b"truncate-chunked", b"close-delimited"}


def _action(head: bytes) -> bytes:
    path = head.split(b" ", 2)[1]
    return path.rstrip(b"/").rsplit(b"/", 1)[-1]


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer gets a TCP reset, not a FIN."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def misbehave(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """GET /m/<action>: see ANSWERS, plus `reset`, `silent` (never answers) and `ok`."""
    while True:
        action = _action(await read_request_head(reader))
        if action == b"reset":
            _reset(writer)
            return
        if action == b"silent":
            await reader.read()  # until the gateway gives up and closes
            return
        writer.write(ANSWERS.get(action, OK))
        await writer.drain()
        if action in CLOSE_AFTER:
            return  # RawUpstream closes the connection (a FIN)


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[RawUpstream]:
    upstream = RawUpstream(misbehave).start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def failing_gateway(
    misbehaving: RawUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """/m/* goes to the misbehaving upstream, /dead/* to a port nothing listens on."""
    path = write_config(
        tmp_path_factory.mktemp("failures") / "strangler.yaml",
        legacy=misbehaving.url,
        new=f"http://127.0.0.1:{closed_port()}",
        routes=ROUTES,
        backend_options=READ_TIMEOUT,
    )
    gw = GatewayProcess(path).start()
    yield gw
    gw.stop()


def _get(port: int, path: str) -> RawResponse:
    """One GET on a fresh connection; the answer must be complete."""
    sock = connect(port, timeout_s=5)
    try:
        sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
        (response,), _ = read_responses(sock, expect=1)
    finally:
        sock.close()
    assert response.complete
    return response


def _assert_problem(
    response: RawResponse, status: int, reason: str, route: str
) -> dict[str, object]:
    assert response.status == status
    body = problem(response)
    assert body["status"] == status
    assert body["reason"] == reason
    assert body["route"] == route
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    request_id = response.header("x-request-id")
    assert request_id
    assert body["request_id"] == request_id
    return body


def test_nothing_listening_gets_502_connect_refused(failing_gateway: GatewayProcess) -> None:
    body = _assert_problem(_get(failing_gateway.port, "/dead/x"), 502, "connect_refused", "dead")
    assert body["backend"] == "new"


@pytest.mark.parametrize(
    ("action", "status", "reason"),
    [
        ("silent", 504, "read_timeout"),
        ("reset", 502, "upstream_reset"),
        ("garbage", 502, "bad_response"),
        ("bad-status", 502, "bad_response"),
        ("bad-header", 502, "bad_response"),
        ("two-lengths", 502, "bad_response"),
        ("length-and-chunked", 502, "bad_response"),
    ],
)
def test_upstream_failing_before_its_answer_gets_a_problem(
    failing_gateway: GatewayProcess, action: str, status: int, reason: str
) -> None:
    _assert_problem(_get(failing_gateway.port, f"/m/{action}"), status, reason, "misbehaving")


@pytest.mark.parametrize("action", ["truncate-length", "truncate-chunked"])
def test_upstream_dying_mid_answer_aborts_the_client(
    failing_gateway: GatewayProcess, action: str
) -> None:
    reply = send_raw(
        failing_gateway.port, b"GET /m/%s HTTP/1.1\r\nHost: a\r\n\r\n" % action.encode()
    )
    assert reply.statuses == [200]
    (response,) = reply.responses
    # The client can tell: fewer bytes than announced, no end of message, and the connection gone.
    assert not response.complete
    assert len(response.body) == 10
    assert reply.closed
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        httpx.get(f"{failing_gateway.url}/m/{action}")


def test_close_delimited_answer_is_relayed_complete(failing_gateway: GatewayProcess) -> None:
    response = httpx.get(f"{failing_gateway.url}/m/close-delimited")
    assert response.status_code == 200
    assert response.content == b"c" * 5000


def test_gateway_survives_all_of_the_above(failing_gateway: GatewayProcess) -> None:
    assert failing_gateway.proc is not None
    assert failing_gateway.proc.poll() is None
    response = httpx.get(f"{failing_gateway.url}/m/ok")
    assert (response.status_code, response.content) == (200, b"ok")
    assert "Traceback" not in failing_gateway.stderr_text()


# ---------------------------------------------------------------------- stale keep-alive reuse


class KeepAliveUpstream:
    """Answers GET/POST /... with 200 on keep-alive connections, and counts connections.

    - `/flaky`: on a connection that already served a request, read it and close without an
      answer, as a backend does when its keep-alive timeout fires just as a request arrives.
    - `/bye`: answer, then close the connection (the pool's idle connection goes away).
    - `/pair`: answered only once a second `/pair` is waiting on another connection, so the
      pool ends up with two idle connections.
    """

    def __init__(self) -> None:
        self.upstream = RawUpstream(self.handle)
        self.pair_waiting: asyncio.Event | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        while True:
            head = await read_request_head(reader)
            path = head.split(b" ", 2)[1]
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    await reader.readexactly(int(line.split(b":", 1)[1]))
            if path == b"/flaky" and served:
                return
            if path == b"/pair":
                if self.pair_waiting is None:
                    self.pair_waiting = asyncio.Event()
                    await self.pair_waiting.wait()
                else:
                    self.pair_waiting.set()
            served += 1
            writer.write(OK)
            await writer.drain()
            if path == b"/bye":
                return


# Upstream fixtures are requested before `start_gateway`, so the gateway stops first and every
# upstream connection has ended by the time its server stops (no handler is left pending).
@pytest.fixture
def keep_alive_upstream() -> Iterator[KeepAliveUpstream]:
    backend = KeepAliveUpstream()
    backend.upstream.start()
    yield backend
    backend.upstream.stop()


def _two_at_once(port: int, path: bytes) -> list[int]:
    socks = [connect(port, timeout_s=5) for _ in range(2)]
    try:
        for sock in socks:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % path)
        return [read_until_closed(sock).statuses[0] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


@pytest.mark.parametrize(
    ("warm_up", "method", "path", "status", "connections"),
    [
        # The backend closed its idle connection: the pool drops it, the next GET gets a new one.
        pytest.param(b"/bye", "GET", "/ok", 200, 2, id="idle-closed-by-upstream"),
        # The backend closes the reused connection as the request arrives: retried once.
        pytest.param(b"/ok", "GET", "/flaky", 200, 2, id="closed-on-reuse-get-retried"),
        # Same with two idle connections, both stale: the retry must not pick the other stale one.
        pytest.param(b"/pair", "GET", "/flaky", 200, 3, id="two-stale-idle-get-retried-fresh"),
        # A request with a body is not replayed: the client is told the upstream reset.
        pytest.param(b"/ok", "POST", "/flaky", 502, 1, id="closed-on-reuse-post-not-retried"),
    ],
)
def test_stale_keep_alive_connection(
    keep_alive_upstream: KeepAliveUpstream,
    start_gateway: GatewayFactory,
    warm_up: bytes,
    method: str,
    path: str,
    status: int,
    connections: int,
) -> None:
    gw = start_gateway(legacy=keep_alive_upstream.upstream.url)
    if warm_up == b"/pair":
        assert _two_at_once(gw.port, warm_up) == [200, 200]
    else:
        assert httpx.get(gw.url + warm_up.decode()).status_code == 200
    response = httpx.request(method, gw.url + path, content=b"body" if method == "POST" else None)
    assert response.status_code == status, response.text
    if status == 200:
        assert response.content == b"ok"
    else:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["reason"] == "upstream_reset"
    assert keep_alive_upstream.upstream.connections == connections
    assert gw.proc is not None and gw.proc.poll() is None


# ------------------------------------------------------------------------------ pool and connect


class HoldingUpstream:
    """GET /m/hold/<ms>: tells the test it arrived, then answers after ms (0: once released)."""

    def __init__(self) -> None:
        self.upstream = RawUpstream(self.handle)
        self.arrived = threading.Event()
        self._release: asyncio.Event | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await read_request_head(reader)
            ms = int(_action(head))
            self.arrived.set()
            if ms:
                await asyncio.sleep(ms / 1000)
            else:
                self._release = asyncio.Event()
                await self._release.wait()
            writer.write(OK)
            await writer.drain()

    def release(self) -> None:
        """Let a held answer go (a no-op when none is held)."""
        release = self._release
        if release is not None:
            self.upstream.loop.call_soon_threadsafe(release.set)


@pytest.fixture
def holding_upstream() -> Iterator[HoldingUpstream]:
    backend = HoldingUpstream()
    backend.upstream.start()
    yield backend
    backend.upstream.stop()


@pytest.mark.parametrize(
    ("first_path", "second_status"),
    [
        # The first answer comes well within connect_timeout_s: the second request waited for it.
        pytest.param("/m/hold/100", 200, id="waits-for-the-connection"),
        # The first is held past connect_timeout_s: the waiting request gets 503.
        pytest.param("/m/hold/0", 503, id="gives-up-after-connect-timeout"),
    ],
)
def test_full_pool_makes_requests_wait_then_503(
    holding_upstream: HoldingUpstream,
    start_gateway: GatewayFactory,
    first_path: str,
    second_status: int,
) -> None:
    gw = start_gateway(
        legacy=holding_upstream.upstream.url,
        routes=ROUTES,
        backend_options=", pool_size: 1, connect_timeout_s: 0.5",
    )
    first = connect(gw.port, timeout_s=5)
    try:
        first.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % first_path.encode())
        assert holding_upstream.arrived.wait(5)
        second = _get(gw.port, "/m/hold/1")
        if second_status == 200:
            assert second.body == b"ok"
        else:
            _assert_problem(second, 503, "pool_timeout", "misbehaving")
        holding_upstream.release()
        responses, _ = read_responses(first, expect=1)
    finally:
        holding_upstream.release()
        first.close()
    assert [r.status for r in responses] == [200]
    assert second.status == second_status
    assert holding_upstream.upstream.connections == 1


def test_connect_timeout_gets_504(start_gateway: GatewayFactory) -> None:
    with listener_with_full_backlog() as port:
        gw = start_gateway(
            legacy=f"http://127.0.0.1:{port}",
            routes=ROUTES,
            backend_options=", connect_timeout_s: 0.5",
        )
        response = _get(gw.port, "/m/x")
    _assert_problem(response, 504, "connect_timeout", "misbehaving")
    assert gw.proc is not None and gw.proc.poll() is None


@contextlib.contextmanager
def listener_with_full_backlog() -> Iterator[int]:
    """A 127.0.0.1 listener that never accepts, its accept queue filled: Linux drops new SYNs
    (it doesn't refuse them), so a connect hangs until the connector's own timeout."""
    listener = socket.socket()
    fillers: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = int(listener.getsockname()[1])
        for _ in range(3):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        with socket.socket() as probe:
            probe.settimeout(0.3)
            try:
                probe.connect(("127.0.0.1", port))
            except TimeoutError:
                pass
            else:
                pytest.skip(
                    "this kernel accepts past a full backlog: no connect timeout on loopback"
                )
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()
