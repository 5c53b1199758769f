"""WebSockets through the gateway: the upgrade is forwarded, then bytes flow both ways untouched.

The module gateway sends `GET /ws` to the new backend, whose `/ws` echoes ("echo:" + text,
bytes as they are). Tunnels must apply backpressure both ways like any other body.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import threading
import time

import httpx
import psutil
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.probes import MIB, RssMonitor, wait_until
from tests.integration.rawhttp import connect as raw_connect
from tests.integration.rawhttp import is_closed, read_responses
from tests.integration.upstreams import EchoUpstream, RawUpstream, read_request_head

RSS_BOUND = 64 * MIB
UPGRADE = (
    b"GET %s HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHING = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
# Tunnels count as in-flight work when a gateway drains; per-test gateways whose upstream holds
# a tunnel open keep the drain short so that tunnel can't hold their teardown.
SHORT_DRAIN = "limits:\n  drain_timeout_s: 2\n"


def _ws(gateway: GatewayProcess, path: str = "/ws", **options: object) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{gateway.port}{path}", proxy=None, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ("hello", "echo:hello"),
        ("", "echo:"),
        ("ünïcødé ✓ 🚀", "echo:ünïcødé ✓ 🚀"),
        (b"\x00\x01\xfe\xff", b"\x00\x01\xfe\xff"),
        (b"", b""),
    ],
)
@pytest.mark.parametrize("compression", [None, "deflate"])
def test_message_round_trips(
    gateway: GatewayProcess, sent: str | bytes, expected: str | bytes, compression: str | None
) -> None:
    with _ws(gateway, compression=compression) as ws:
        ws.send(sent)
        assert ws.recv(timeout=10) == expected


def test_many_messages_come_back_in_order(gateway: GatewayProcess) -> None:
    sent: list[str | bytes] = [f"m{i}" if i % 2 else f"b{i}".encode() for i in range(2000)]
    with _ws(gateway) as ws:
        for message in sent:
            ws.send(message)
        received = [ws.recv(timeout=10) for _ in sent]
    assert received == [m if isinstance(m, bytes) else "echo:" + m for m in sent]


@pytest.mark.parametrize("kind", ["binary", "text"])
def test_one_mebibyte_message_round_trips(gateway: GatewayProcess, kind: str) -> None:
    payload = bytes(range(256)) * 4096
    with _ws(gateway, max_size=None) as ws:
        if kind == "binary":
            ws.send(payload)
            assert ws.recv(timeout=10) == payload
        else:
            text = payload.hex()[:MIB]
            ws.send(text)
            assert ws.recv(timeout=10) == "echo:" + text


def test_close_handshake_completes_and_the_gateway_keeps_serving(gateway: GatewayProcess) -> None:
    with _ws(gateway) as ws:
        ws.send("before close")
        assert ws.recv(timeout=10) == "echo:before close"
        ws.close(4001, "bye")
        assert ws.protocol.close_rcvd is not None
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (4001, "bye")
    assert httpx.get(gateway.url + "/after-ws").status_code == 200


def test_concurrent_tunnels_are_independent(gateway: GatewayProcess) -> None:
    errors: list[BaseException] = []

    def chat(index: int) -> None:
        try:
            with _ws(gateway) as ws:
                for round_ in range(50):
                    ws.send(f"{index}:{round_}")
                    assert ws.recv(timeout=10) == f"echo:{index}:{round_}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=chat, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []


def _masked_text_frame(text: str) -> bytes:
    """One client-to-server WebSocket text frame (RFC 6455 §5.2), masked as clients must."""
    payload = text.encode()
    assert len(payload) < 126
    key = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + key + masked


def test_frame_sent_right_behind_the_upgrade_request_reaches_the_upstream(
    gateway: GatewayProcess,
) -> None:
    sock = raw_connect(gateway.port)
    with sock:
        # The first frame travels in the same write as the upgrade request, before any 101.
        sock.sendall(UPGRADE % b"/ws" + _masked_text_frame("early"))
        data = b""
        while b"\r\n\r\n" not in data:
            piece = sock.recv(65536)
            assert piece, data
            data += piece
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 ")
        expected = bytes([0x81, len(b"echo:early")]) + b"echo:early"
        while len(rest) < len(expected):
            piece = sock.recv(65536)
            assert piece, rest
            rest += piece
        assert rest == expected


def test_upgrade_answered_with_an_error_status_is_relayed_by_the_websocket_client(
    gateway: GatewayProcess,
) -> None:
    # /api/projects/1 is on the new backend, which has no WebSocket there: Starlette says 403.
    with pytest.raises(InvalidStatus) as info:
        _ws(gateway, "/api/projects/1")
    assert info.value.response.status_code == 403


async def _refuse_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        await read_request_head(reader)
        writer.write(
            b"HTTP/1.1 426 Upgrade Required\r\nConnection: keep-alive\r\n"
            b"Content-Length: 12\r\nContent-Type: text/plain\r\n\r\nnot for you!"
        )
        await writer.drain()


def test_upgrade_answered_non_101_gets_that_answer_and_the_connection_is_closed(
    start_gateway: GatewayFactory,
) -> None:
    upstream = RawUpstream(_refuse_upgrade).start()
    try:
        gw = start_gateway(legacy=upstream.url, extra=SHORT_DRAIN)
        sock = raw_connect(gw.port)
        with sock:
            sock.sendall(UPGRADE % b"/ws")
            (response,), _ = read_responses(sock)
            assert response.status == 426
            assert response.body == b"not for you!"
            assert response.header("connection") == "close"
            assert response.header("upgrade") is None
            assert is_closed(sock)
    finally:
        upstream.stop()


async def _upgrade_then_never_read(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await read_request_head(reader)
    writer.write(SWITCHING)
    await writer.drain()
    await asyncio.Event().wait()  # holds the tunnel open and reads nothing more


def test_client_to_upstream_tunnel_bytes_are_not_buffered_when_the_upstream_stops_reading(
    start_gateway: GatewayFactory,
) -> None:
    upstream = RawUpstream(_upgrade_then_never_read).start()
    try:
        gw = start_gateway(legacy=upstream.url, extra=SHORT_DRAIN)
        sock = raw_connect(gw.port)
        with sock:
            sock.sendall(UPGRADE % b"/ws")
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(4096)
            assert head.startswith(b"HTTP/1.1 101 ")
            piece = b"\x82" * MIB  # the tunnel is opaque: these need not be WebSocket frames
            sent = 0
            sock.settimeout(1.0)
            with RssMonitor(gw.pid) as rss:
                # A gateway that applies backpressure stops reading us once the socket buffers
                # towards the stalled upstream are full; sending then blocks and times out.
                while sent < 256 * MIB:
                    try:
                        sock.sendall(piece)
                    except TimeoutError:
                        break
                    sent += len(piece)
            assert rss.growth < RSS_BOUND, (rss, f"sent {sent / MIB:.0f} MiB")
            assert sent < 64 * MIB
    finally:
        upstream.stop()


async def _upgrade_then_flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request_head(reader)
    writer.write(SWITCHING)
    piece = b"\x00" * MIB
    for _ in range(256):
        writer.write(piece)
        await writer.drain()


def test_upstream_to_client_tunnel_bytes_are_not_buffered_for_a_slow_client(
    start_gateway: GatewayFactory,
) -> None:
    upstream = RawUpstream(_upgrade_then_flood).start()
    try:
        gw = start_gateway(legacy=upstream.url, extra=SHORT_DRAIN)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", gw.port))
        with sock:
            sock.sendall(UPGRADE % b"/ws")
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            head, _, first = data.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 101 ")
            received = len(first)
            with RssMonitor(gw.pid) as rss:
                for _ in range(100):
                    received += len(sock.recv(64 * 1024))
                    time.sleep(0.02)
            assert received < 64 * MIB
            assert rss.growth < RSS_BOUND, rss
            while True:
                piece = sock.recv(MIB)
                if not piece:
                    break
                received += len(piece)
        assert received == 256 * MIB
    finally:
        upstream.stop()


def test_closed_tunnels_release_their_sockets(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra=SHORT_DRAIN)
    process = psutil.Process(gw.pid)
    assert httpx.get(gw.url + "/warm-up").status_code == 200
    baseline = process.num_fds()
    for index in range(3):
        with _ws(gw) as ws:
            ws.send(f"tunnel {index}")
            assert ws.recv(timeout=10) == f"echo:tunnel {index}"
    # Each tunnel held a client socket and an upstream socket; both ends closed, so both go.
    wait_until(
        lambda: process.num_fds() <= baseline,
        f"the gateway's open fds to fall back to {baseline}",
        timeout_s=5,
    )


async def _upgrade_then_echo_until_eof(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    await read_request_head(reader)
    writer.write(SWITCHING)
    while piece := await reader.read(65536):
        writer.write(piece)
        await writer.drain()
    # The client's half-close arrived: answer with ours (the handler's end closes the socket).


def test_tunnel_half_closed_by_the_client_first_is_released(
    start_gateway: GatewayFactory,
) -> None:
    upstream = RawUpstream(_upgrade_then_echo_until_eof).start()
    try:
        gw = start_gateway(legacy=upstream.url, extra=SHORT_DRAIN)
        process = psutil.Process(gw.pid)
        baseline = process.num_fds()
        sock = raw_connect(gw.port)
        with sock:
            sock.sendall(UPGRADE % b"/ws")
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 101 ")
            sock.sendall(b"last words")
            sock.shutdown(socket.SHUT_WR)
            rest = data.partition(b"\r\n\r\n")[2]
            while piece := sock.recv(65536):
                rest += piece
            assert rest == b"last words"  # the half-closed tunnel still carried the answer
        wait_until(
            lambda: process.num_fds() <= baseline,
            f"the gateway's open fds to fall back to {baseline}",
            timeout_s=5,
        )
    finally:
        upstream.stop()


def test_closed_tunnels_do_not_hold_up_shutdown(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra="limits:\n  drain_timeout_s: 10\n")
    with _ws(gw) as ws:
        ws.send("bye soon")
        assert ws.recv(timeout=10) == "echo:bye soon"
    assert ws.protocol.close_rcvd is not None
    gw.signal(signal.SIGTERM)
    assert gw.proc is not None
    # Nothing is in flight, so the drain has nothing to wait for (its timeout is 10 s).
    try:
        code = gw.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("still draining 5 s after SIGTERM although the only tunnel was closed")
    assert code == 0
    assert "drain timeout" not in gw.stderr_text()
