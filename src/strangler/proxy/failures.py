"""Upstream failures as values, and the problem+json answers (RFC 9457) they become.

Rules: the status code lives with the kind; one function renders every error answer; bodies
name the route and the reason, never a stack trace.
"""

from __future__ import annotations

import enum

import orjson

_REASONS: dict[int, bytes] = {
    100: b"Continue",
    101: b"Switching Protocols",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    409: b"Conflict",
    413: b"Content Too Large",
    422: b"Unprocessable Content",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}

# Precomputed status lines: the hot path builds one per response.
STATUS_LINES: dict[int, bytes] = {
    code: b"HTTP/1.1 %d %s\r\n" % (code, reason) for code, reason in _REASONS.items()
}


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    if line is None:
        line = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))
    return line


class FailureKind(enum.Enum):
    """Why an upstream exchange failed before its answer could start."""

    CONNECT_REFUSED = "connect_refused"
    # The backend's host name did not resolve: a typo or a DNS outage, not a server that is down.
    DNS_FAILED = "dns_failed"
    CONNECT_TIMEOUT = "connect_timeout"
    POOL_TIMEOUT = "pool_timeout"
    RESET = "upstream_reset"
    READ_TIMEOUT = "read_timeout"
    BAD_RESPONSE = "bad_response"
    # The TLS handshake with an https backend failed: its certificate did not verify (expired,
    # another name, an unknown CA) or it refused ours.
    TLS_FAILED = "tls_failed"

    def status(self) -> int:
        return _FAILURE_STATUS[self]

    def title(self) -> str:
        return _FAILURE_TITLE[self]


_FAILURE_STATUS = {
    FailureKind.CONNECT_REFUSED: 502,
    FailureKind.DNS_FAILED: 502,
    FailureKind.CONNECT_TIMEOUT: 504,
    FailureKind.POOL_TIMEOUT: 503,
    FailureKind.RESET: 502,
    FailureKind.READ_TIMEOUT: 504,
    FailureKind.BAD_RESPONSE: 502,
    FailureKind.TLS_FAILED: 502,
}
_FAILURE_TITLE = {
    FailureKind.CONNECT_REFUSED: "Upstream unreachable",
    FailureKind.DNS_FAILED: "Upstream host name did not resolve",
    FailureKind.CONNECT_TIMEOUT: "Upstream connect timed out",
    FailureKind.POOL_TIMEOUT: "Upstream connection pool exhausted",
    FailureKind.RESET: "Upstream closed the connection before answering",
    FailureKind.READ_TIMEOUT: "Upstream answer timed out",
    FailureKind.BAD_RESPONSE: "Upstream sent a malformed response",
    FailureKind.TLS_FAILED: "Upstream TLS handshake failed",
}


def render_problem(
    status: int,
    title: str,
    detail: str,
    *,
    route: str | None = None,
    backend: str | None = None,
    reason: str | None = None,
    request_id: bytes | None = None,
    close: bool = True,
) -> bytes:
    """A whole HTTP/1.1 response carrying an application/problem+json body (RFC 9457 §3)."""
    problem: dict[str, object] = {
        "type": f"https://strangler.dev/problems/{reason or status}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if route is not None:
        problem["route"] = route
    if backend is not None:
        problem["backend"] = backend
    if reason is not None:
        problem["reason"] = reason
    if request_id is not None:
        problem["request_id"] = request_id.decode("latin-1")
    body = orjson.dumps(problem)
    head = [
        status_line(status),
        b"Content-Type: application/problem+json\r\n",
        b"Content-Length: %d\r\n" % len(body),
        b"Cache-Control: no-store\r\n",
    ]
    if request_id is not None:
        head.append(b"X-Request-Id: " + request_id + b"\r\n")
    head.append(b"Connection: close\r\n\r\n" if close else b"\r\n")
    return b"".join(head) + body
