"""WireGuard against llhttp (httptools), fed in random pieces: valid streams pass whole, and a
request line with extra spaces or an oversized chunk-size line is refused wherever the reads
split."""

from __future__ import annotations

import itertools

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.errors import ClientProtocolError
from strangler.proxy.wire_guard import MAX_CHUNK_LINE_BYTES, WireGuard


class _Recorder:
    """Parser callbacks that tell the guard each head's framing, as ClientConnection does."""

    def __init__(self, guard: WireGuard) -> None:
        self.guard = guard
        self.length = -1
        self.is_chunked = False
        self.completed = 0

    def on_message_begin(self) -> None:
        self.length, self.is_chunked = -1, False

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() == b"content-length":
            self.length = int(value)
        elif name.lower() == b"transfer-encoding":
            self.is_chunked = True

    def on_headers_complete(self) -> None:
        self.guard.expect_body(
            content_length=self.length, is_chunked=self.is_chunked, is_upgrade=False
        )

    def on_message_complete(self) -> None:
        self.completed += 1


def _feed(raw: bytes, cuts: list[int]) -> int:
    guard = WireGuard()
    recorder = _Recorder(guard)
    parser = httptools.HttpRequestParser(recorder)
    edges = [0, *sorted(set(cuts)), len(raw)]
    for left, right in itertools.pairwise(edges):
        data = raw[left:right]
        start = 0
        while start < len(data):
            end = guard.segment_end(data, start)
            parser.feed_data(memoryview(data)[start:end])
            start = end
    return recorder.completed


VALID = (
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    b"\r\nPOST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
    b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n"
    b"GET /z HTTP/1.0\r\n\r\n"
)
EXTENSION = b"a" * (MAX_CHUNK_LINE_BYTES + 1)
REFUSED = {
    "two spaces before the target": b"GET  /x HTTP/1.1\r\nHost: a\r\n\r\n",
    "two spaces before the version": b"GET /x  HTTP/1.1\r\nHost: a\r\n\r\n",
    "pipelined after a body": (
        b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /x  HTTP/1.1\r\nHost: a\r\n\r\n"
    ),
    "pipelined after a chunked body": (
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"
    ),
    "a long chunk extension": (
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;x=" + EXTENSION + b"\r\nhello\r\n0\r\n\r\n"
    ),
}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(VALID) - 1), max_size=8))
def test_valid_streams_pass_however_they_are_split(cuts: list[int]) -> None:
    assert _feed(VALID, cuts) == 4


@pytest.mark.parametrize("raw", REFUSED.values(), ids=REFUSED.keys())
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_smuggling_shapes_are_refused_however_they_are_split(
    raw: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(min_value=1, max_value=len(raw) - 1), max_size=6))
    with pytest.raises(ClientProtocolError) as refused:
        _feed(raw, cuts)
    assert refused.value.status == 400


def test_a_chunk_line_at_the_bound_passes() -> None:
    extension = b";x=" + b"a" * (MAX_CHUNK_LINE_BYTES - 4)
    raw = (
        b"POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5" + extension + b"\r\nhello\r\n0\r\n\r\n"
    )
    assert _feed(raw, []) == 1


def test_an_upgraded_connection_is_not_read_as_http() -> None:
    guard = WireGuard()
    head = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    assert guard.segment_end(head + b"\x81\x85 GET  x", 0) == len(head)
    guard.expect_body(content_length=-1, is_chunked=False, is_upgrade=True)
    assert guard.segment_end(b"GET  /x HTTP/1.1\r\n\r\n", 0) == 20
