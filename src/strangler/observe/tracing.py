"""Traces to an OpenTelemetry collector: the W3C traceparent header, the sampling decision, and an
exporter that sends finished spans as OTLP/HTTP protobuf.

Rules: the request path calls `parse_traceparent`, `is_sampled` and `SpanExporter.submit` and
nothing else here; the first two are pure, and `submit` is one deque append that never blocks and
never raises. Encoding and HTTP happen on the exporter's own daemon thread, one attempt per
batch: a collector that is down, slow or refusing costs counted spans (`failed`, `dropped`),
never latency or an exception in the gateway. Pending spans are bounded by `max_queue`.
Importing this module or building an exporter connects to nothing; the thread connects when
it first exports. Pure Python on purpose: it is not part of the mypyc-compiled hot path.
"""

from __future__ import annotations

import binascii
import http.client
import logging
import random
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Final, NamedTuple
from urllib.parse import urlsplit

# protobuf ships no type information and the repo installs no types-protobuf; the message
# classes below are typed by opentelemetry-proto's own stubs.
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from strangler.observe import otlp_wire

__all__ = [
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_SERVER",
    "ExportTarget",
    "ExporterState",
    "SpanExporter",
    "SpanRecord",
    "TracingSettings",
    "build_request",
    "build_resource",
    "encode_span",
    "export_target",
    "format_traceparent",
    "is_sampled",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
]

log = logging.getLogger("strangler.tracing")

# The OTLP Span.SpanKind values.
SPAN_KIND_SERVER: Final = 2
SPAN_KIND_CLIENT: Final = 3

SCOPE_NAME: Final = "strangler"
# A collector's answer is an ExportTraceServiceResponse of a few bytes; more than this is not
# read, and the connection is closed instead of reused.
MAX_RESPONSE_BYTES: Final = 64 * 1024
# Export failures are logged at most this often: a collector that is down for an hour must not
# write 3600 lines.
FAILURE_REPORT_INTERVAL_S: Final = 60.0

_HEX_DIGITS: Final = b"0123456789abcdef"
_DASH: Final = ord("-")
# W3C Trace Context §3.2: "00-" 32 hex "-" 16 hex "-" 2 hex.
_TRACEPARENT_BYTES: Final = 55
_ZERO_TRACE_ID: Final = b"0" * 32
_ZERO_SPAN_ID: Final = b"0" * 16
_TWO_TO_THE_64: Final = float(2**64)
_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1


@dataclass(frozen=True, slots=True)
class TracingSettings:
    """Where spans go and how many of them; `headers` arrive already ${ENV}-expanded."""

    otlp_endpoint: str  # spans are POSTed to <endpoint>/v1/traces
    sample_ratio: float = 0.01  # of traces that arrive without a sampled parent, 0..1
    service_name: str = "strangler"
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every export
    timeout_s: float = 5.0


class SpanRecord(NamedTuple):
    """One finished span as the gateway saw it; ids are lowercase hex as in traceparent."""

    trace_id: bytes  # 32 hex digits
    span_id: bytes  # 16 hex digits
    parent_span_id: bytes  # 16 hex digits, or b"" for a root span
    name: str
    kind: int  # SPAN_KIND_SERVER or SPAN_KIND_CLIENT
    start_ns: int  # unix epoch nanoseconds
    end_ns: int
    attributes: dict[str, str | int | float | bool]
    is_error: bool  # status ERROR when true, else UNSET
    links: tuple[tuple[bytes, bytes], ...] = ()  # (trace_id hex, span_id hex) pairs


# ------------------------------------------------------------------------- context and sampling


def parse_traceparent(value: bytes | None) -> tuple[bytes, bytes, bool] | None:
    """(trace_id, parent span id, sampled flag) of a valid W3C traceparent, else None.

    W3C Trace Context §3.2: lowercase hex only, ids not all zeros, version ff is invalid. Version
    00 is exactly 55 characters; a later version may carry more after a "-", which is ignored
    (§4.3: parse what version 00 defines). Optional whitespace around the value is allowed, as
    around any HTTP field value.
    """
    if value is None:
        return None
    value = value.strip(b" \t")
    size = len(value)
    if size < _TRACEPARENT_BYTES:
        return None
    head = value[:_TRACEPARENT_BYTES]
    # One pass checks every character: without its hex digits the head must be exactly the three
    # dashes, and they must sit between the fields.
    if head.translate(None, _HEX_DIGITS) != b"---":
        return None
    if head[2] != _DASH or head[35] != _DASH or head[52] != _DASH:
        return None
    version = head[:2]
    if version == b"ff":
        return None
    if size > _TRACEPARENT_BYTES and (version == b"00" or value[_TRACEPARENT_BYTES] != _DASH):
        return None
    trace_id = head[3:35]
    parent_id = head[36:52]
    if trace_id == _ZERO_TRACE_ID or parent_id == _ZERO_SPAN_ID:
        return None
    # trace-flags: bit 0 is "sampled"; the other bits are not defined for version 00.
    return trace_id, parent_id, head[54] in b"13579bdf"


def is_sampled(trace_id: bytes, ratio: float, parent_sampled: bool | None) -> bool:
    """Parent-based sampling: a parent's flag decides when there is one (parent_sampled not None);
    else TraceIdRatioBased as OpenTelemetry specifies it: sampled when the trace id's lower 64 bits
    (as an unsigned int) < ratio * 2**64. Pure, cheap (called per request only when tracing is on).

    `trace_id` is 32 hex digits (as `parse_traceparent` and `new_trace_id` give). Ratio 0 samples
    nothing and 1 everything; replicas that see the same trace id decide the same way.
    """
    if parent_sampled is not None:
        return parent_sampled
    # int < float compares exactly in Python: no rounding at the threshold.
    return int(trace_id[16:32], 16) < ratio * _TWO_TO_THE_64


def new_trace_id() -> bytes:
    """32 random lowercase hex digits, never all zeros (W3C Trace Context §3.2.2.3)."""
    # random, as the OpenTelemetry SDKs use: ids need to be unique, not secret. The random module
    # reseeds in a forked child, so workers don't repeat each other's ids.
    return b"%032x" % (random.getrandbits(128) or 1)


def new_span_id() -> bytes:
    """16 random lowercase hex digits, never all zeros."""
    return b"%016x" % (random.getrandbits(64) or 1)


def format_traceparent(trace_id: bytes, span_id: bytes, sampled: bool) -> bytes:
    """The version 00 traceparent value that makes `span_id` the parent of the next hop."""
    return b"00-" + trace_id + b"-" + span_id + (b"-01" if sampled else b"-00")


# ----------------------------------------------------------------------------------- encoding


def build_resource(service_name: str, attributes: Mapping[str, str]) -> Resource:
    """The resource every span of this process belongs to: `service.name` first, then
    `attributes` (`service.instance.id`, ...); a `service.name` among them is ignored."""
    pairs = [KeyValue(key="service.name", value=AnyValue(string_value=service_name))]
    pairs.extend(
        KeyValue(key=key, value=AnyValue(string_value=value))
        for key, value in attributes.items()
        if key != "service.name"
    )
    return Resource(attributes=pairs)


def encode_span(span: SpanRecord) -> Span:
    """The OTLP message for one record. Raises ValueError when an id is not hex of its size or a
    time is not an unsigned 64-bit int."""
    links = [
        Span.Link(trace_id=_id_bytes(trace_id, 16), span_id=_id_bytes(span_id, 8))
        for trace_id, span_id in span.links
    ]
    message = Span(
        trace_id=_id_bytes(span.trace_id, 16),
        span_id=_id_bytes(span.span_id, 8),
        parent_span_id=_id_bytes(span.parent_span_id, 8) if span.parent_span_id else b"",
        name=span.name,
        kind=span.kind,  # type: ignore[arg-type]  # an OTLP enum value; the stub wants its NewType
        start_time_unix_nano=span.start_ns,
        end_time_unix_nano=span.end_ns,
        attributes=[KeyValue(key=key, value=_any_value(v)) for key, v in span.attributes.items()],
        links=links,
    )
    if span.is_error:
        message.status.code = Status.STATUS_CODE_ERROR
    return message


def build_request(spans: Iterable[Span], resource: Resource) -> ExportTraceServiceRequest:
    """One ResourceSpans with one ScopeSpans ("strangler") holding `spans`."""
    scope_spans = ScopeSpans(scope=InstrumentationScope(name=SCOPE_NAME), spans=spans)
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(resource=resource, scope_spans=[scope_spans])]
    )


def _id_bytes(hex_id: bytes, size: int) -> bytes:
    raw = binascii.unhexlify(hex_id)  # binascii.Error is a ValueError
    if len(raw) != size:
        raise ValueError(f"id {hex_id!r} is not {size * 2} hex digits")
    return raw


def _any_value(value: str | int | float | bool) -> AnyValue:
    # bool first: it is an int to isinstance.
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        if _INT64_MIN <= value <= _INT64_MAX:
            return AnyValue(int_value=value)
        return AnyValue(string_value=str(value))  # OTLP ints are int64; keep the digits
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


# ------------------------------------------------------------------------------------ transport


class ExportTarget(NamedTuple):
    is_https: bool
    host: str
    port: int
    path: str  # with the query, if the endpoint has one

    @property
    def url(self) -> str:
        """For logs and repr: without the query, which may hold a vendor's key."""
        scheme = "https" if self.is_https else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.path.partition('?')[0]}"


def export_target(endpoint: str) -> ExportTarget:
    """Where spans go: `<endpoint>/v1/traces`, or the endpoint itself when it already ends with
    /v1/traces (a trailing slash is dropped first). Raises ValueError for an endpoint that is
    not http(s)://host[:port][/path]: config can call this to check one."""
    parts = urlsplit(endpoint.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"OTLP endpoint {endpoint!r} is not an http:// or https:// URL")
    is_https = parts.scheme == "https"
    port = parts.port or (443 if is_https else 80)  # .port raises ValueError when out of range
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/traces"):
        path += "/v1/traces"
    if parts.query:
        path += "?" + parts.query
    return ExportTarget(is_https, parts.hostname, port, path)


class ExporterState(Enum):
    """NEW --start--> RUNNING --stop--> STOPPED; NEW --stop--> STOPPED (pending spans still go)."""

    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class SpanExporter:
    """Batches finished spans and POSTs them to an OTLP/HTTP collector from one daemon thread.

    The thread wakes every `interval_s` and sends everything pending, or sooner when
    `batch_size` spans are pending, and then sends only full batches. Each batch is one POST,
    tried once. Counters, read from any thread: `dropped` (queue full at `submit`), `exported`
    (accepted by the collector), `failed` (lost to a refused connection, a timeout, a non-2xx
    answer, or the collector's partial-success rejection). Start it in the process that submits:
    a thread does not survive fork.
    """

    def __init__(
        self,
        settings: TracingSettings,
        *,
        max_queue: int = 4096,
        batch_size: int = 512,
        interval_s: float = 1.0,
        resource_attributes: Mapping[str, str] | None = None,
    ) -> None:
        # Raising here is deliberate: a bad endpoint or size is a startup error, not a span loss.
        if max_queue < 1 or batch_size < 1 or interval_s <= 0 or settings.timeout_s <= 0:
            raise ValueError("max_queue, batch_size, interval_s and timeout_s must be positive")
        self.settings = settings
        self.target = export_target(settings.otlp_endpoint)
        self.dropped = 0
        self.exported = 0
        self.failed = 0
        self._state = ExporterState.NEW
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._interval_s = interval_s
        self._resource = otlp_wire.resource(settings.service_name, resource_attributes or {})
        self._headers = {
            name: value
            for name, value in settings.headers.items()
            if name.lower() != "content-type"
        }
        self._headers["Content-Type"] = "application/x-protobuf"
        # Appended on the event loop thread, popped on the exporter thread: deque's append and
        # popleft are atomic, so no lock; only this thread ever pops.
        self._queue: deque[SpanRecord] = deque()
        self._batch_ready = threading.Event()
        self._stop_requested = threading.Event()
        self._thread: threading.Thread | None = None
        # Owned by the exporter thread.
        self._conn: http.client.HTTPConnection | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._last_report_at: float | None = None
        self._unreported_failures = 0

    def __repr__(self) -> str:
        return (
            f"<SpanExporter {self.target.url} {self._state.value}: {self.pending} pending, "
            f"{self.exported} exported, {self.failed} failed, {self.dropped} dropped>"
        )

    @property
    def state(self) -> ExporterState:
        return self._state

    @property
    def pending(self) -> int:
        return len(self._queue)

    def submit(self, span: SpanRecord) -> None:
        """Called on the event loop thread once per sampled span, when it ends. O(1), never
        blocks, never raises; when `max_queue` spans are pending the span is dropped and counted.
        """
        queue = self._queue
        if len(queue) >= self._max_queue:
            self.dropped += 1
            return
        queue.append(span)
        # Signal on the crossing only: an Event.set per span would take its lock per span.
        if len(queue) == self._batch_size:
            self._batch_ready.set()

    def start(self) -> None:
        """Starts the exporting thread; once (a second call, or one after `stop`, does nothing)."""
        if self._state is not ExporterState.NEW:
            return
        self._start_thread()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Sends what is pending, then stops the thread; waits at most `timeout_s` for both.

        A batch that fails during this last flush ends it: what is left is counted as failed.
        Spans submitted afterwards are never sent: they fill the queue, then count as dropped.
        """
        if self._state is ExporterState.STOPPED:
            return
        if self._state is ExporterState.NEW:
            self._start_thread()
        self._state = ExporterState.STOPPED
        self._stop_requested.set()
        self._batch_ready.set()
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning(
                "OTLP exporter still sending to %s after %s s; %d spans pending are abandoned",
                self.target.url,
                timeout_s,
                self.pending,
            )

    def _start_thread(self) -> None:
        thread = threading.Thread(target=self._run, name="strangler-otlp-exporter", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:
            # No thread, no tracing: spans pile up to max_queue and are then counted as dropped.
            log.error("cannot start the OTLP exporter thread: %s", exc)
            self._state = ExporterState.STOPPED
            return
        self._thread = thread
        self._state = ExporterState.RUNNING

    # ---------------------------------------------------------------------- the exporter thread

    def _run(self) -> None:
        next_flush_at = time.monotonic() + self._interval_s
        try:
            while not self._stop_requested.is_set():
                self._batch_ready.wait(max(0.0, next_flush_at - time.monotonic()))
                # A set() between wait and clear is not lost: the queue is looked at right after.
                self._batch_ready.clear()
                if self._stop_requested.is_set():
                    break
                if time.monotonic() >= next_flush_at:
                    self._export_pending(is_full_batches_only=False)
                    next_flush_at = time.monotonic() + self._interval_s
                else:
                    self._export_pending(is_full_batches_only=True)
            self._export_pending(is_full_batches_only=False, is_final=True)
        except Exception:
            # A bug here must not pass silently; the gateway goes on without traces.
            log.exception("the OTLP exporter thread stopped on an unexpected error")
        finally:
            self._close_connection()

    def _export_pending(self, *, is_full_batches_only: bool, is_final: bool = False) -> None:
        queue = self._queue
        batch_size = self._batch_size
        while queue and (len(queue) >= batch_size or not is_full_batches_only):
            # Only this thread pops, so the queue holds at least this many.
            batch = [queue.popleft() for _ in range(min(len(queue), batch_size))]
            if self._export(batch):
                continue
            # One attempt per batch, and after a failure none until the next wake-up: a dead
            # collector gets one connection attempt per interval, not one per pending batch.
            if is_final and queue:
                lost = len(queue)
                for _ in range(lost):
                    queue.popleft()
                self._count_failure(lost, "not sent after a failure while stopping")
            return

    def _export(self, batch: list[SpanRecord]) -> bool:
        """Sends one batch; False when it failed (counted and maybe logged here)."""
        spans: list[bytes] = []
        for record in batch:
            try:
                # Wire format by hand: the message classes cost ~30 us a span (otlp_wire.py).
                spans.append(otlp_wire.span(*record))
            except (ValueError, TypeError, binascii.Error) as exc:
                # One malformed record costs itself, not its batch or the thread.
                self._count_failure(1, f"span {record.name!r} cannot be encoded: {exc}")
        if not spans:
            return True
        body = otlp_wire.export_request(spans, self._resource, SCOPE_NAME)
        try:
            status, payload = self._post(body)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # OSError covers refused, reset, timed out and TLS errors; ValueError an invalid
            # configured header value, which http.client refuses to send.
            self._close_connection()
            self._count_failure(len(spans), f"{type(exc).__name__}: {exc}")
            return False
        if not 200 <= status < 300:
            self._count_failure(len(spans), f"HTTP {status}")
            return False
        rejected = _rejected_spans(payload, len(spans))
        self.exported += len(spans) - rejected
        if rejected:
            self._count_failure(rejected, f"the collector rejected {rejected} spans")
        return True

    def _post(self, body: bytes) -> tuple[int, bytes]:
        conn = self._conn
        if conn is not None and conn.sock is not None and _is_dropped(conn.sock):
            # The collector closed the idle keep-alive connection: reconnect before sending, so
            # the batch is not lost to a connection that was already gone.
            self._close_connection()
            conn = None
        if conn is None:
            conn = self._conn = self._connect()
        conn.request("POST", self.target.path, body=body, headers=self._headers)
        response = conn.getresponse()
        payload = response.read(MAX_RESPONSE_BYTES)
        if not response.isclosed():
            self._close_connection()  # an unread rest would be taken for the next answer
        return response.status, payload

    def _connect(self) -> http.client.HTTPConnection:
        target = self.target
        timeout_s = self.settings.timeout_s
        if not target.is_https:
            return http.client.HTTPConnection(target.host, target.port, timeout=timeout_s)
        if self._ssl_context is None:
            self._ssl_context = ssl.create_default_context()
        return http.client.HTTPSConnection(
            target.host, target.port, timeout=timeout_s, context=self._ssl_context
        )

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _count_failure(self, spans: int, reason: str) -> None:
        self.failed += spans
        self._unreported_failures += spans
        now = time.monotonic()
        last = self._last_report_at
        if last is not None and now - last < FAILURE_REPORT_INTERVAL_S:
            return
        log.warning(
            "OTLP export to %s failed (%s); %d spans lost since the last report",
            self.target.url,
            reason,
            self._unreported_failures,
        )
        self._last_report_at = now
        self._unreported_failures = 0


def _is_dropped(sock: socket.socket) -> bool:
    """Whether an idle connection was closed by its peer: it reads as ready (EOF) while we sent
    nothing; urllib3 decides the same way. poll, not select: a gateway's descriptors pass 1024."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _rejected_spans(payload: bytes, sent: int) -> int:
    """OTLP partial success: how many of the `sent` spans a 2xx answer says were rejected."""
    if not payload:
        return 0
    try:
        answer = ExportTraceServiceResponse.FromString(payload)
    except DecodeError:
        return 0  # not an OTLP answer (a proxy's page): the status is all we know
    rejected: int = answer.partial_success.rejected_spans
    return min(max(rejected, 0), sent)
