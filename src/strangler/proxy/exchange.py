"""One request/response exchange between a client connection and an upstream connection.

Rules:
- The client's answer is written in request order; only the connection's current exchange
  talks to an upstream, later (pipelined) ones wait with their bytes buffered.
- Bodies stream: each piece read from one side is written to the other at once. Backpressure
  pauses the reading side while the writing side is over its high-water mark.
- Once the response head has gone to the client, a failure cannot become an error response:
  the client connection is aborted, so a truncated answer never looks complete.
- A request that failed on a reused keep-alive connection before any byte of the answer came
  back is retried once on a fresh connection, but only if it is safe and has no body.
- Its answer's lifecycle is one Phase, changed only here (see Phase for the transitions); the
  client connection starts it (`start`), cancels it and is told when it is done
  (`exchange_done`). How the request body arrives (`request_done`, held or gated bodies) is
  another axis: an answer may begin before the body has finished.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from strangler.proxy.failures import STATUS_LINES, FailureKind, render_problem, status_line
from strangler.proxy.headers import (
    R_CONNECTION,
    R_LENGTH,
    R_UPGRADE,
    drop_connection_listed,
    with_path_prefix,
)
from strangler.proxy.upstream_pool import UpstreamConnection, UpstreamPool, _BadResponse
from strangler.routing.faults import FaultKind
from strangler.routing.model import Decision, DecisionReason

if TYPE_CHECKING:
    from strangler.proxy.request_head import RequestHead
    from strangler.proxy.server import ClientConnection
    from strangler.shadow import Mirror

# Final: compiled code reads these as C statics, not through the module's dict (imported names
# too: proxy.failures is not compiled).
_clock: Final = time.perf_counter
_STATUS_LINES: Final = STATUS_LINES
_status_line: Final = status_line
_CRLF: Final = b"\r\n"
_LAST_CHUNK: Final = b"0\r\n\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
_CHUNKED_HEADER: Final = b"Transfer-Encoding: chunked\r\n"
_CLOSE_HEADER: Final = b"Connection: close\r\n"
_KEEP_ALIVE_HEADER: Final = b"Connection: keep-alive\r\n"
_UPGRADE_HEADER: Final = b"Connection: upgrade\r\n"

# Safe to send twice (RFC 9110 §9.2.1), so a stale keep-alive connection may be retried.
_SAFE_METHODS: Final = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})


class Phase(enum.Enum):
    """Where an exchange's answer stands. Transitions (all in this module):

    WAITING -> SENT (attach) -> RESPONDING (a final answer's head relayed) -> DONE (its end,
    or the connection became a tunnel). SENT -> WAITING when the request goes again (a retry on
    a fresh connection, the legacy fallback). WAITING, SENT or RESPONDING -> FAILED (`fail`:
    the gateway answered instead, or the client was aborted mid-answer; a drill's abort too).
    Any phase -> CANCELLED (the client went away, or its request was refused mid-body).
    """

    # Made; not sent yet: its body is being read, it is queued behind another exchange, it waits
    # for a pool connection or a drill's delay.
    WAITING = "waiting"
    SENT = "sent"
    RESPONDING = "responding"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


# Module-level finals: compiled code reads them from a C static, not through the class.
_WAITING: Final = Phase.WAITING
_SENT: Final = Phase.SENT
_RESPONDING: Final = Phase.RESPONDING
_DONE: Final = Phase.DONE
_FAILED: Final = Phase.FAILED
_CANCELLED: Final = Phase.CANCELLED


@dataclass(frozen=True, slots=True)
class Fallback:
    """The legacy side of a canary request, prepared in case new refuses it."""

    decision: Decision
    pool: UpstreamPool | None
    head: bytes


class Exchange:
    """The life of one request: waiting, attached to an upstream, answered."""

    # Fields every exchange starts with alike are class-level defaults, set per exchange only
    # when they change: one is made per request, and assigning ~30 fields was a measurable part
    # of it (bench/proxy_bench.py).
    phase: Phase = _WAITING
    request_done = False
    body: list[bytes] | None = None
    body_buffered_bytes = 0
    conn: UpstreamConnection | None = None
    is_response_chunked = False
    wait_deadline = 0.0
    attempts = 0
    error_response: bytes | None = None
    # Stage `shadow`: the copy of this request, fed what this exchange already has.
    mirror: Mirror | None = None
    # A check the whole body must pass before the request is forwarded (the Rails bridge's
    # authenticity token in a form): returns a refusal reason, or None to go ahead.
    body_gate: Callable[[bytes], str | None] | None = None
    # A small body read whole before the exchange takes an upstream connection.
    is_body_held = False
    # The answer's final status (or the gateway's error status), for the traffic counts.
    status = 0
    # _clock() when its head was read (requests and canary windows measure from it), and
    # when the current attempt was sent upstream (strangler_upstream_duration_seconds).
    started_at = 0.0
    sent_at = 0.0
    # Answered by the gateway itself, no backend tried (side `gateway` in the metrics).
    is_gateway_answer = False
    # Seconds from the last attempt's send to its answer's head (-1: no answer head).
    upstream_s = -1.0
    # Body bytes read from the client and relayed to it.
    bytes_in = 0
    bytes_out = 0
    # Canary `retry_on_legacy` sent this request to legacy after new refused it.
    fell_back = False
    # Set only with an access log or tracing on (observe/journal.py): the request target,
    # the span ids of a sampled trace, and the identity the Rails bridge sent.
    url = b""
    trace: tuple[bytes, bytes, bytes, bytes] | None = None
    user: str | None = None
    # Canary `retry_on_legacy`: where this safe request goes if new refuses it.
    fallback: Fallback | None = None
    # A drill's injected fault. An exchange that has one holds its pool aside in `fault_pool`
    # (its `pool` is None) until the fault is done: the fault is applied in the branch of
    # `start` for exchanges without a pool, so others pay nothing for it.
    fault: FaultKind | None = None
    fault_pool: UpstreamPool | None = None
    fault_timer: asyncio.TimerHandle | None = None

    def __init__(
        self,
        client: ClientConnection,
        request: RequestHead | None,
        decision: Decision,
        pool: UpstreamPool | None,
        head: bytes,
        request_id: bytes,
        response_tail: bytes,
    ) -> None:
        """`request` is the client's head (None for a refusal's placeholder), `head` the bytes
        sent upstream for it."""
        self.client = client
        self.decision = decision
        self.pool = pool
        self.head = head
        self.request_id = request_id
        self.response_tail = response_tail
        if request is None:
            self.method = b""
            self.is_head = False
            self.keep_alive = False
            self.is_http10 = False
            self.is_upgrade = False
            self.is_request_chunked = False
            self.expects_continue = False
            self.is_replayable = False
        else:
            method = request.method
            self.method = method
            self.url = request.url
            self.is_head = method == b"HEAD"
            self.keep_alive = request.keep_alive
            self.is_http10 = request.is_http10
            self.is_upgrade = request.is_upgrade
            self.is_request_chunked = request.is_chunked
            self.expects_continue = request.expects_continue
            self.is_replayable = not request.has_body and method in _SAFE_METHODS
        # Bytes produced while parsing one read, written with one writev when the read is done:
        # a response head and its body in one syscall instead of two (bench/: +25% req/s).
        self.to_client: list[bytes] = []
        self.to_upstream: list[bytes] = []

    @classmethod
    def rejected(cls, client: ClientConnection, response: bytes) -> Exchange:
        """A placeholder that answers a refused pipelined request in its turn."""
        decision = Decision(None, None, "-", DecisionReason.UNMATCHED_DEFAULT)
        exchange = cls(client, None, decision, None, b"", b"", b"")
        exchange.error_response = response
        exchange.is_gateway_answer = True
        return exchange

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def is_cancelled(self) -> bool:
        return self.phase is _CANCELLED

    @property
    def is_response_started(self) -> bool:
        """Something of the answer went to the client: a failure can no longer be answered."""
        phase = self.phase
        return phase is _RESPONDING or phase is _DONE or phase is _FAILED

    @property
    def is_response_complete(self) -> bool:
        phase = self.phase
        return phase is _DONE or phase is _FAILED

    def start(self) -> None:
        """Called by the client connection when this exchange becomes its current one, and when
        the body it held (small, or checked by the Rails bridge) is complete."""
        if self.body_gate is not None or self.is_body_held:
            # Its body is still being read; on_message_complete or on_body starts it.
            return
        if self.error_response is not None:
            self.client.write(self.error_response)
            self.client.close()
            return
        pool = self.pool
        if pool is None:
            if self.fault is not None:
                self._apply_fault()
                return
            self.fail(FailureKind.CONNECT_REFUSED)
            return
        pool.acquire(self)

    def hold_for_fault(self, fault: FaultKind) -> None:
        """A drill's fault for this request: its pool is held aside until the fault is applied,
        so `start` takes its branch for exchanges without a pool and others pay nothing."""
        self.fault = fault
        self.fault_pool, self.pool = self.pool, None

    def _apply_fault(self) -> None:
        """Answer as a failure would be (abort), or go on later (delay); the upstream was not
        contacted yet. Either way it ends in exchange_done under its side, like any answer."""
        plan = self.decision.faults
        client = self.client
        if self.fault is FaultKind.DELAY and plan is not None:
            self.fault_timer = client.worker.loop.call_later(plan.delay_s, self._after_fault_delay)
            return
        status = plan.abort_status if plan is not None else 503
        if self.mirror is not None:
            self.mirror.primary_failed()
        self.phase = _FAILED
        self.status = status
        if not self.request_done or self.is_upgrade:
            self.keep_alive = False
        route = self.decision.route_label
        detail = f"a fault injected by a drill on route {route!r}; no backend was contacted"
        client.write(self.problem(status, "Injected fault", detail, "injected_fault"))
        client.exchange_done(self)

    def _after_fault_delay(self) -> None:
        self.fault_timer = None
        if self.phase is _CANCELLED or self.client.is_closed:
            return
        pool, self.fault_pool = self.fault_pool, None
        self.pool = pool
        if pool is None:
            self.fail(FailureKind.CONNECT_REFUSED)
            return
        pool.acquire(self)

    # -- PoolClient ---------------------------------------------------------------------------

    def attach(self, conn: UpstreamConnection) -> None:
        if self.phase is _CANCELLED:
            conn.pool.release(conn, is_reusable=False)
            return
        self.phase = _SENT
        self.attempts += 1
        self.conn = conn
        self.sent_at = _clock()
        conn.start_request(self, is_head_request=self.is_head)
        if not self.request_done:
            # The answer's clock starts when the request is sent, not while a client uploads.
            conn.deadline = 0.0
        out = self.to_upstream
        prefix = conn.pool.target.path_prefix
        out.append(with_path_prefix(self.head, prefix) if prefix else self.head)
        body = self.body
        if body:
            self.body = None
            self.body_buffered_bytes = 0
            if self.is_request_chunked:
                for piece in body:
                    out += (b"%x\r\n" % len(piece), piece, _CRLF)
            else:
                out += body
            self.client.on_body_flushed()
        if self.request_done and self.is_request_chunked:
            out.append(_LAST_CHUNK)
        if self.client.is_write_paused:
            conn.set_reading(is_paused=True)
        if not self.client.is_feeding:
            self.flush_upstream()

    def fail(self, kind: FailureKind) -> None:
        """No answer from the upstream: called by the pool when no connection could be had, by
        this exchange when its connection failed, and by `start` when its backend has no pool.
        Goes to legacy instead when `retry_on_legacy` allows; else the client gets a
        problem+json answer, or a reset when part of the answer already went out."""
        self.conn = None
        if self.pool is not None:
            self.client.counters.inc("upstream_failures_total", self.decision.backend, kind.value)
            # Nothing reached the backend (a failed TLS handshake sent no request byte either):
            # the request can safely go to legacy instead.
            is_refused = (
                kind is FailureKind.CONNECT_REFUSED
                or kind is FailureKind.DNS_FAILED
                or kind is FailureKind.TLS_FAILED
            )
            if is_refused and self.fallback is not None and self.fall_back(kind.status()):
                return
        client = self.client
        if self.mirror is not None:
            # Every way an exchange fails comes through here: its shadow copy has nothing to
            # compare against.
            self.mirror.primary_failed()
        if self.is_response_started:
            self.phase = _FAILED
            client.abort()
            return
        pool = self.pool
        target = pool.target if pool is not None else None
        if target is None:
            self.is_gateway_answer = True
        waits_for_connect = kind in (FailureKind.CONNECT_TIMEOUT, FailureKind.POOL_TIMEOUT)
        timeout = 0.0
        if target is not None:
            timeout = target.connect_timeout_s if waits_for_connect else target.read_timeout_s
        detail = f"backend {self.decision.backend!r}: {kind.title().lower()}"
        if kind in (
            FailureKind.CONNECT_TIMEOUT,
            FailureKind.READ_TIMEOUT,
            FailureKind.POOL_TIMEOUT,
        ):
            detail += f" after {timeout:g} s"
        elif kind is FailureKind.TLS_FAILED and pool is not None:
            detail += f": {pool.tls_failure}"
        status = kind.status()
        self.phase = _FAILED
        self.status = status
        if not self.request_done or self.is_upgrade:
            self.keep_alive = False
        client.worker.gateway_errors.note(
            self.decision.route_label,
            kind.value,
            status,
            detail,
            self.request_id.decode("latin-1"),
        )
        client.write(self.problem(status, kind.title(), detail, kind.value))
        client.exchange_done(self)

    # -- request body from the client ---------------------------------------------------------

    def send_body(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.mirror is not None:
            self.mirror.add_request_body(data)
        if self.conn is not None:
            if self.is_request_chunked:
                self.to_upstream += (b"%x\r\n" % len(data), data, _CRLF)
            else:
                self.to_upstream.append(data)
            return
        phase = self.phase
        if phase is _DONE or phase is _FAILED or phase is _CANCELLED:
            return
        if self.body is None:
            self.body = []
        self.body.append(data)
        self.body_buffered_bytes += len(data)
        self.is_replayable = False

    def end_body(self) -> None:
        self.request_done = True
        if self.mirror is not None:
            self.mirror.request_complete()
        conn = self.conn
        if conn is not None:
            if self.is_request_chunked:
                self.to_upstream.append(_LAST_CHUNK)
            if self.phase is _SENT:
                conn.deadline = conn.pool.loop.time() + conn.read_timeout_s

    def flush_upstream(self) -> None:
        """Write what this exchange produced for its upstream (called after each client read)."""
        out = self.to_upstream
        if out and self.conn is not None:
            self.conn.writelines(out)
        out.clear()

    def flush_client(self) -> None:
        """Write what this exchange produced for its client (called after each upstream read)."""
        out = self.to_client
        if out:
            self.client.writelines(out)
            out.clear()

    def cancel(self) -> None:
        """The client went away: free whatever this exchange holds."""
        was_complete = self.is_response_complete
        self.phase = _CANCELLED
        if self.fault_timer is not None:
            self.fault_timer.cancel()
            self.fault_timer = None
        if self.mirror is not None:
            self.mirror.primary_failed()
        conn = self.conn
        if conn is not None and not was_complete:
            self.conn = None
            conn.sink = None
            conn.abort()

    # -- ResponseSink -------------------------------------------------------------------------

    def fall_back(self, status: int) -> bool:
        """Canary `retry_on_legacy`: new refused this safe, bodiless request (no connection, or
        a 502/503 answer not yet relayed); send it to legacy. Counted as a failure of new, with
        `status`, in the canary's windows. False when it is too late to fall back."""
        fallback = self.fallback
        self.fallback = None
        if fallback is None or fallback.pool is None or self.is_response_started:
            return False
        if self.phase is _CANCELLED:
            return False
        client = self.client
        route = self.decision.route or ""
        client.counters.inc("canary_retries_on_legacy_total", route)
        client.windows.record(route, True, status, _clock() - self.started_at)
        self.decision, self.pool, self.head = fallback.decision, fallback.pool, fallback.head
        self.attempts = 0
        self.fell_back = True
        self.phase = _WAITING
        fallback.pool.acquire(self)
        return True

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None:
        client = self.client
        if status in (502, 503) and self.fallback is not None and not self.is_response_started:
            # The answer is dropped unread: the connection goes, since its body would follow.
            conn.sink = None
            conn.abort()
            self.conn = None
            if self.fall_back(status):
                return
        if status < 200 and status != 101:
            # RFC 9110 §15.2: 1xx are interim; 100 is relayed to a client that asked for it.
            if status == 100 and self.expects_continue and not self.is_http10:
                client.write(_CONTINUE)
            return
        self.status = status
        upstream_s = _clock() - self.sent_at
        self.upstream_s = upstream_s
        metrics = client.metrics
        if metrics is not None:
            metrics.upstream(self.decision.backend, upstream_s)
        if status == 101 and not self.is_upgrade:
            conn.sink = None
            conn.abort()
            self.conn = None
            self.on_upstream_lost(conn, _BadResponse())
            return
        if self.mirror is not None:
            # Before head_parts below gets the proxy's own framing headers.
            self.mirror.primary_head(status, conn)
        # The upstream connection already copied the plain headers into head_parts.
        parts = conn.head_parts
        # The table first: status_line is interpreted code (proxy.failures is not compiled).
        parts[0] = _STATUS_LINES.get(status) or _status_line(status)
        has_length = False
        connection_tokens: bytes | None = None
        for kind, name, value in conn.special_headers:
            if kind == R_LENGTH:
                has_length = True
                parts += (name, b": ", value, _CRLF)
            elif kind == R_CONNECTION:
                connection_tokens = value
            elif kind == R_UPGRADE and status == 101:
                parts += (name, b": ", value, _CRLF)
        if connection_tokens is not None:
            parts = drop_connection_listed(parts, connection_tokens)
        is_bodyless = self.is_head or status in (204, 304)
        if status == 101:
            parts.append(_UPGRADE_HEADER)
        else:
            if not is_bodyless and not has_length:
                if self.is_http10:
                    # An HTTP/1.0 client can't read chunked: the end of the body is the close.
                    self.keep_alive = False
                else:
                    self.is_response_chunked = True
                    parts.append(_CHUNKED_HEADER)
            if self.is_upgrade or not self.request_done:
                self.keep_alive = False
            if not self.keep_alive or client.is_draining:
                self.keep_alive = False
                parts.append(_CLOSE_HEADER)
            elif self.is_http10:
                parts.append(_KEEP_ALIVE_HEADER)
        parts.append(self.response_tail)
        self.phase = _RESPONDING
        self.to_client.append(b"".join(parts))

    def on_response_body(self, data: bytes) -> None:
        self.bytes_out += len(data)
        if self.mirror is not None:
            self.mirror.primary_body(data)
        if self.is_response_chunked:
            self.to_client += (b"%x\r\n" % len(data), data, _CRLF)
        else:
            self.to_client.append(data)

    def on_response_complete(self, conn: UpstreamConnection, is_reusable: bool) -> None:
        self.phase = _DONE
        self.conn = None
        if self.is_response_chunked:
            self.to_client.append(_LAST_CHUNK)
        self.flush_client()
        if self.mirror is not None:
            self.mirror.primary_complete()
        conn.pool.release(conn, is_reusable=is_reusable and self.request_done)
        self.client.exchange_done(self)

    def on_upgrade(self, conn: UpstreamConnection, tail: bytes) -> None:
        self.conn = None
        self.phase = _DONE
        self.flush_client()
        conn.pool.take_for_tunnel(conn)
        self.client.start_tunnel(conn, tail)

    def on_upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        self.conn = None
        phase = self.phase
        if phase is _DONE or phase is _FAILED or phase is _CANCELLED:
            return
        client = self.client
        if phase is _RESPONDING:
            if exc is None and not conn.has_length_framing():
                # A close-delimited body (no Content-Length, not chunked) ends at EOF.
                self.phase = _DONE
                if self.mirror is not None:
                    self.mirror.primary_complete()
                if self.is_response_chunked:
                    self.to_client.append(_LAST_CHUNK)
                self.flush_client()
                client.exchange_done(self)
                return
            if self.mirror is not None:
                self.mirror.primary_failed()
            client.counters.inc("client_aborts_total", "upstream_died_mid_response")
            self.phase = _FAILED
            client.abort()
            return
        if (
            conn.is_reused
            and not conn.has_response_bytes
            and self.is_replayable
            and self.attempts < 2
            and not isinstance(exc, TimeoutError)
            and self.pool is not None
        ):
            # The backend closed an idle keep-alive connection as we reused it: not its answer.
            client.counters.inc("upstream_retries_total", self.decision.backend)
            self.phase = _WAITING
            self.pool.acquire(self, is_fresh=True)
            return
        if isinstance(exc, TimeoutError):
            kind = FailureKind.READ_TIMEOUT
        elif isinstance(exc, _BadResponse):
            kind = FailureKind.BAD_RESPONSE
        else:
            kind = FailureKind.RESET
        self.fail(kind)

    def on_upstream_pause(self, is_paused: bool) -> None:
        self.client.set_upstream_full(is_paused=is_paused)

    # -- errors -------------------------------------------------------------------------------

    def problem(self, status: int, title: str, detail: str, reason: str) -> bytes:
        return render_problem(
            status,
            title,
            detail,
            route=self.decision.route,
            backend=self.decision.backend,
            reason=reason,
            request_id=self.request_id,
            close=not (self.keep_alive and self.request_done),
        )
