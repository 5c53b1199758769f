"""A raw-socket HTTP/1.1 client for tests that need exact bytes on the wire."""

from __future__ import annotations

import socket

import httptools


class RawResponse:
    def __init__(self) -> None:
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.body = b""
        self.complete = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.decode().lower() == name.lower():
                return value.decode()
        return None


class _Collector:
    def __init__(self, head_only: bool = False) -> None:
        self.responses: list[RawResponse] = []
        self.parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.responses.append(RawResponse())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.responses[-1].headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.responses[-1].status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.responses[-1].body += body

    def on_message_complete(self) -> None:
        self.responses[-1].complete = True


def connect(port: int, timeout_s: float = 10.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    return sock


def exchange(
    port: int, data: bytes, *, expect: int = 1, timeout_s: float = 10.0
) -> tuple[list[RawResponse], bool]:
    """Send raw bytes, read until `expect` complete responses or the server closes.

    Returns (responses, closed_by_server)."""
    sock = connect(port, timeout_s)
    try:
        sock.sendall(data)
        return read_responses(sock, expect=expect)
    finally:
        sock.close()


def read_responses(sock: socket.socket, *, expect: int = 1) -> tuple[list[RawResponse], bool]:
    collector = _Collector()
    closed = False
    while sum(r.complete for r in collector.responses) < expect:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            closed = True
            break
        if not data:
            closed = True
            break
        collector.parser.feed_data(data)
    return collector.responses, closed


def is_closed(sock: socket.socket) -> bool:
    """True if the peer closed (or reset) the connection; waits up to the socket timeout."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
