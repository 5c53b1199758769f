"""The plain listener with `tls.redirect_plain: true`: every request is answered 308 to the
same URL over https, and nothing reaches a backend.

Rules: 308, not 301, so a POST stays a POST with its body (RFC 9110 §15.4.9). The Location's
host is the request's Host without its port, then the HTTPS listener's port unless it is
443. A request without a usable Host (or with a malformed head) gets 400 and a close. Not on
the hot path, and not compiled: a redirecting listener forwards nothing.
"""

from __future__ import annotations

import asyncio
import re
from typing import cast

import httptools

from strangler.proxy.failures import render_problem, status_line

# RFC 3986 §3.2.2 reg-name / IPv4, or an IP-literal in brackets, then an optional port: anything
# else in Host would let a client write into the Location header.
_HOST = re.compile(rb"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]+)(:[0-9]*)?")
_MAX_HEAD_BYTES = 32768


class RedirectConnection(asyncio.Protocol):
    """One client of the redirecting plain listener."""

    def __init__(self, https_port: int, *, header_timeout_s: float) -> None:
        self.https_port = https_port
        self.header_timeout_s = header_timeout_s
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.host: bytes | None = None
        self.head_bytes = 0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self.timer = loop.call_later(self.header_timeout_s, self.transport.close)

    def data_received(self, data: bytes) -> None:
        self.head_bytes += len(data)
        try:
            if self.head_bytes > _MAX_HEAD_BYTES:
                raise httptools.HttpParserError("header section too large")
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._answer(
                render_problem(400, "Bad Request", "malformed request", reason="bad_request")
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.url = b""
        self.host = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"host":
            self.host = value

    def on_headers_complete(self) -> None:
        match = _HOST.fullmatch(self.host or b"")
        if match is None or self.url[:1] != b"/":
            self._answer(
                render_problem(
                    400,
                    "Bad Request",
                    "a valid Host header and an origin-form target (/path) are required",
                    reason="bad_host",
                )
            )
            return
        port = b"" if self.https_port == 443 else b":%d" % self.https_port
        location = b"https://" + match.group(1) + port + self.url
        self._answer(
            status_line(308)
            + b"Location: "
            + location
            + b"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )

    def _answer(self, response: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        # One answer per connection: a client that pipelined more follows the redirect anyway.
        transport.write(response)
        transport.close()
