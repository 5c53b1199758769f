"""What the access log and the tracer hear of each request: built from a finished exchange
(and a settled shadow copy) on the event loop, written and exported by their own threads.

Rules:
- The proxy calls in only when an access log or tracing is configured, and only with what it
  already holds; every field below is read from the exchange after its answer is complete.
- A request is traced when its trace is sampled (parent-based, then TraceIdRatioBased): one
  SERVER span for the client's request, one CLIENT span for the upstream exchange whose id is
  the parent id the backend received in `traceparent`, and one CLIENT span per shadow copy
  (`strangler.shadow=true`, its verdict, a link to the primary's CLIENT span). An unsampled
  request builds nothing here.
- Nothing from headers, cookies or bodies goes into a span or a log line; the query string is
  redacted by the access log's writer, and spans carry the path without it.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Protocol

from strangler.observe.access_log import AccessEntry, AccessLog
from strangler.observe.metrics import DEFAULT_ROUTE, NO_STAGE, SIDES
from strangler.observe.tracing import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    SpanExporter,
    SpanRecord,
)

if TYPE_CHECKING:
    from strangler.routing.model import Decision

# (trace id, the incoming parent span id or b"", the gateway's SERVER span id, the CLIENT span
# id sent upstream in traceparent), all lowercase hex.
TraceIds = tuple[bytes, bytes, bytes, bytes]


class FinishedExchange(Protocol):
    """What the journal reads of a proxy Exchange (proxy/exchange.py)."""

    decision: Decision
    method: bytes
    url: bytes
    request_id: bytes
    trace: TraceIds | None
    user: str | None
    bytes_in: int
    bytes_out: int
    sent_at: float
    upstream_s: float
    attempts: int
    fell_back: bool


class SettledMirror(Protocol):
    """What the journal reads of a shadow copy (shadow/mirror.py)."""

    route: str
    backend: str
    method: bytes
    trace: TraceIds | None
    span_id: bytes
    started_at: float
    shadow_done_at: float
    shadow_status: int


class RequestJournal:
    """The access log and the span exporter of one worker (either may be off)."""

    def __init__(
        self,
        access_log: AccessLog | None,
        exporter: SpanExporter | None,
        *,
        sample_ratio: float = 0.0,
    ) -> None:
        self.access_log = access_log
        # The JSON format's lines, which the proxy formats itself (observe/access_line.py);
        # None for the combined format, whose entries are built here.
        self.lines = access_log.lines if access_log is not None else None
        self.exporter = exporter
        self.sample_ratio = sample_ratio
        # Read by the compiled proxy on every request, so plain attributes: whether spans are
        # made, the sampling threshold on a new trace id's lower 64 bits (TraceIdRatioBased),
        # and whether entries are built here (the combined format).
        self.traces = exporter is not None
        self.threshold = ratio_threshold(sample_ratio)
        self.has_entries = access_log is not None and self.lines is None

    def __repr__(self) -> str:
        return f"<RequestJournal log={self.access_log!r} spans={self.exporter!r}>"

    def start(self) -> None:
        if self.access_log is not None:
            self.access_log.start()
        if self.exporter is not None:
            self.exporter.start()

    def stop(self) -> None:
        if self.access_log is not None:
            self.access_log.stop()
        if self.exporter is not None:
            self.exporter.stop()

    def reopen(self) -> None:
        """SIGUSR1: the access log file is opened again (after logrotate moved it)."""
        if self.access_log is not None:
            self.access_log.reopen()

    def counts(self) -> dict[tuple[str, ...], float]:
        """The drops and failures for /metrics."""
        found: dict[tuple[str, ...], float] = {}
        log = self.access_log
        if log is not None:
            found[("access_log_dropped_total",)] = float(log.dropped_lines)
            found[("access_log_write_errors_total",)] = float(log.write_errors)
        exporter = self.exporter
        if exporter is not None:
            found[("tracing_spans_dropped_total",)] = float(exporter.dropped)
            found[("tracing_spans_failed_total",)] = float(exporter.failed)
        return found

    # -- the proxy's calls --------------------------------------------------------------------

    def span_ids(self, trace_id: bytes, parent: bytes, client_span: bytes) -> TraceIds:
        """The span ids of a request the proxy decided to trace (`client_span` is the id the
        backend gets as its parent)."""
        return (trace_id, parent, b"%016x" % (random.getrandbits(64) or 1), client_span)

    def refused(
        self,
        client: bytes,
        url: bytes,
        status: int,
        decision: Decision | None,
    ) -> None:
        """A request the gateway refused before it was an exchange (malformed, a refused path,
        a CSRF 403): an access log line with what is known of it."""
        log = self.access_log
        if log is None or not log.wants(status, 0.0):
            return
        route = decision.route if decision is not None else None
        stage = decision.stage if decision is not None else None
        if self.lines is not None:
            self.lines.add(
                b"",
                b"",
                client,
                b"",
                url,
                route or DEFAULT_ROUTE,
                str(stage) if stage is not None else NO_STAGE,
                "gateway",
                status,
                0,
                0,
                0.0,
                -1.0,
                None,
                None,
            )
            return
        log.submit(
            AccessEntry(
                ts=time.time(),
                request_id="",
                trace_id="",
                client=client.decode("latin-1"),
                method="",
                path=url.decode("latin-1"),
                route=route or DEFAULT_ROUTE,
                stage=str(stage) if stage is not None else NO_STAGE,
                side="gateway",
                status=status,
                bytes_in=0,
                bytes_out=0,
                duration_ms=0.0,
                upstream_ms=None,
                canary_reason=None,
                shadow=None,
                user=None,
            )
        )

    def request_done(
        self, exchange: FinishedExchange, client: bytes, side: int, status: int, elapsed: float
    ) -> None:
        end = time.time()
        start = end - elapsed
        decision = exchange.decision
        route = decision.route or DEFAULT_ROUTE
        stage = str(decision.stage) if decision.stage is not None else NO_STAGE
        log = self.access_log
        trace = exchange.trace
        if log is not None and self.lines is None and log.wants(status, elapsed * 1000.0):
            upstream_s = exchange.upstream_s
            log.submit(
                AccessEntry(
                    ts=start,
                    request_id=exchange.request_id.decode("latin-1"),
                    trace_id=trace[0].decode() if trace is not None else "",
                    client=client.decode("latin-1"),
                    method=exchange.method.decode("latin-1"),
                    path=exchange.url.decode("latin-1"),
                    route=route,
                    stage=stage,
                    side=SIDES[side],
                    status=status,
                    bytes_in=exchange.bytes_in,
                    bytes_out=exchange.bytes_out,
                    duration_ms=elapsed * 1000.0,
                    upstream_ms=upstream_s * 1000.0 if upstream_s >= 0 else None,
                    canary_reason=_canary_reason(decision),
                    shadow=None,
                    user=exchange.user,
                )
            )
        if trace is not None and self.exporter is not None:
            self._request_spans(exchange, trace, route, stage, side, status, start, end)

    def _request_spans(
        self,
        exchange: FinishedExchange,
        trace: TraceIds,
        route: str,
        stage: str,
        side: int,
        status: int,
        start: float,
        end: float,
    ) -> None:
        assert self.exporter is not None
        trace_id, parent, server_span, client_span = trace
        method = exchange.method.decode("latin-1")
        path = exchange.url.partition(b"?")[0].decode("latin-1")
        self.exporter.submit(
            SpanRecord(
                trace_id=trace_id,
                span_id=server_span,
                parent_span_id=parent,
                name=f"{method} {route}",
                kind=SPAN_KIND_SERVER,
                start_ns=int(start * 1e9),
                end_ns=int(end * 1e9),
                attributes={
                    "http.request.method": method,
                    "url.path": path,
                    "http.route": route,
                    "http.response.status_code": status,
                    "strangler.route": route,
                    "strangler.stage": stage,
                    "strangler.side": SIDES[side],
                    "strangler.request_id": exchange.request_id.decode("latin-1"),
                },
                is_error=status >= 500,
            )
        )
        if not exchange.sent_at or not client_span:
            return  # no backend was tried: the gateway answered itself
        # The upstream exchange: from the (last) attempt's send to the end of the answer.
        sent = end - (time.perf_counter() - exchange.sent_at)
        attributes: dict[str, str | int | float | bool] = {
            "http.request.method": method,
            "url.path": path,
            "strangler.backend": exchange.decision.backend,
            "strangler.attempts": exchange.attempts,
        }
        if status:
            attributes["http.response.status_code"] = status
        if exchange.fell_back:
            attributes["strangler.retry_on_legacy"] = True
        self.exporter.submit(
            SpanRecord(
                trace_id=trace_id,
                span_id=client_span,
                parent_span_id=server_span,
                name=f"{method} {exchange.decision.backend}",
                kind=SPAN_KIND_CLIENT,
                start_ns=int(max(sent, start) * 1e9),
                end_ns=int(end * 1e9),
                attributes=attributes,
                is_error=status >= 500,
            )
        )

    def shadow_done(self, mirror: SettledMirror, verdict: str, differences: int) -> None:
        """A sampled request's shadow copy settled: `verdict` is equal, equal_but_noise,
        different, or the reason it was dropped."""
        trace = mirror.trace
        if trace is None or self.exporter is None:
            return
        trace_id, _, server_span, client_span = trace
        now_wall, now_perf = time.time(), time.perf_counter()
        start = now_wall - (now_perf - mirror.started_at)
        done_at = mirror.shadow_done_at or now_perf
        end = now_wall - (now_perf - done_at)
        attributes: dict[str, str | int | float | bool] = {
            "strangler.shadow": True,
            "strangler.route": mirror.route,
            "strangler.backend": mirror.backend,
            "strangler.shadow.verdict": verdict,
            "strangler.shadow.differences": differences,
            "http.request.method": mirror.method.decode("latin-1"),
        }
        if mirror.shadow_status:
            attributes["http.response.status_code"] = mirror.shadow_status
        self.exporter.submit(
            SpanRecord(
                trace_id=trace_id,
                span_id=mirror.span_id,
                parent_span_id=server_span,
                name=f"shadow {mirror.route}",
                kind=SPAN_KIND_CLIENT,
                start_ns=int(start * 1e9),
                end_ns=int(max(end, start) * 1e9),
                attributes=attributes,
                is_error=verdict not in ("equal", "equal_but_noise", "different"),
                links=((trace_id, client_span),) if client_span else (),
            )
        )


def _canary_reason(decision: Decision) -> str | None:
    reason = str(decision.reason)
    return reason if reason.startswith("canary_") else None


def ratio_threshold(ratio: float) -> int:
    """TraceIdRatioBased as OpenTelemetry specifies it: a trace is sampled when its id's lower
    64 bits, as an unsigned integer, are below ratio x 2**64 (is_sampled in tracing.py)."""
    return int(ratio * (1 << 64)) if ratio < 1.0 else 1 << 64
