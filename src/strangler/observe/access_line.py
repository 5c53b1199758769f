"""The JSON access log's lines, formatted on the event loop by compiled code and queued as bytes
for the writer thread (observe/access_log.py), which only joins and writes them.

Rules:
- The line has exactly the fields and order of AccessLog's JSON format. Numbers and the
  gateway's own values (route names, stages, ids it made or checked) are spliced in as bytes;
  a request target that could hold anything to escape or redact (a query string, a quote, a
  backslash, a control or non-ASCII byte, the start of a JWT `eyJ` or of a Rails signed
  message `--`) goes through `slow_path`, the access log's redaction and JSON escaping.
- Bounded like AccessLog: at `max_pending` queued lines the next is dropped and counted.
- Why compiled and not an entry formatted by the thread: the thread runs on the worker's core
  too, and formatting a line in Python there cost more than the request it logged
  (bench/proxy_bench.py --observability).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from time import perf_counter
from typing import Final

import orjson

# A batch: the writer wakes when this many lines wait (else every 0.2 s).
BATCH: Final = 1024
_DIGITS3: Final = tuple(b"%03d" % n for n in range(1000))
# The three decimals of a millisecond figure.
_DOT_DIGITS3: Final = tuple(b".%03d" % n for n in range(1000))
# Small numbers (statuses, byte counts, milliseconds) by table: str(n).encode() cost ~400
# instructions a number, compiled.
_NUMBERS: Final = tuple(b"%d" % n for n in range(10_000))
_SIDES: Final = {"legacy": b'"legacy"', "new": b'"new"', "gateway": b'"gateway"'}


class AccessLines:
    """Formats and queues lines; `pending` is drained by the writer thread."""

    def __init__(
        self,
        *,
        min_status: int,
        min_duration_ms: float,
        sample: float,
        max_pending: int,
        wake: Callable[[], object],
        slow_path: Callable[[bytes], bytes],
        random: Callable[[], float],
    ) -> None:
        self.pending: deque[bytes] = deque()
        self.dropped = 0
        self._min_status = min_status
        self._min_duration_ms = min_duration_ms
        self._sample = sample
        self._max_pending = max_pending
        self._wake = wake
        self._slow_path = slow_path
        self._random = random
        # The ts prefix of the current second, made once per second.
        self._second = -1
        self._ts_prefix = b""
        self._wall_offset = time.time() - perf_counter()
        # JSON strings of route names, stages and reasons (from the config: bounded).
        self._quoted: dict[str, bytes] = {}

    def wants(self, status: int, duration_ms: float) -> bool:
        """Every answer at or above `min_status` or slower than `min_duration_ms` (each off at
        0), and a `sample` of the rest."""
        if 0 < self._min_status <= status or 0.0 < self._min_duration_ms <= duration_ms:
            return True
        sample = self._sample
        return sample >= 1.0 or (sample > 0.0 and self._random() < sample)

    def add(
        self,
        request_id: bytes,
        trace_id: bytes,
        client: bytes,
        method: bytes,
        target: bytes,
        route: str,
        stage: str,
        side: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        duration_s: float,
        upstream_s: float,
        canary_reason: str | None,
        user: str | None,
        fault: str | None = None,
    ) -> None:
        """One answered request; `upstream_s` < 0 when no upstream answered; `fault` the kind
        of fault a drill injected into it, if any."""
        if len(self.pending) >= self._max_pending:
            self.dropped += 1
            return
        # Wall time from the monotonic clock the proxy reads anyway, re-anchored every second.
        started = self._wall_offset + perf_counter() - duration_s
        second = int(started)
        if second != self._second:
            self._wall_offset = time.time() - perf_counter()
            started = self._wall_offset + perf_counter() - duration_s
            second = int(started)
            self._second = second
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._ts_prefix = b'{"ts":"' + stamp.encode("ascii") + b"."
        millis = min(int((started - second) * 1000.0), 999)
        duration_us = max(int(duration_s * 1_000_000.0), 0)
        upstream_us = int(upstream_s * 1_000_000.0)
        parts = [
            self._ts_prefix,
            _DIGITS3[millis],
            b'Z","request_id":"',
            request_id,
            b'","trace_id":',
            b'"' + trace_id + b'"' if trace_id else b"null",
            b',"client":"',
            client,
            b'","method":"',
            method,
            b'","path":',
            self._path(target),
            b',"route":',
            self._quote(route),
            b',"stage":',
            self._quote(stage),
            b',"side":',
            _SIDES.get(side) or orjson.dumps(side),
            b',"status":',
            _number(status),
            b',"bytes_in":',
            _number(bytes_in),
            b',"bytes_out":',
            _number(bytes_out),
            b',"duration_ms":',
            _number(duration_us // 1000),
            _DOT_DIGITS3[duration_us % 1000],
            b',"upstream_ms":',
            _number(upstream_us // 1000) if upstream_us >= 0 else b"null",
            _DOT_DIGITS3[upstream_us % 1000] if upstream_us >= 0 else b"",
            b',"canary_reason":',
            self._quote(canary_reason) if canary_reason is not None else b"null",
            b',"shadow":null,"user":',
            orjson.dumps(user) if user is not None else b"null",
            b',"fault":',
            self._quote(fault) if fault is not None else b"null",
            b"}\n",
        ]
        # `pending` read again here, next to the append: the writer swaps in a new queue, and
        # the slow path above runs Python code, during which it may have.
        pending = self.pending
        pending.append(b"".join(parts))
        if len(pending) == BATCH:
            self._wake()

    def _quote(self, text: str) -> bytes:
        quoted = self._quoted.get(text)
        if quoted is None:
            quoted = orjson.dumps(text)
            if len(self._quoted) < 100_000:
                self._quoted[text] = quoted
        return quoted

    def _path(self, target: bytes) -> bytes:
        """The target as a JSON string; redacted and escaped by `slow_path` when it may need it."""
        size = len(target)
        previous = 0
        index = 0
        while index < size:
            byte = target[index]
            if (
                byte == 63  # noqa: PLR1714 (?; a set would be built per byte, compiled)
                or byte == 34  # "
                or byte == 92  # backslash
                or byte < 32
                or byte > 126
                or (byte == 45 and previous == 45)  # --
                or (byte == 74 and previous == 121 and index >= 2 and target[index - 2] == 101)
            ):
                return self._slow_path(target)
            previous = byte
            index += 1
        return b'"' + target + b'"'


def _number(value: int) -> bytes:
    if 0 <= value < 10_000:
        return _NUMBERS[value]
    return str(value).encode("ascii")
