"""Bodies stream through the gateway: a gigabyte passes whole while the gateway's memory stays
flat, and a slow side slows the other side down instead of being buffered in the gateway.

Memory is the gateway process tree's resident set, sampled every 50 ms from a thread while the
body flows (`RssMonitor`); a buffering gateway would grow by the body's size, a streaming one
by a few read buffers.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.probes import MIB, CountingResponse, RssMonitor, connections_to, wait_until
from tests.integration.rawhttp import connect, read_responses
from tests.integration.upstreams import EchoUpstream, RawUpstream, read_request_head

GIB = 1 << 30
RSS_BOUND = 64 * MIB
_BASE_PIECE = bytes(range(256)) * 4096  # 1 MiB


def _pieces(
    count: int, digest: hashlib._Hash, on_progress: Callable[[], object] | None = None
) -> Iterator[bytes]:
    """`count` different 1 MiB pieces (each starts with its index), hashed as they are sent;
    `on_progress` is called every 16 pieces (a probe looking at the gateway mid-transfer)."""
    for index in range(count):
        piece = index.to_bytes(8, "big") + _BASE_PIECE[8:]
        digest.update(piece)
        if on_progress is not None and index % 16 == 15:
            on_progress()
        yield piece


def _headers(body: dict[str, object]) -> dict[str, str]:
    return {key: value for key, value in body["headers"]}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("mib", "framing"),
    [
        pytest.param(1024, "content-length", marks=pytest.mark.slow, id="1GiB-content-length"),
        pytest.param(256, "chunked", id="256MiB-chunked"),
    ],
)
def test_upload_arrives_whole_while_gateway_memory_stays_flat(
    gateway: GatewayProcess, mib: int, framing: str
) -> None:
    digest = hashlib.sha256()
    headers = {"Content-Length": str(mib * MIB)} if framing == "content-length" else {}
    with RssMonitor(gateway.pid, interval_s=0.01) as rss:
        response = httpx.post(
            gateway.url + "/upload",
            content=_pieces(mib, digest, rss.record),
            headers=headers,
            timeout=60,
        )
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "legacy"
    assert body["body_bytes"] == mib * MIB
    assert body["body_sha256"] == digest.hexdigest()
    sent = _headers(body)
    if framing == "content-length":
        assert sent["content-length"] == str(mib * MIB)
        assert "transfer-encoding" not in sent
    else:
        assert sent["transfer-encoding"] == "chunked"
    assert rss.samples > 5, rss
    assert rss.growth < RSS_BOUND, rss


@pytest.mark.parametrize(
    ("path", "size", "framing"),
    [
        pytest.param("/bytes/1073741824", GIB, "chunked", marks=pytest.mark.slow, id="1GiB"),
        pytest.param("/bytes/268435456?length=1", 256 * MIB, "content-length", id="256MiB"),
    ],
)
def test_download_passes_through_while_gateway_memory_stays_flat(
    gateway: GatewayProcess, path: str, size: int, framing: str
) -> None:
    sock = connect(gateway.port, timeout_s=30)
    with sock:
        with RssMonitor(gateway.pid, interval_s=0.01) as rss:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            response = CountingResponse(sock).read_to_end(on_progress=rss.record)
        # The connection is still in step: the next request on it gets its own answer.
        sock.sendall(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        (after,), _ = read_responses(sock)
    assert response.status == 200
    assert response.is_complete, response
    assert response.body_bytes == size
    if framing == "chunked":
        assert response.headers["transfer-encoding"] == "chunked"
    else:
        assert response.headers["content-length"] == str(size)
    assert rss.samples > 5, rss
    assert rss.growth < RSS_BOUND, rss
    assert after.status == 200
    assert orjson.loads(after.body)["path"] == "/next"


def test_http10_client_gets_a_large_chunked_answer_delimited_by_the_close(
    gateway: GatewayProcess,
) -> None:
    size = 256 * MIB
    sock = connect(gateway.port, timeout_s=30)
    with sock, RssMonitor(gateway.pid, interval_s=0.01) as rss:
        sock.sendall(f"GET /bytes/{size} HTTP/1.0\r\n\r\n".encode())
        response = CountingResponse(sock).read_to_end(on_progress=rss.record)
    # An HTTP/1.0 client can't read chunked: the gateway de-chunks and the close ends the body.
    assert response.is_closed
    assert response.status == 200
    assert "transfer-encoding" not in response.headers
    assert response.body_bytes == size
    assert rss.growth < RSS_BOUND, rss


@pytest.mark.parametrize("workers", [1, 2])
def test_slow_reader_slows_the_upstream_instead_of_being_buffered(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, workers: int
) -> None:
    gw = start_gateway(workers=workers, legacy=legacy_upstream.url)
    size = 256 * MIB
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", gw.port))
    with sock:
        with RssMonitor(gw.pid) as rss:
            sock.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            response = CountingResponse(sock)
            # About 2 s of a reader taking 64 KiB every 20 ms (~3 MiB/s) while the upstream could
            # send ~1 GB/s: without backpressure the gateway would hold the whole body by now.
            for _ in range(100):
                response.read_some(64 * 1024)
                time.sleep(0.02)
        read_slowly = response.body_bytes
        response.read_to_end()
    assert response.status == 200
    assert read_slowly < size // 4
    assert rss.samples > 20, rss
    assert rss.growth < RSS_BOUND, rss
    assert response.is_complete, response
    assert response.body_bytes == size


async def _slow_consumer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An upstream that reads the request body at ~3 MiB/s for 2 s, then the rest at full speed."""
    head = await read_request_head(reader)
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    digest = hashlib.sha256()
    received = 0
    read_slowly = 0
    for _ in range(100):
        piece = await reader.read(min(64 * 1024, length - received))
        digest.update(piece)
        received += len(piece)
        await asyncio.sleep(0.02)
    read_slowly = received
    while received < length:
        piece = await reader.read(min(MIB, length - received))
        if not piece:
            break
        digest.update(piece)
        received += len(piece)
    body = orjson.dumps(
        {"body_bytes": received, "body_sha256": digest.hexdigest(), "read_slowly": read_slowly}
    )
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    await writer.drain()


def test_slow_upstream_reader_slows_the_client_upload_instead_of_being_buffered(
    start_gateway: GatewayFactory,
) -> None:
    upstream = RawUpstream(_slow_consumer).start()
    try:
        gw = start_gateway(legacy=upstream.url)
        size_mib = 256
        digest = hashlib.sha256()
        with RssMonitor(gw.pid) as rss:
            response = httpx.post(
                gw.url + "/upload",
                content=_pieces(size_mib, digest),
                headers={"Content-Length": str(size_mib * MIB)},
                timeout=60,
            )
        assert response.status_code == 200
        body = response.json()
        assert body["read_slowly"] < size_mib * MIB // 4
        assert body["body_bytes"] == size_mib * MIB
        assert body["body_sha256"] == digest.hexdigest()
        assert rss.samples > 20, rss
        assert rss.growth < RSS_BOUND, rss
    finally:
        upstream.stop()


def test_client_hanging_up_mid_download_closes_the_upstream_connection(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url)
    with RssMonitor(gw.pid) as rss:
        sock = connect(gw.port)
        with sock:
            sock.sendall(f"GET /bytes/{GIB} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            response = CountingResponse(sock)
            while response.body_bytes < 8 * MIB:
                assert response.read_some(MIB) > 0
            assert connections_to(gw.pid, legacy_upstream.port) == 1
        # The half-sent answer can't be finished, so its upstream connection can't be reused.
        wait_until(
            lambda: connections_to(gw.pid, legacy_upstream.port) == 0,
            "the gateway to close its connection to the upstream",
            timeout_s=5,
        )
    assert rss.growth < RSS_BOUND, rss
    assert httpx.get(gw.url + "/after", timeout=10).json()["name"] == "legacy"
