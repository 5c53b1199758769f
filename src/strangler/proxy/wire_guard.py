"""WireGuard: the checks on a request's raw bytes that httptools cannot make, and where each
message starts in them.

Rules:
- llhttp accepts a request line with several spaces between its parts and a chunk-size line of
  any length (chunk extensions of hundreds of KiB); servers and proxies that disagree about
  either are how requests are smuggled. RFC 9112 §3: a request line is method SP target SP
  version, exactly one SP each; the gateway refuses anything else (400). A chunk-size line with
  its extensions is bounded at MAX_CHUNK_LINE_BYTES (400).
- To look at each message's first line, the guard follows the framing: it finds where a head
  ends (llhttp requires CRLF line ends, so a head ends at the first CRLF CRLF), and learns the
  body's framing from the parser (`expect_body`, called from on_headers_complete). The caller
  feeds the parser one segment at a time (`segment_end`), so the parser's callbacks for a head
  run before the guard reads what follows it.
- After a protocol upgrade the bytes are no longer HTTP/1.1: the guard steps aside.
- Costs one `find` per line it looks at, and nothing per body byte.
"""

from __future__ import annotations

from typing import Final

from strangler.errors import ClientProtocolError

MAX_CHUNK_LINE_BYTES: Final = 4096
# A request line or trailer longer than this is left to the parser's own header limits.
_MAX_LINE_BYTES: Final = 1 << 16

# before a message: CRLFs to skip (RFC 9112 §2.2), then the request line
_REQUEST_LINE: Final = 0
# after the request line, looking for the CRLF CRLF that ends the head
_HEAD: Final = 1
# the head was handed to the parser; expect_body says what follows
_AWAIT_FRAMING: Final = 2
# `remaining` bytes of a Content-Length body
_BODY: Final = 3
# a chunk-size line
_CHUNK_LINE: Final = 4
# `remaining` bytes of chunk data and its CRLF
_CHUNK_DATA: Final = 5
# trailer lines after the last chunk, until an empty one
_TRAILERS: Final = 6
# upgraded: not HTTP/1.1 any more
_ASIDE: Final = 7


class WireGuard:
    """One client connection's raw-byte checks; `segment_end` before every parser feed."""

    def __init__(self) -> None:
        self._state = _REQUEST_LINE
        self.remaining = 0
        # The start of a line that has not ended yet (the request line, a chunk-size line, a
        # trailer), or the last bytes of an unfinished head.
        self._line = b""

    def __repr__(self) -> str:
        return f"<WireGuard state={self._state} remaining={self.remaining}>"

    def expect_body(self, *, content_length: int, is_chunked: bool, is_upgrade: bool) -> None:
        """Called once per request head, when the parser has read it: what follows it."""
        if is_upgrade:
            self._state = _ASIDE
        elif is_chunked:
            self._state = _CHUNK_LINE
        elif content_length > 0:
            self._state = _BODY
            self.remaining = content_length
        else:
            self._state = _REQUEST_LINE

    def segment_end(self, data: bytes, start: int) -> int:
        """How far from `start` the parser may be fed before the guard must look again: the end
        of the next head (whose framing the parser must read first), or of `data`. Raises
        ClientProtocolError (400) for a request that must be refused."""
        end = len(data)
        while start < end:
            state = self._state
            if state == _REQUEST_LINE:
                start = self._request_line(data, start, end)
                if self._state == _AWAIT_FRAMING:
                    # The whole head was in this read: the parser reads it next.
                    return start
            elif state == _HEAD:
                return self._head(data, start, end)
            elif state == _BODY:
                taken = min(self.remaining, end - start)
                self.remaining -= taken
                start += taken
                if not self.remaining:
                    self._state = _REQUEST_LINE
            elif state in (_CHUNK_LINE, _TRAILERS):
                start = self._chunk_line(data, start, end)
            elif state == _CHUNK_DATA:
                taken = min(self.remaining, end - start)
                self.remaining -= taken
                start += taken
                if not self.remaining:
                    self._state = _CHUNK_LINE
            else:
                # _AWAIT_FRAMING (the parser refused the head, or stopped at an upgrade) and
                # _ASIDE: nothing more for the guard to read.
                return end
        return end

    def _request_line(self, data: bytes, start: int, end: int) -> int:
        if not self._line:
            while start < end and (data[start] == 13 or data[start] == 10):
                start += 1
            if start == end:
                return end
            # The common case, a whole request line in this read: a compiled loop checks it (a
            # regex match cost ~3,400 instructions, callgrind), then one search finds the end of
            # the head.
            line_end = _request_line_end(data, start, end)
            if line_end > 0:
                found = data.find(b"\r\n\r\n", line_end - 2)
                if found >= 0:
                    self._state = _AWAIT_FRAMING
                    return found + 4
                self._state = _HEAD
                self._line = (b"\r\n" + data[line_end:end])[-3:]
                return end
        newline = data.find(b"\n", start)
        if newline < 0:
            self._carry(data, start, end)
            return end
        line = self._line + data[start:newline] if self._line else data[start:newline]
        self._line = b""
        parts = line.rstrip(b"\r").split(b" ")
        if len(parts) != 3 or not all(parts):
            raise ClientProtocolError(
                400,
                "the request line must be method SP target SP version, with exactly one space "
                "between them (RFC 9112 §3)",
            )
        # The CRLF that ends the request line may also start the CRLF CRLF that ends the head.
        self._state = _HEAD
        self._line = b"\r\n"
        return newline + 1

    def _head(self, data: bytes, start: int, end: int) -> int:
        tail = self._line
        if tail:
            joined = tail + data[start : start + 3]
            found = joined.find(b"\r\n\r\n")
            if found >= 0:
                self._line = b""
                self._state = _AWAIT_FRAMING
                return start + found + 4 - len(tail)
        found = data.find(b"\r\n\r\n", start)
        if found < 0:
            self._line = (tail + data[start:end])[-3:]
            return end
        self._line = b""
        self._state = _AWAIT_FRAMING
        return found + 4

    def _chunk_line(self, data: bytes, start: int, end: int) -> int:
        limit = MAX_CHUNK_LINE_BYTES if self._state == _CHUNK_LINE else _MAX_LINE_BYTES
        newline = data.find(b"\n", start)
        if newline < 0:
            self._carry(data, start, end, limit=limit)
            return end
        line = self._line + data[start:newline] if self._line else data[start:newline]
        self._line = b""
        line = line.rstrip(b"\r")
        if len(line) > limit:
            raise ClientProtocolError(400, self._too_long())
        if self._state == _TRAILERS:
            if not line:
                self._state = _REQUEST_LINE
            return newline + 1
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            # The parser refuses it; nothing after it is read.
            self._state = _ASIDE
            return newline + 1
        if size == 0:
            self._state = _TRAILERS
        else:
            self._state = _CHUNK_DATA
            self.remaining = size + 2
        return newline + 1

    def _carry(self, data: bytes, start: int, end: int, *, limit: int = _MAX_LINE_BYTES) -> None:
        """Keep an unfinished line for the next read, as long as it stays within `limit`."""
        line = self._line + data[start:end]
        # + 1: the CR of the line's CRLF may be here already.
        if len(line) > limit + 1:
            if self._state == _CHUNK_LINE:
                raise ClientProtocolError(400, self._too_long())
            # The parser's own header limit answers a long request line or trailer (431).
            self._state = _ASIDE
            line = b""
        self._line = line

    def _too_long(self) -> str:
        return (
            f"a chunk-size line (with its extensions) is longer than {MAX_CHUNK_LINE_BYTES} bytes"
        )


def _request_line_end(data: bytes, start: int, end: int) -> int:
    """Where the request line starting at `start` ends (after its CRLF) when it is whole and
    well formed: three non-empty parts, one SP between each (RFC 9112 §3). 0 when it is not
    whole in `data` or not well formed (the careful path decides which)."""
    spaces = 0
    previous = 0x20
    index = start
    while index < end:
        byte = data[index]
        if byte == 0x0A:
            if previous != 0x0D or spaces != 2 or data[index - 2] == 0x20:
                return 0
            return index + 1
        if byte == 0x20:
            if previous == 0x20:
                return 0
            spaces += 1
        previous = byte
        index += 1
    return 0


__all__ = ["MAX_CHUNK_LINE_BYTES", "WireGuard"]
