"""Forwarding through the real gateway: routing, headers, framing, keep-alive."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.integration.gateway_process import GatewayProcess
from tests.integration.rawhttp import exchange


def _headers(body: dict[str, object]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in body["headers"]:  # type: ignore[union-attr]
        out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize(
    ("method", "path", "backend"),
    [
        ("GET", "/api/projects/7", "new"),
        ("GET", "/api/projects/7.json", "new"),
        ("GET", "/api/projects", "legacy"),
        ("GET", "/api/projects.json", "legacy"),
        ("POST", "/api/projects/7", "legacy"),
        ("GET", "/api/projects/7/tasks", "legacy"),
        ("GET", "/somewhere/else", "legacy"),
    ],
)
def test_routes_send_each_request_to_its_stage_backend(
    gateway: GatewayProcess, method: str, path: str, backend: str
) -> None:
    response = httpx.request(method, gateway.url + path)
    assert response.status_code == 200
    assert response.json()["name"] == backend
    assert response.json()["path"] == path


def test_forwarding_headers_are_added(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.url + "/x?q=1", headers={"X-Forwarded-For": "6.6.6.6"})
    headers = _headers(response.json())
    # The client is not a trusted proxy, so its X-Forwarded-For is replaced, not appended to.
    assert headers["x-forwarded-for"] == ["127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [f"127.0.0.1:{gateway.port}"]
    assert headers["host"] == [f"127.0.0.1:{gateway.port}"]
    assert headers["via"] == ["1.1 strangler"]
    assert response.json()["query"] == "q=1"
    assert response.headers["via"] == "1.1 strangler"


def test_traceparent_is_created_and_request_id_returned(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.url + "/trace")
    sent = _headers(response.json())
    traceparent = sent["traceparent"][0]
    match = re.fullmatch(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01", traceparent)
    assert match is not None
    assert sent["x-request-id"] == [response.headers["x-request-id"]]
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_incoming_traceparent_keeps_its_trace_and_gets_a_new_parent(
    gateway: GatewayProcess,
) -> None:
    incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    response = httpx.get(
        gateway.url + "/trace", headers={"traceparent": incoming, "X-Request-Id": "req-123"}
    )
    sent = _headers(response.json())
    trace_id, parent = sent["traceparent"][0].split("-")[1:3]
    assert trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert parent != "b7ad6b7169203331"
    assert sent["x-request-id"] == ["req-123"]
    assert response.headers["x-request-id"] == "req-123"


@pytest.mark.parametrize(
    "bad", ["00-zzz-b7ad6b7169203331-01", "00-00000000000000000000000000000000-b7ad6b7169203331-01"]
)
def test_invalid_traceparent_starts_a_new_trace(gateway: GatewayProcess, bad: str) -> None:
    sent = _headers(httpx.get(gateway.url + "/t", headers={"traceparent": bad}).json())
    assert sent["traceparent"][0] != bad
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", sent["traceparent"][0])


def test_hop_by_hop_and_connection_listed_headers_are_removed(gateway: GatewayProcess) -> None:
    raw = (
        b"GET /hop HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret-Hop\r\n"
        b"X-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: x\r\n"
        b"X-Kept: yes\r\n\r\n"
    )
    (response,), _ = exchange(gateway.port, raw)
    import orjson

    names = {name for name, _ in orjson.loads(response.body)["headers"]}
    assert "x-kept" in names
    assert not names & {"x-secret-hop", "keep-alive", "te", "proxy-connection"}


def test_keep_alive_reuses_the_client_connection(gateway: GatewayProcess) -> None:
    with httpx.Client() as client:
        for index in range(20):
            response = client.get(f"{gateway.url}/ka/{index}")
            assert response.json()["path"] == f"/ka/{index}"
        assert response.headers.get("connection") != "close"


def test_pipelined_requests_are_answered_in_order(gateway: GatewayProcess) -> None:
    raw = (
        b"".join(b"GET /pipe/%d HTTP/1.1\r\nHost: a\r\n\r\n" % i for i in range(10))
        + b"POST /pipe/body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    )
    responses, _ = exchange(gateway.port, raw, expect=11)
    import orjson

    paths = [orjson.loads(r.body)["path"] for r in responses]
    assert paths == [f"/pipe/{i}" for i in range(10)] + ["/pipe/body"]
    assert orjson.loads(responses[-1].body)["body_bytes"] == 5


def test_http10_client_gets_a_close_delimited_answer(gateway: GatewayProcess) -> None:
    (response,), closed = exchange(gateway.port, b"GET /bytes/1000 HTTP/1.0\r\n\r\n")
    assert response.status == 200
    assert len(response.body) == 1000
    assert response.header("transfer-encoding") is None
    assert closed


def test_http10_keep_alive_is_honoured(gateway: GatewayProcess) -> None:
    one = b"HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    raw = b"GET /a " + one + b"GET /b " + one
    responses, _ = exchange(gateway.port, raw, expect=2)
    assert [r.status for r in responses] == [200, 200]
    assert responses[0].header("connection") == "keep-alive"


@pytest.mark.parametrize(("code", "has_body"), [(200, True), (204, False), (304, False)])
def test_bodyless_statuses_carry_no_body(
    gateway: GatewayProcess, code: int, has_body: bool
) -> None:
    response = httpx.get(f"{gateway.url}/status/{code}")
    assert response.status_code == code
    assert (response.content != b"") is has_body


def test_head_response_has_headers_but_no_body(gateway: GatewayProcess) -> None:
    with httpx.Client() as client:
        head = client.head(gateway.url + "/api/projects/3")
        assert head.status_code == 200
        assert int(head.headers["content-length"]) > 0
        assert head.content == b""
        # The same keep-alive connection still works after a HEAD.
        after = client.get(gateway.url + "/api/projects/3")
        assert after.json()["name"] == "new"


def test_chunked_request_body_is_streamed_to_upstream(gateway: GatewayProcess) -> None:
    def body():
        for _ in range(50):
            yield b"y" * 10_000

    response = httpx.post(gateway.url + "/upload", content=body())
    assert response.json()["body_bytes"] == 500_000


def test_chunked_response_is_relayed(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.url + "/bytes/300000")
    assert response.headers["transfer-encoding"] == "chunked"
    assert len(response.content) == 300_000


def test_content_length_response_is_relayed(gateway: GatewayProcess) -> None:
    response = httpx.get(gateway.url + "/bytes/300000?length=1")
    assert response.headers["content-length"] == "300000"
    assert len(response.content) == 300_000


def test_expect_100_continue(gateway: GatewayProcess) -> None:
    import socket

    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=10)
    try:
        sock.sendall(
            b"POST /expect HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"data")
        data = interim[len(b"HTTP/1.1 100 Continue\r\n\r\n") :]
        while b'"body_bytes":4' not in data:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert data.startswith(b"HTTP/1.1 200") or b"HTTP/1.1 200" in data
    finally:
        sock.close()


def test_forwarding_headers_from_a_trusted_proxy_are_extended(
    start_gateway,
    legacy_upstream,
) -> None:
    gw = start_gateway(
        legacy=legacy_upstream.url,
        extra="forwarding:\n  trusted_proxies: [127.0.0.0/8]\n",
    )
    response = httpx.get(
        gw.url + "/trusted",
        headers={
            "X-Forwarded-For": "203.0.113.7",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "shop.example",
        },
    )
    headers = _headers(response.json())
    assert headers["x-forwarded-for"] == ["203.0.113.7, 127.0.0.1"]
    assert headers["x-forwarded-proto"] == ["https"]
    assert headers["x-forwarded-host"] == ["shop.example"]


def test_backend_host_header_mode_sends_the_backend_authority(
    start_gateway,
    legacy_upstream,
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, backend_options=', host_header: "backend"')
    headers = _headers(httpx.get(gw.url + "/host").json())
    assert headers["host"] == [legacy_upstream.url.removeprefix("http://")]
    assert headers["x-forwarded-host"] == [f"127.0.0.1:{gw.port}"]
