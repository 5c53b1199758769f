"""Copies of GET requests are pipelined to the shadow backend: several per write, answers
matched in order, copies behind a closed connection sent again, late ones timed out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest

from strangler.shadow.channel import MAX_RESENDS
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.upstreams import EchoUpstream, RawUpstream

ROUTES = """\
  - name: items
    match: "GET /items/:id"
    stage: shadow
    shadow: {noise_sample_rate: 0, timeout_s: 1}
"""


def _answer(path: bytes, *, close: bool = False) -> bytes:
    # The same body the legacy side sends (see _legacy_item): copies compare equal.
    body = orjson.dumps({"path": path.decode()})
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + connection
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body
    )


class PipelineBackend:
    """A raw HTTP/1.1 server that answers GETs in order and records how they arrived."""

    def __init__(self, *, close_after: int = 0, stall_path: bytes | None = None) -> None:
        self.close_after = close_after
        self.stall_path = stall_path
        self.reads: list[int] = []  # requests found in each read
        self.upstream = RawUpstream(self._serve)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answered = 0
        async for paths in _request_paths(reader):
            self.reads.append(len(paths))
            for path in paths:
                if path == self.stall_path:
                    await asyncio.sleep(30)
                answered += 1
                is_last = answered == self.close_after
                writer.write(_answer(path, close=is_last))
                if is_last:
                    await writer.drain()
                    return
            await writer.drain()


async def _request_paths(reader: asyncio.StreamReader) -> AsyncIterator[list[bytes]]:
    """The paths of the (bodiless) requests found in each read, until the client closes."""
    buffer = b""
    while data := await reader.read(65536):
        buffer += data
        heads = buffer.split(b"\r\n\r\n")
        buffer = heads.pop()
        yield [head.split(b" ", 2)[1] for head in heads]


async def _legacy_item(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    async for paths in _request_paths(reader):
        for path in paths:
            writer.write(_answer(path))
        await writer.drain()


@pytest.fixture
def legacy() -> Iterator[RawUpstream]:
    upstream = RawUpstream(_legacy_item).start()
    yield upstream
    upstream.stop()


def _results(gw: GatewayProcess) -> dict[str, object]:
    assert gw.stop() == 0
    for line in gw.stderr_lines:
        if "shadow results " in line:
            stats: dict[str, object] = orjson.loads(line.split("shadow results ", 1)[1])
            return stats
    raise AssertionError("no shadow results logged")


async def _burst(url: str, count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        return await asyncio.gather(*(client.get(f"{url}/items/{i}") for i in range(count)))


def test_concurrent_copies_share_writes_and_all_compare_equal(
    start_gateway: GatewayFactory, legacy: RawUpstream
) -> None:
    backend = PipelineBackend()
    backend.upstream.start()
    try:
        gw = start_gateway(legacy=legacy.url, new=backend.upstream.url, routes=ROUTES)
        for _ in range(5):
            responses = asyncio.run(_burst(gw.url, 40))
            assert all(r.status_code == 200 for r in responses)
        stats = _results(gw)
    finally:
        backend.upstream.stop()
    assert (stats["mirrored"], stats["compared"], stats["equal"]) == (200, 200, 200)
    assert stats["dropped"] == {}
    # Pipelined: some reads carried several copies, and far fewer connections than copies.
    assert max(backend.reads) > 1
    assert backend.upstream.connections < 40


def test_copies_behind_a_closing_connection_are_sent_again(
    start_gateway: GatewayFactory, legacy: RawUpstream
) -> None:
    backend = PipelineBackend(close_after=4)
    backend.upstream.start()
    try:
        gw = start_gateway(legacy=legacy.url, new=backend.upstream.url, routes=ROUTES)
        for _ in range(3):
            asyncio.run(_burst(gw.url, 20))
        stats = _results(gw)
    finally:
        backend.upstream.stop()
    # Every connection closes after 4 answers; nothing is lost to that.
    assert (stats["compared"], stats["equal"], stats["dropped"]) == (60, 60, {})


async def _close_unanswered(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Reads a request, then closes without a byte of answer: no announced close, no progress.
    await reader.read(65536)


def test_closes_without_an_answer_are_retried_a_bounded_number_of_times(
    start_gateway: GatewayFactory, legacy: RawUpstream
) -> None:
    backend = RawUpstream(_close_unanswered).start()
    try:
        gw = start_gateway(legacy=legacy.url, new=backend.url, routes=ROUTES)
        responses = asyncio.run(_burst(gw.url, 10))
        assert all(r.status_code == 200 for r in responses)  # the client never waits
        stats = _results(gw)
    finally:
        backend.stop()
    assert (stats["compared"], stats["dropped"]) == (0, {"shadow_error": 10})
    # Each copy went at most 1 + MAX_RESENDS times, several on a connection: never a loop.
    assert 1 <= backend.connections <= 10 * (1 + MAX_RESENDS)


def test_a_stalled_answer_times_out_and_the_copies_behind_it_still_count(
    start_gateway: GatewayFactory, legacy: RawUpstream
) -> None:
    backend = PipelineBackend(stall_path=b"/items/0")
    backend.upstream.start()
    try:
        gw = start_gateway(legacy=legacy.url, new=backend.upstream.url, routes=ROUTES)
        responses = asyncio.run(_burst(gw.url, 20))
        assert all(r.status_code == 200 for r in responses)  # the client never waits
        stats = _results(gw)
    finally:
        backend.upstream.stop()
    dropped = stats["dropped"]
    assert isinstance(dropped, dict)
    assert dropped.get("shadow_timeout", 0) >= 1
    assert stats["compared"] + sum(dropped.values()) == 20  # type: ignore[operator]
    # Those queued behind the stall on its connection went again elsewhere and compared.
    assert stats["compared"] >= 10  # type: ignore[operator]


def test_depth_one_turns_pipelining_off(start_gateway: GatewayFactory, legacy: RawUpstream) -> None:
    backend = PipelineBackend()
    backend.upstream.start()
    try:
        gw = start_gateway(
            legacy=legacy.url,
            new=backend.upstream.url,
            routes=ROUTES,
            backend_options=", shadow_pipeline_depth: 1",
        )
        asyncio.run(_burst(gw.url, 20))
        stats = _results(gw)
    finally:
        backend.upstream.stop()
    assert stats["compared"] == 20
    assert max(backend.reads) == 1


def test_echo_backend_under_uvicorn_compares_pipelined_copies(
    start_gateway: GatewayFactory,
) -> None:
    """uvicorn (httptools) as the new backend: a real server, pipelined copies, same answers."""
    legacy, new = EchoUpstream("same").start(), EchoUpstream("same").start()
    routes = """\
  - name: echo
    match: "GET /echo/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
    diff: {ignore: ["$.headers"]}
"""
    try:
        gw = start_gateway(legacy=legacy.url, new=new.url, routes=routes)

        async def burst() -> None:
            async with httpx.AsyncClient(limits=httpx.Limits(max_connections=30)) as client:
                await asyncio.gather(*(client.get(f"{gw.url}/echo/{i}") for i in range(30)))

        asyncio.run(burst())
        stats = _results(gw)
    finally:
        legacy.stop()
        new.stop()
    assert (stats["compared"], stats["equal"], stats["dropped"]) == (30, 30, {})
