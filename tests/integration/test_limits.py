"""Limits on what one client may cost: header and body sizes, slow and idle clients, connections."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.abuse import problem, read_until_closed, send_raw, trickle
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.rawhttp import connect, read_responses
from tests.integration.upstreams import EchoUpstream

MAX_HEADER_BYTES = 4096
MAX_BODY_BYTES = 1000
LIMITS = f"""\
limits:
  max_header_bytes: {MAX_HEADER_BYTES}
  max_body_bytes: {MAX_BODY_BYTES}
  header_timeout_s: 1
  idle_timeout_s: 1
"""
# A slowloris client sends one byte every TRICKLE_INTERVAL_S and never completes its header
# section: 16 bytes take 3.2 s, three times header_timeout_s, so a gateway that lets it trickle
# to the end has no working header timeout.
TRICKLE_INTERVAL_S = 0.2
TRICKLE = b"Host: a\r\nX-Slow:"


@pytest.fixture(scope="module")
def limited_gateway(
    legacy_upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    path = write_config(
        tmp_path_factory.mktemp("limits") / "strangler.yaml",
        legacy=legacy_upstream.url,
        extra=LIMITS,
    )
    gw = GatewayProcess(path).start()
    yield gw
    gw.stop()


def _never_forwarded(upstream: EchoUpstream, path: str) -> bool:
    # Paths here are unique per test; a long one is compared by its first 20 characters.
    return not [hit for hit in upstream.hits if hit.startswith(path[:20])]


# ---------------------------------------------------------------------------------- header size


def _head(path: str, fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """A GET head; `fields` are whole header lines."""
    return b"GET " + path.encode() + b" " + version + b"\r\n" + fields + b"\r\n"


LONG = MAX_HEADER_BYTES + 1000
HEADER_CASES = [
    pytest.param(
        "/h/one-big",
        b"Host: a\r\nX-Big: " + b"b" * LONG + b"\r\n",
        b"HTTP/1.1",
        {431},
        id="one-big-field",
    ),
    pytest.param(
        "/h/many",
        b"Host: a\r\n" + b"".join(b"X-Field-%03d: %s\r\n" % (i, b"v" * 40) for i in range(120)),
        b"HTTP/1.1",
        {431},
        id="many-fields",
    ),
    pytest.param("/h/url-" + "u" * LONG, b"Host: a\r\n", b"HTTP/1.1", {414, 431}, id="long-target"),
    pytest.param(
        "/h/url10-" + "u" * LONG, b"", b"HTTP/1.0", {414, 431}, id="long-target-http10-no-fields"
    ),
]


@pytest.mark.parametrize(("path", "fields", "version", "statuses"), HEADER_CASES)
def test_header_section_over_the_limit_gets_431(
    limited_gateway: GatewayProcess,
    legacy_upstream: EchoUpstream,
    path: str,
    fields: bytes,
    version: bytes,
    statuses: set[int],
) -> None:
    reply = send_raw(limited_gateway.port, _head(path, fields, version))
    assert len(reply.responses) == 1, reply.raw[:300]
    (response,) = reply.responses
    assert response.status in statuses, reply.raw[:300]
    assert problem(response)["status"] == response.status
    assert reply.closed
    assert _never_forwarded(legacy_upstream, path)


def test_header_section_that_never_ends_is_refused_once_over_the_limit(
    limited_gateway: GatewayProcess,
) -> None:
    # The gateway must not buffer an endless header line until header_timeout_s: past the limit
    # it answers 431 (a 408 here means it kept reading and buffering until the timeout).
    unterminated = b"GET /h/endless HTTP/1.1\r\nHost: a\r\nX-Endless: " + b"e" * (
        4 * MAX_HEADER_BYTES
    )
    reply = send_raw(limited_gateway.port, unterminated)
    assert reply.statuses == [431], reply.raw[:300]
    assert reply.closed


def test_header_section_under_the_limit_is_forwarded(limited_gateway: GatewayProcess) -> None:
    fields = b"Host: a\r\nConnection: close\r\nX-Fits: " + b"f" * (MAX_HEADER_BYTES // 2) + b"\r\n"
    reply = send_raw(limited_gateway.port, _head("/h/fits", fields))
    assert reply.statuses == [200]


# ------------------------------------------------------------------------------------ body size


@pytest.mark.parametrize(
    "extra", [pytest.param(b"", id="plain"), pytest.param(b"Expect: 100-continue\r\n", id="expect")]
)
def test_declared_body_over_the_limit_is_refused_before_it_is_sent(
    limited_gateway: GatewayProcess, legacy_upstream: EchoUpstream, extra: bytes
) -> None:
    # Only the head is sent: the answer must come without waiting for the body.
    head = b"POST /b/declared HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n%s\r\n" % (
        MAX_BODY_BYTES + 1,
        extra,
    )
    reply = send_raw(limited_gateway.port, head)
    assert reply.statuses == [413], reply.raw[:300]
    assert problem(reply.responses[0])["status"] == 413
    assert reply.closed
    assert _never_forwarded(legacy_upstream, "/b/declared")


def _chunked(pieces: list[bytes]) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    ("path", "body", "framing", "status"),
    [
        ("/b/cl-at-limit", b"x" * MAX_BODY_BYTES, "length", 200),
        ("/b/chunked-at-limit", [b"x" * 250] * 4, "chunked", 200),
        ("/b/chunked-over", [b"x" * 300] * 4, "chunked", 413),
        ("/b/chunked-one-big", [b"x" * (MAX_BODY_BYTES + 1)], "chunked", 413),
    ],
)
def test_request_body_size_is_bounded(
    limited_gateway: GatewayProcess,
    legacy_upstream: EchoUpstream,
    path: str,
    body: bytes | list[bytes],
    framing: str,
    status: int,
) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n".encode()
    if framing == "length":
        assert isinstance(body, bytes)
        raw = head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    else:
        assert isinstance(body, list)
        raw = head + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(body)
    reply = send_raw(limited_gateway.port, raw)
    assert reply.closed
    if status == 200:
        assert reply.statuses == [200]
        assert path in legacy_upstream.hits
        return
    # 413, or (had the upstream already started answering) an aborted connection with no answer.
    assert reply.statuses in ([413], []), reply.raw[:300]
    if reply.responses:
        assert problem(reply.responses[0])["status"] == 413
    # The upstream may have seen the start of the body, but never a complete request.
    assert _never_forwarded(legacy_upstream, path)


# ------------------------------------------------------------------------- slow and idle clients


def test_slowloris_header_is_cut_while_other_clients_are_served(
    limited_gateway: GatewayProcess,
) -> None:
    served: list[int] = []

    def meanwhile(index: int) -> None:
        if index == 2:
            served.append(httpx.get(limited_gateway.url + "/meanwhile").status_code)

    sock = connect(limited_gateway.port, timeout_s=5)
    try:
        sock.sendall(b"GET /slowloris HTTP/1.1\r\n")
        sent, reply = trickle(sock, TRICKLE, interval_s=TRICKLE_INTERVAL_S, on_byte=meanwhile)
    finally:
        sock.close()
    assert served == [200]
    # header_timeout_s is 1: the gateway must cut well before ~3 s of trickling are over.
    assert reply.closed, f"still open after {sent} bytes at {TRICKLE_INTERVAL_S}s per byte"
    assert sent < len(TRICKLE)
    assert reply.statuses in ([408], []), reply.raw
    if reply.responses:
        assert problem(reply.responses[0])["status"] == 408


def test_slowloris_header_behind_a_pipelined_request_is_cut(
    legacy_upstream: EchoUpstream, start_gateway: GatewayFactory
) -> None:
    # A long idle timeout: the header timeout alone must cut the slow second request, whose
    # header started arriving while the first request was still being answered.
    gw = start_gateway(
        legacy=legacy_upstream.url, extra="limits:\n  header_timeout_s: 1\n  idle_timeout_s: 30\n"
    )
    sock = connect(gw.port, timeout_s=5)
    try:
        sock.sendall(b"GET /slow/300 HTTP/1.1\r\nHost: a\r\n\r\nGET /slowloris HTTP/1.1\r\n")
        sent, reply = trickle(sock, TRICKLE, interval_s=TRICKLE_INTERVAL_S)
    finally:
        sock.close()
    assert reply.statuses[:1] == [200]
    assert reply.closed, f"still open after {sent} bytes at {TRICKLE_INTERVAL_S}s per byte"
    assert reply.statuses[1:] in ([408], [])


@pytest.mark.parametrize(
    "first",
    [
        pytest.param(b"", id="silent"),
        pytest.param(b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n", id="after-answer"),
    ],
)
def test_idle_connection_is_closed(limited_gateway: GatewayProcess, first: bytes) -> None:
    sock = connect(limited_gateway.port, timeout_s=5)
    try:
        if first:
            sock.sendall(first)
            responses, closed = read_responses(sock, expect=1)
            assert [r.status for r in responses] == [200]
            assert not closed
        reply = read_until_closed(sock)
    finally:
        sock.close()
    assert reply.closed
    assert reply.responses == []


# ----------------------------------------------------------------------------- max connections


def test_connections_over_max_connections_are_refused(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra="limits:\n  max_connections: 5\n")
    request = b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n"
    held = [connect(gw.port, timeout_s=5) for _ in range(5)]
    try:
        for sock in held:
            sock.sendall(request)
            responses, closed = read_responses(sock, expect=1)
            assert ([r.status for r in responses], closed) == ([200], False)

        # Refused: dropped at once, or at most told so with a 503, never served.
        sixth = send_raw(gw.port, request, timeout_s=5)
        assert sixth.closed
        assert sixth.statuses in ([], [503]), sixth.raw

        # The five admitted connections still work.
        for sock in held:
            sock.sendall(request)
            responses, closed = read_responses(sock, expect=1)
            assert ([r.status for r in responses], closed) == ([200], False)

        # A slot freed by a client that left is usable again. The gateway has forgotten the
        # connection by the time it closed its side (connection_lost runs before the next accept).
        leaving = held.pop()
        leaving.shutdown(socket.SHUT_WR)
        assert read_until_closed(leaving).closed
        leaving.close()
        again = send_raw(gw.port, request[:-2] + b"Connection: close\r\n\r\n")
        assert again.statuses == [200]
    finally:
        for sock in held:
            sock.close()


def test_a_body_that_never_starts_is_cut_by_the_body_timeout(
    legacy_upstream: EchoUpstream, start_gateway: GatewayFactory
) -> None:
    # The head promises a body; not one byte of it comes. Only body_timeout_s can end this (the
    # idle timeout is long), with a 408.
    gw = start_gateway(
        legacy=legacy_upstream.url, extra="limits:\n  body_timeout_s: 1\n  idle_timeout_s: 30\n"
    )
    sock = connect(gw.port, timeout_s=10)
    try:
        sock.sendall(b"POST /never HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n")
        reply = read_until_closed(sock)
    finally:
        sock.close()
    assert reply.closed
    assert reply.statuses == [408], reply.raw
