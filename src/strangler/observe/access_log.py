"""The access log: one line per answered request, as JSON or in nginx's `combined` format.

Rules:
- The event loop only decides and appends: `wants` is two comparisons and at most one random
  draw, `submit` one deque append. Formatting, redaction and writes happen in one daemon thread,
  in batches (every 0.2 s, or as soon as 1024 entries are pending).
- An entry is logged when `min_status` is above 0 and its status is at least that, or when
  `min_duration_ms` is above 0 and it took at least that long; any other entry (every entry,
  when both are 0) is logged with probability `sample`, so `min_status: 500`,
  `min_duration_ms: 1000`, `sample: 0.01` logs all 5xx, all slow ones and 1% of the rest.
- Bounded: at most `max_pending` entries wait for the writer; what does not fit is dropped and
  counted (`dropped`), never buffered. A failed write loses its batch, is counted
  (`write_errors`) and logged at most once a minute; nothing here raises into the proxy.
- Secrets never reach the log: an entry has no header fields, and the values of query
  parameters whose names match the redaction filters (the shadow `redact` list, names compared
  percent-decoded) are written as "[FILTERED]", as are credential-shaped values anywhere in the
  target (JWTs, Rails signed messages: `Redactor.request_line`).
- The file is opened for appending, created 0600, and reopened before the next write after
  `reopen()` (SIGUSR1 after logrotate moved it, as nginx does).
"""

from __future__ import annotations

import logging
import math
import os
import random as _random
import re
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple
from urllib.parse import unquote_plus

import orjson

from strangler.observe.access_line import AccessLines
from strangler.shadow.redact import FILTERED, Redactor

__all__ = ["AccessEntry", "AccessLog", "AccessLogSettings"]

log = logging.getLogger("strangler.access_log")

STDOUT: Final = "stdout"
_FLUSH_INTERVAL_S: Final = 0.2
# The writer wakes as soon as this many entries are pending, and writes at most this many lines
# in one write call.
_BATCH: Final = 1024
_ERROR_LOG_INTERVAL_S: Final = 60.0
_OPEN_FLAGS: Final = os.O_APPEND | os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC

# A query parameter: only where one starts (the target's start or after a separator), so a long
# run without `=` costs one pass. Rack 2 splits a query string on `;` as on `&`.
_QUERY_PARAM = re.compile(r"(?:^|(?<=[&;]))([^&;=]*)=([^&;]*)")
# nginx's default log escaping (ngx_http_log_escape): `"`, `\`, control characters and bytes
# from 0x7f as \xHH.
_LOG_UNSAFE = re.compile(r'[\x00-\x1f"\\\x7f-\U0010ffff]')
# %b depends on the locale; nginx writes English month names.
_MONTHS: Final = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


@dataclass(frozen=True, slots=True)
class AccessLogSettings:
    path: str  # "stdout" or a file path
    format: Literal["json", "combined"] = "json"
    min_status: int = 0
    min_duration_ms: float = 0.0
    sample: float = 1.0
    # Query parameter name filters, with the same meaning as the shadow redaction list.
    redact: tuple[str, ...] = ()


class AccessEntry(NamedTuple):
    """One answered request, built on the event loop: plain values only, nothing to format."""

    ts: float  # unix time the request head arrived
    request_id: str
    trace_id: str  # "" when none
    client: str  # client IP
    method: str
    path: str  # the raw request target with its query string; redacted by the writer
    route: str  # route name, "_default" when none matched
    stage: str  # "legacy" | "shadow" | "canary" | "new" | "none"
    side: str  # "legacy" | "new" | "gateway"
    status: int
    bytes_in: int
    bytes_out: int
    duration_ms: float
    upstream_ms: float | None
    canary_reason: str | None
    shadow: str | None  # the shadow verdict when known
    user: str | None  # identity id when the Rails bridge knows it


class AccessLog:
    """Entries from the event loop, written by one thread. `dropped` is counted on the loop,
    `written` and `write_errors` by the writer (lines written, failed writes)."""

    def __init__(
        self,
        settings: AccessLogSettings,
        *,
        max_pending: int = 16384,
        random: Callable[[], float] = _random.random,
    ) -> None:
        if settings.format not in ("json", "combined"):
            raise ValueError(f"unknown access log format {settings.format!r}")
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.settings = settings
        self.dropped = 0
        self.written = 0
        self.write_errors = 0
        self._min_status = settings.min_status
        self._min_duration_ms = settings.min_duration_ms
        self._sample = settings.sample
        self._random = random
        self._max_pending = max_pending
        self._pending: deque[AccessEntry] = deque()
        self._redactor = Redactor(settings.redact)
        self._format: Callable[[AccessEntry], bytes] = (
            self._json_line if settings.format == "json" else self._combined_line
        )
        self._is_stdout = settings.path == STDOUT
        self._fd: int | None = None
        # Some bytes of a failed write reached the file: the next write starts a new line.
        self._is_torn = False
        # Plain attributes, not Events: reopen() may run in a signal handler, and setting an
        # Event takes a lock the interrupted thread may hold.
        self._is_reopen_requested = False
        self._is_stopping = False
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error_log_s = -math.inf
        self._errors_since_log = 0
        # JSON lines are formatted on the loop by compiled code (observe/access_line.py); the
        # writer only writes them. Entries (`submit`) are for the combined format.
        self.lines: AccessLines | None = None
        if settings.format == "json":
            self.lines = AccessLines(
                min_status=settings.min_status,
                min_duration_ms=settings.min_duration_ms,
                sample=settings.sample,
                max_pending=max_pending,
                wake=self._wake.set,
                slow_path=self._json_path,
                random=random,
            )

    def __repr__(self) -> str:
        return (
            f"<AccessLog {self.settings.path} {self.settings.format}: "
            f"{len(self._pending)} pending, {self.written} written, {self.dropped} dropped, "
            f"{self.write_errors} write errors>"
        )

    def wants(self, status: int, duration_ms: float) -> bool:
        """Whether to log an answer (see the module's rule); called on the loop once per answer,
        before the entry is built, so a skipped answer costs no entry."""
        if 0 < self._min_status <= status or 0 < self._min_duration_ms <= duration_ms:
            return True
        sample = self._sample
        return sample >= 1.0 or (sample > 0.0 and self._random() < sample)

    def submit(self, entry: AccessEntry) -> None:
        """Queues one entry; O(1), never blocks or raises. Dropped (and counted) when
        `max_pending` entries are already waiting."""
        pending = self._pending
        if len(pending) >= self._max_pending:
            self.dropped += 1
            return
        pending.append(entry)
        # The length passes through _BATCH on an append whenever it grows past it (the writer
        # only takes entries away), so one wake-up per full batch.
        if len(pending) == _BATCH:
            self._wake.set()

    def start(self) -> None:
        """Starts the writer thread (once)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="strangler-access-log", daemon=True)
        self._thread.start()

    def reopen(self) -> None:
        """Closes and reopens the file before the next write (after logrotate renamed it).
        Thread- and signal-safe; a no-op for stdout."""
        if not self._is_stdout:
            self._is_reopen_requested = True

    def stop(self, timeout_s: float = 5.0) -> None:
        """Writes what is pending and closes the file. Without a started writer thread, the
        caller writes; with one, waits for it at most `timeout_s`."""
        self._is_stopping = True
        thread = self._thread
        if thread is None:
            self._drain()
            self._close()
            return
        self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning(
                "access log: the writer is still busy after %.1f s; %d entries not written yet",
                timeout_s,
                len(self._pending),
            )

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(_FLUSH_INTERVAL_S)
                self._wake.clear()
                # Read before draining: whatever was submitted before stop() is then written.
                is_last = self._is_stopping
                self._drain()
                if is_last:
                    return
        finally:
            self._close()

    @property
    def dropped_lines(self) -> int:
        """Entries and formatted lines dropped because the writer fell behind."""
        return self.dropped + (self.lines.dropped if self.lines is not None else 0)

    def _json_path(self, target: bytes) -> bytes:
        return orjson.dumps(self._redact_target(target.decode("latin-1")))

    def _drain(self) -> None:
        formatted = self.lines
        while formatted is not None and formatted.pending:
            # Take the queue whole (one swap under the GIL): the loop appends to the new one.
            batch, formatted.pending = formatted.pending, deque()
            self._write(b"".join(batch), len(batch))
        pending = self._pending
        while pending:
            lines: list[bytes] = []
            for _ in range(min(len(pending), _BATCH)):
                entry = pending.popleft()
                try:
                    lines.append(self._format(entry))
                except (TypeError, ValueError) as exc:
                    # An entry orjson or the encoder refuses (a wrongly typed field): skipped,
                    # so one bad entry never stops the writer.
                    self._failed(f"cannot format an entry for {entry.route}", exc)
            if lines:
                self._write(b"".join(lines), len(lines))

    def _write(self, data: bytes, count: int) -> None:
        if self._is_reopen_requested:
            self._is_reopen_requested = False
            self._close()
        try:
            if self._is_stdout:
                _write_stdout(data)
            else:
                self._write_file(data)
        except (OSError, ValueError) as exc:
            # ValueError: stdout was closed under us.
            self._failed(f"cannot write to {self.settings.path}", exc)
            # The next batch opens the file again: the directory may be back, the disk freed.
            self._close()
        else:
            self.written += count

    def _write_file(self, data: bytes) -> None:
        if self._fd is None:
            self._fd = os.open(self.settings.path, _OPEN_FLAGS, 0o600)
        if self._is_torn:
            data = b"\n" + data
        fd, view, sent = self._fd, memoryview(data), 0
        try:
            while sent < len(data):
                sent += os.write(fd, view[sent:])
        except OSError:
            self._is_torn = self._is_torn or sent > 0
            raise
        self._is_torn = False

    def _close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self._failed(f"cannot close {self.settings.path}", exc)

    def _failed(self, what: str, exc: Exception) -> None:
        self.write_errors += 1
        self._errors_since_log += 1
        now = time.monotonic()
        if now - self._last_error_log_s >= _ERROR_LOG_INTERVAL_S:
            log.warning(
                "access log: %s: %s (%d errors since the last report, %d in all)",
                what,
                exc,
                self._errors_since_log,
                self.write_errors,
            )
            self._last_error_log_s = now
            self._errors_since_log = 0

    def _json_line(self, e: AccessEntry) -> bytes:
        upstream_ms = None if e.upstream_ms is None else round(e.upstream_ms, 3)
        return orjson.dumps(
            {
                "ts": _iso_ms(e.ts),
                "request_id": e.request_id,
                "trace_id": e.trace_id or None,
                "client": e.client,
                "method": e.method,
                "path": self._redact_target(e.path),
                "route": e.route,
                "stage": e.stage,
                "side": e.side,
                "status": e.status,
                "bytes_in": e.bytes_in,
                "bytes_out": e.bytes_out,
                "duration_ms": round(e.duration_ms, 3),
                "upstream_ms": upstream_ms,
                "canary_reason": e.canary_reason,
                "shadow": e.shadow,
                "user": e.user,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )

    def _combined_line(self, e: AccessEntry) -> bytes:
        request = _escape(f"{e.method} {self._redact_target(e.path)}")
        user = _escape(e.user) if e.user else "-"
        line = (
            f'{_escape(e.client)} - {user} [{_time_local(e.ts)}] "{request} HTTP/1.1" '
            f'{e.status} {e.bytes_out} "-" "-"\n'
        )
        return line.encode("ascii")

    def _redact_target(self, target: str) -> str:
        query_at = target.find("?")
        if query_at >= 0 and self._redactor.filters:
            query = _QUERY_PARAM.sub(self._redact_param, target[query_at + 1 :])
            target = target[: query_at + 1] + query
        return self._redactor.request_line(target)

    def _redact_param(self, match: re.Match[str]) -> str:
        name = match.group(1)
        if self._redactor.is_secret(unquote_plus(name)):
            return f"{name}={FILTERED}"
        return match.group(0)


def _write_stdout(data: bytes) -> None:
    # Looked up per batch: whoever replaced sys.stdout (a test's capture, a supervisor) gets
    # the lines.
    stream = sys.stdout
    buffer = getattr(stream, "buffer", None)
    if buffer is None:
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()
        return
    buffer.write(data)
    buffer.flush()


def _iso_ms(ts: float) -> str:
    """`2026-12-07T04:38:50.123Z`. Rounded, not cut, to the millisecond: `ts * 1000` of
    x.123 may be x122.9999..."""
    seconds, ms = divmod(round(ts * 1000), 1000)
    t = time.gmtime(seconds)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms:03d}Z"
    )


def _time_local(ts: float) -> str:
    """nginx's $time_local in UTC: `07/Dec/2026:04:38:50 +0000`."""
    t = time.gmtime(int(ts))
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    )


def _escape(text: str) -> str:
    return _LOG_UNSAFE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    # The proxy decodes the request target as latin-1, so a code point below 0x100 is the byte
    # the client sent; anything above is written as its UTF-8 bytes.
    char = match.group()
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02X}"
    return "".join(f"\\x{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
