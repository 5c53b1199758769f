"""Helpers for tests that send hostile bytes to the gateway or put a misbehaving upstream behind it.

Built on `rawhttp` (exact bytes on the wire) and `upstreams.RawUpstream` (a backend driven by
the test's own coroutine). Nothing here sleeps to wait for readiness: reads end when the gateway
answers or closes, and a socket timeout turns a hang into a failed assertion.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson

from tests.integration.rawhttp import RawResponse, _Collector, connect


@dataclass
class Reply:
    """Everything a raw client saw on one connection."""

    responses: list[RawResponse]
    # The gateway closed (FIN or reset) the connection; False if it was still open at the timeout.
    closed: bool
    raw: bytes = b""

    @property
    def statuses(self) -> list[int]:
        return [r.status for r in self.responses]


def read_until_closed(sock: socket.socket) -> Reply:
    """Read every byte until the peer closes, or until the socket's timeout (closed=False)."""
    collector = _Collector()
    raw = b""
    closed = False
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        except TimeoutError:
            break
        if not data:
            closed = True
            break
        raw += data
        collector.parser.feed_data(data)
    return Reply(collector.responses, closed, raw)


def read_head_bytes(sock: socket.socket) -> bytes:
    """Read until a header section has ended (or the peer closed): what arrived, head first."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def send_raw(port: int, data: bytes, *, timeout_s: float = 5.0) -> Reply:
    """Send `data` on a new connection and read until the gateway closes it (or timeout_s)."""
    sock = connect(port, timeout_s)
    try:
        # The gateway may refuse and close before it read everything we had to say.
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        return read_until_closed(sock)
    finally:
        sock.close()


def problem(response: RawResponse) -> dict[str, object]:
    """The problem+json body of a gateway error answer (asserting the content type)."""
    assert response.header("content-type") == "application/problem+json", response.headers
    body = orjson.loads(response.body)
    assert isinstance(body, dict)
    return body


def closed_port() -> int:
    """A 127.0.0.1 port with nothing listening on it (bound once, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    sock.close()
    return port


@dataclass
class Trap:
    """A RawUpstream handler for a backend that must never be reached by the requests under test.

    It records every byte it is sent and answers each request head with an empty 418 on a
    keep-alive connection, so the gateway's pool keeps an idle connection to it once warmed up
    (and a forwarded request would be written at once, without waiting for a connect).
    """

    received: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            with self.lock:
                self.received.append(data)
            if b"\r\n\r\n" in data:
                writer.write(b"HTTP/1.1 418 Trapped\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()

    def seen(self) -> bytes:
        with self.lock:
            return b"".join(self.received)


def trickle(
    sock: socket.socket,
    data: bytes,
    *,
    interval_s: float,
    on_byte: Callable[[int], None] | None = None,
) -> tuple[int, Reply]:
    """Send `data` one byte per `interval_s` (a slowloris client), reading whatever comes back.

    Stops early when the gateway closes the connection. Returns (bytes sent, what was read);
    `Reply.closed` says whether the gateway cut the connection before `data` was all sent.
    The pause between bytes is a wait for the gateway to answer, not a blind sleep."""
    collector = _Collector()
    raw = b""
    for index in range(len(data)):
        if on_byte is not None:
            on_byte(index)
        readable, _, _ = select.select([sock], [], [], interval_s)
        if readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return index, Reply(collector.responses, True, raw)
            raw += chunk
            collector.parser.feed_data(chunk)
        try:
            sock.sendall(data[index : index + 1])
        except (BrokenPipeError, ConnectionResetError):
            rest = read_until_closed(sock)
            return index, Reply(collector.responses + rest.responses, True, raw + rest.raw)
    return len(data), Reply(collector.responses, False, raw)
