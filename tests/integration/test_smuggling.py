"""Request smuggling and malformed framing: refused with 400 (or 405/505), closed, never forwarded.

Every malformed request below targets /trap/..., a route whose backend is a `Trap`: if the
gateway forwarded any byte of it, the trap records it and answers 418. The trap is warmed up
first, so the gateway holds an idle connection it could write to without waiting for a connect.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson
import pytest

from tests.integration.abuse import Trap, problem, send_raw
from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.upstreams import EchoUpstream, RawUpstream

TRAP_ROUTE = """\
  - name: trap
    match: "ANY /trap/*rest"
    stage: new
"""


@pytest.fixture(scope="module")
def trap() -> Iterator[tuple[Trap, RawUpstream]]:
    handler = Trap()
    upstream = RawUpstream(handler).start()
    yield handler, upstream
    upstream.stop()


@pytest.fixture(scope="module")
def smuggling_gateway(
    legacy_upstream: EchoUpstream,
    trap: tuple[Trap, RawUpstream],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    """Legacy (echo) answers everything but /trap/*, which goes to the trap."""
    path = write_config(
        tmp_path_factory.mktemp("smuggling") / "strangler.yaml",
        legacy=legacy_upstream.url,
        new=trap[1].url,
        routes=TRAP_ROUTE,
    )
    gw = GatewayProcess(path).start()
    yield gw
    gw.stop()


POST = b"POST /trap/x HTTP/1.1\r\nHost: a\r\n"
GET = b"GET /trap/x HTTP/1.1\r\nHost: a\r\n"

# (id, raw request, status the gateway must answer)
MALFORMED: list[tuple[str, bytes, int]] = [
    ("cl-and-te", POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-and-cl", POST + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    ("two-differing-cl", POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    # RFC 9112 §6.3 would allow folding identical values; llhttp refuses, and so do we.
    ("two-identical-cl", POST + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    ("cl-list", POST + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    ("cl-negative", POST + b"Content-Length: -1\r\n\r\nabc", 400),
    ("cl-plus-sign", POST + b"Content-Length: +3\r\n\r\nabc", 400),
    ("te-gzip", POST + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
    ("te-chunked-gzip", POST + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("te-gzip-chunked", POST + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("te-xchunked", POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    (
        "te-chunked-twice",
        POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    ("te-in-http10", b"POST /trap/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold", GET + b"X-Folded: a\r\n b\r\n\r\n", 400),
    ("chunk-size-not-hex", POST + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", 400),
    (
        "chunk-size-overflow",
        POST + b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    ("bare-lf", b"GET /trap/x HTTP/1.1\nHost: a\n\n", 400),
    ("bare-lf-in-headers", b"GET /trap/x HTTP/1.1\r\nHost: a\nX-A: b\r\n\r\n", 400),
    ("space-before-colon", GET + b"X-Name : value\r\n\r\n", 400),
    ("nul-in-value", GET + b"X-Name: a\x00b\r\n\r\n", 400),
    ("missing-host-http11", b"GET /trap/x HTTP/1.1\r\nX-A: b\r\n\r\n", 400),
    ("two-hosts", GET + b"Host: b\r\n\r\n", 400),
    ("target-relative", b"GET trap/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("target-query-only", b"GET ?trap HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # RFC 9112 §3.2.4: the asterisk form is only for a server-wide OPTIONS.
    ("target-asterisk-get", b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("http2-version", b"GET /trap/x HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    (
        "connect-authority",
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        405,
    ),
    ("connect-path", b"CONNECT /trap/x HTTP/1.1\r\nHost: a\r\n\r\n", 405),
    # RFC 9112 §3: exactly one SP between method, target and version.
    ("two-spaces-before-target", b"GET  /trap/x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("two-spaces-before-version", b"GET /trap/x  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # A chunk-size line with hundreds of KiB of extensions (the bound is 4 KiB).
    (
        "long-chunk-extension",
        POST
        + b"Transfer-Encoding: chunked\r\n\r\n5;x="
        + b"a" * (300 << 10)
        + b"\r\nhello\r\n0\r\n\r\n",
        400,
    ),
    (
        "absolute-form-other-host",
        b"GET http://evil.example/trap/x HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    ),
    ("path-empty-segment", b"GET /trap//x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("path-encoded-slash", b"GET /trap/a%2Fx HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    (
        "upgrade-h2c",
        GET
        + b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
        + b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        400,
    ),
]


def _warm_up(gateway: GatewayProcess, trap: Trap) -> bytes:
    """Leave an idle keep-alive connection to the trap in the gateway's pool (a forwarded
    request would be written to it at once); returns what the trap has seen so far."""
    warm = send_raw(
        gateway.port, b"GET /trap/warm HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    )
    assert warm.statuses == [418]
    return trap.seen()


@pytest.mark.parametrize(
    ("raw", "status"), [pytest.param(raw, status, id=name) for name, raw, status in MALFORMED]
)
def test_malformed_request_is_refused_closed_and_never_forwarded(
    smuggling_gateway: GatewayProcess, trap: tuple[Trap, RawUpstream], raw: bytes, status: int
) -> None:
    before = _warm_up(smuggling_gateway, trap[0])
    reply = send_raw(smuggling_gateway.port, raw, timeout_s=2.0)
    assert reply.statuses == [status], reply.raw
    (response,) = reply.responses
    body = problem(response)
    assert body["status"] == status
    assert body["reason"] == f"client_{status}"
    assert response.header("connection") == "close"
    assert reply.closed
    assert trap[0].seen() == before, "the trap backend received bytes of a refused request"


def test_request_hidden_in_a_content_length_body_is_only_body(
    smuggling_gateway: GatewayProcess, legacy_upstream: EchoUpstream
) -> None:
    hidden = b"GET /smuggled/cl HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = (
        b"POST /carrier/cl HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(hidden), hidden)
    )
    reply = send_raw(smuggling_gateway.port, raw)
    assert reply.statuses == [200]
    echoed = orjson.loads(reply.responses[0].body)
    assert (echoed["path"], echoed["body_bytes"]) == ("/carrier/cl", len(hidden))
    assert reply.closed
    assert "/carrier/cl" in legacy_upstream.hits
    assert not [hit for hit in legacy_upstream.hits if hit.startswith("/smuggled")]


def test_request_hidden_in_a_chunk_is_only_body(
    smuggling_gateway: GatewayProcess, legacy_upstream: EchoUpstream
) -> None:
    hidden = b"0\r\n\r\nGET /smuggled/te HTTP/1.1\r\nHost: a\r\n\r\n"
    raw = (
        b"POST /carrier/te HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(hidden), hidden)
    )
    reply = send_raw(smuggling_gateway.port, raw)
    assert reply.statuses == [200]
    assert orjson.loads(reply.responses[0].body)["body_bytes"] == len(hidden)
    assert not [hit for hit in legacy_upstream.hits if hit.startswith("/smuggled")]


def test_cl_te_smuggling_attempt_forwards_nothing(
    smuggling_gateway: GatewayProcess, legacy_upstream: EchoUpstream
) -> None:
    # CL.TE: a front end that trusted Content-Length would pass the whole body on; a back end that
    # trusted Transfer-Encoding would then see the GET as a second request of its own.
    smuggled = b"GET /smuggled/clte HTTP/1.1\r\nHost: a\r\n\r\n"
    body = b"0\r\n\r\n" + smuggled
    raw = (
        b"POST /carrier/clte HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%s" % (len(body), body)
    )
    reply = send_raw(smuggling_gateway.port, raw)
    assert reply.statuses == [400]
    assert reply.closed
    hits = legacy_upstream.hits
    assert "/carrier/clte" not in hits
    assert not [hit for hit in hits if hit.startswith("/smuggled")]


@pytest.mark.parametrize("first_path", ["/pipe/fast", "/slow/300"])
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab", id="two-cl"),
        pytest.param(b"Transfer-Encoding: gzip\r\n\r\n", id="te-gzip"),
        pytest.param(b"Host: b\r\n\r\n", id="two-hosts"),
        pytest.param(b"X-A: b\r\n c\r\n\r\n", id="obs-fold"),
        # The head is fine, the body is not: the refusal comes while parsing the body.
        pytest.param(b"Transfer-Encoding: chunked\r\n\r\nzz\r\n", id="chunk-size-not-hex"),
        pytest.param(
            b"Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n0\r\n\r\n", id="chunk-too-long"
        ),
    ],
)
def test_valid_request_pipelined_before_a_malformed_one_is_answered_first(
    smuggling_gateway: GatewayProcess,
    trap: tuple[Trap, RawUpstream],
    first_path: str,
    bad: bytes,
) -> None:
    before = _warm_up(smuggling_gateway, trap[0])
    raw = b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % first_path.encode() + POST + bad
    reply = send_raw(smuggling_gateway.port, raw, timeout_s=3.0)
    assert reply.statuses == [200, 400], reply.raw
    first, refused = reply.responses
    assert first.header("content-type") == "application/json"
    assert problem(refused)["status"] == 400
    assert reply.closed
    # The refused request waited its turn behind the first; it must not be sent when that comes.
    assert trap[0].seen() == before, "the trap backend received bytes of a refused request"
