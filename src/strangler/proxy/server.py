"""ClientConnection: one asyncio.Protocol per client socket, parsing requests with httptools.

Rules:
- Requests are refused before any byte reaches an upstream when their framing is ambiguous
  (RFC 9112 §6.1, §6.3: Content-Length with Transfer-Encoding, several Content-Lengths, a
  Transfer-Encoding other than `chunked`, obs-fold, bad chunk sizes): 400 and close.
- Header section over the limit: 431. Body over the limit: 413. Other HTTP versions: 505.
- Pipelined requests are answered in order; reading pauses while one waits, so the buffer of
  waiting requests is bounded by one read.
- Reading pauses for several independent reasons (pipeline, buffered body, upstream full,
  upgrade pending); each reason is a bit, and reading resumes only when no bit is set.
- Each head that passes those checks becomes one frozen RequestHead; `proxy.steering` turns it
  into a Steering (the route, the canary's side, a fault, the Rails bridge), and the chosen
  side's Decision is then forwarded like any other. `X-Strangler-Backend` and
  `X-Strangler-Signature` never reach any backend.
- An exchange's lifecycle is its own (proxy.exchange): the connection starts, queues and
  counts exchanges, and never sets their state.
"""

from __future__ import annotations

import asyncio
import binascii
import collections
import ipaddress
import logging
import random
import re
import time
from typing import TYPE_CHECKING, Final, cast

import httptools

from strangler.errors import ClientProtocolError
from strangler.identity.bridge import MAX_FORM_BYTES
from strangler.identity.csrf import is_form_body
from strangler.observe.metrics import (
    DEFAULT_ROUTE,
    NO_STAGE,
    SIDE_GATEWAY,
    SIDE_LEGACY,
    SIDE_NEW,
)
from strangler.observe.metrics import SIDES as SIDE_NAMES
from strangler.proxy.exchange import Exchange, Fallback
from strangler.proxy.failures import render_problem
from strangler.proxy.headers import add_header
from strangler.proxy.request_head import RequestHead, upstream_head
from strangler.proxy.request_target import canonical_path
from strangler.proxy.steering import Steering, bridge_shadow_copy, steer
from strangler.proxy.upstream_pool import UpstreamConnection
from strangler.proxy.wire_guard import WireGuard
from strangler.routing.method_override import form_override, override_matters, override_method
from strangler.routing.model import Decision, DecisionReason, Stage

if TYPE_CHECKING:
    from strangler.observe.access_line import AccessLines
    from strangler.observe.counters import Counters
    from strangler.observe.journal import RequestJournal
    from strangler.observe.metrics import WorkerMetrics
    from strangler.observe.slo.counter import SloCounter
    from strangler.observe.traffic import TrafficCounter
    from strangler.observe.windows import WindowRecorder
    from strangler.proxy.upstream_pool import UpstreamPool
    from strangler.runtime.snapshot import BackendTarget, Snapshot
    from strangler.runtime.worker import Worker

log = logging.getLogger("strangler.proxy")

# The module's constants are Final: compiled code reads a Final name as a C static, and any other
# module-level name through the module's dict, on every use.
_clock: Final = time.perf_counter

_PAUSE_PIPELINE: Final = 1
_PAUSE_BUFFER: Final = 2
_PAUSE_UPSTREAM: Final = 4
_PAUSE_UPGRADE: Final = 8
_PAUSE_ERROR: Final = 16

# A request body buffered while its upstream connection is being set up pauses the client here.
_BUFFER_HIGH_WATER: Final = 256 * 1024

# Request headers with a job other than being copied through (RFC 9110 §7.6.1 hop-by-hop
# headers, framing, forwarding and tracing headers the gateway rewrites).
_H_DROP: Final = 0
_H_CONNECTION: Final = 1
_H_TE: Final = 2
_H_LENGTH: Final = 3
_H_HOST: Final = 4
_H_XFF: Final = 5
_H_XFP: Final = 6
_H_XFH: Final = 7
_H_FORWARDED: Final = 8
_H_TRACEPARENT: Final = 9
_H_REQUEST_ID: Final = 10
_H_EXPECT: Final = 11
_H_UPGRADE: Final = 12
_H_VIA: Final = 13
_H_PASS: Final = 14
_H_OVERRIDE: Final = 15
_H_SIGNATURE: Final = 16
_H_METHOD_OVERRIDE: Final = 17
_H_PEER_ONLY: Final = 18
_H_COOKIE: Final = 19
_H_AUTHORIZATION: Final = 20
_H_CSRF_TOKEN: Final = 21
_H_ORIGIN: Final = 22
_H_CONTENT_TYPE: Final = 23
_REQUEST_SPECIAL: Final[dict[bytes, int]] = {
    b"connection": _H_CONNECTION,
    b"keep-alive": _H_DROP,
    b"proxy-connection": _H_DROP,
    b"te": _H_DROP,
    b"trailer": _H_DROP,
    b"transfer-encoding": _H_TE,
    b"upgrade": _H_UPGRADE,
    b"content-length": _H_LENGTH,
    b"host": _H_HOST,
    b"x-forwarded-for": _H_XFF,
    b"x-forwarded-proto": _H_XFP,
    b"x-forwarded-host": _H_XFH,
    b"forwarded": _H_FORWARDED,
    b"traceparent": _H_TRACEPARENT,
    b"x-request-id": _H_REQUEST_ID,
    b"expect": _H_EXPECT,
    b"via": _H_VIA,
    b"tracestate": _H_PASS,
    # Only the gateway may say a request is a shadow copy.
    b"x-strangler-shadow": _H_DROP,
    # A tester's canary override: read on canary routes, never forwarded to any backend.
    b"x-strangler-backend": _H_OVERRIDE,
    b"x-strangler-signature": _H_SIGNATURE,
    # Rack::MethodOverride reads it on a POST: copied through, and read to route as Rails will.
    b"x-http-method-override": _H_METHOD_OVERRIDE,
    # Headers Rack, Rails or a framework behind us believe about the client or the URL: only a
    # trusted proxy may send them, like Forwarded.
    b"x-forwarded-ssl": _H_PEER_ONLY,
    b"x-forwarded-scheme": _H_PEER_ONLY,
    b"x-forwarded-port": _H_PEER_ONLY,
    b"x-real-ip": _H_PEER_ONLY,
    b"client-ip": _H_PEER_ONLY,
    b"true-client-ip": _H_PEER_ONLY,
    b"x-original-url": _H_PEER_ONLY,
    b"x-rewrite-url": _H_PEER_ONLY,
    # Copied through, and read by the Rails bridge (identity and CSRF for the new backend).
    b"cookie": _H_COOKIE,
    b"authorization": _H_AUTHORIZATION,
    b"x-csrf-token": _H_CSRF_TOKEN,
    b"origin": _H_ORIGIN,
    b"content-type": _H_CONTENT_TYPE,
}

# W3C Trace Context §3.2: version-traceid-parentid-flags, lowercase hex, ids not all zero.
_TRACEPARENT: Final = re.compile(rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:+/=@-]{1,200}")
_ZERO_TRACE: Final = b"0" * 32
_ZERO_SPAN: Final = b"0" * 16

_getrandbits: Final = random.getrandbits
_hex: Final = binascii.b2a_hex
# Enum members as C statics: on Python 3.11 each `Stage.CANARY` read goes through EnumType's
# __getattr__ hook.
_CANARY: Final = Stage.CANARY
_CANARY_NEW: Final = DecisionReason.CANARY_NEW
_CANARY_LEGACY: Final = DecisionReason.CANARY_LEGACY
_LOW_64: Final = (1 << 64) - 1
_TOO_MANY_CONNECTIONS: Final = render_problem(
    503,
    "Service Unavailable",
    "this client address has too many open connections (limits.max_connections_per_client)",
    reason="max_connections_per_client",
)
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class ClientConnection(asyncio.Protocol):
    """One client socket: parses requests, runs their exchanges in order."""

    def __init__(self, worker: Worker, *, is_tls: bool = False) -> None:
        self.worker = worker
        # Fixed per listener, so no request pays for the scheme: X-Forwarded-Proto, Secure
        # cookies and the CSRF Origin check read these.
        self.is_tls = is_tls
        self.counters: Counters = worker.counters
        self.loop = worker.loop
        # The worker's recorders, made once with it: read here for every answer, where a native
        # field costs less than a Python object's attribute.
        self.traffic: TrafficCounter = worker.traffic
        self.slos: SloCounter = worker.slos
        self.windows: WindowRecorder = worker.windows
        self.metrics: WorkerMetrics | None = worker.metrics
        self.journal: RequestJournal | None = worker.journal
        # The limits of the snapshot in force when the current request began.
        self.limits = RequestLimits(worker.snapshot)
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.peer = b"-"
        self.is_trusted_peer = False
        self.is_counted_per_peer = False
        self.guard = WireGuard()
        self.current: Exchange | None = None
        self.pipeline: collections.deque[Exchange] = collections.deque()
        self.parsing: Exchange | None = None
        self.is_draining = False
        self.is_write_paused = False
        self.is_feeding = False
        self.is_closed = False
        self.has_eof = False
        self._body_deadline = 0.0
        self._messages_completed = 0
        self._head_raw_bytes = 0
        self.deadline = 0.0
        self.tunnel: UpstreamConnection | None = None
        self._paused = 0
        self._error: ClientProtocolError | None = None
        self._upgrade_buffer: list[bytes] = []
        self._reset_message()

    def __repr__(self) -> str:
        return f"<ClientConnection {self.peer!r} current={self.current is not None}>"

    def _reset_message(self) -> None:
        self._decided: Decision | None = None
        self._url = b""
        self._out: list[bytes] = [b""]
        self._header_bytes = 0
        self._is_head_pending = False
        self._head_deadline = 0.0
        self._body_bytes = 0
        self._content_length = -1
        self._is_chunked = False
        self._host: bytes | None = None
        self._xff: bytes | None = None
        self._xfp: bytes | None = None
        self._xfh: bytes | None = None
        self._traceparent: bytes | None = None
        self._request_id: bytes | None = None
        self._upgrade: bytes | None = None
        self._expects_continue = False
        self._connection_tokens: bytes | None = None
        self._has_host_twice = False
        # The Rails bridge's inputs: where the Cookie value sits in _out (-1: none), and the
        # raw values it reads.
        self._cookie_at = -1
        self._stripped = self.worker.stripped_headers
        self._has_authorization = False
        self._csrf_token: bytes | None = None
        self._origin: bytes | None = None
        self._content_type: bytes | None = None
        # X-Strangler-Backend and X-Strangler-Signature, as sent.
        self._override: bytes | None = None
        self._signature: bytes | None = None
        self._method_override: bytes | None = None
        # A POST form whose `_method` decides its route: the head waits here, and its body in
        # _held_body, until the body is complete (see routing.method_override).
        self._held: _HeldHead | None = None
        self._held_body: list[bytes] = []

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        worker = self.worker
        peername = transport.get_extra_info("peername")
        if peername:
            self.peer = str(peername[0]).encode("ascii")
            snapshot = worker.snapshot
            if snapshot.trusted_networks:
                address = ipaddress.ip_address(peername[0])
                self.is_trusted_peer = any(address in net for net in snapshot.trusted_networks)
        limits = worker.snapshot.limits
        if len(worker.connections) >= limits.max_connections:
            self.counters.inc("client_connections_refused_total", "max_connections")
            self.transport.abort()
            return
        if not self.is_trusted_peer:
            # One address may not take every connection (slow uploads, slowloris); a trusted
            # proxy's connections carry many clients, so it is not capped here.
            by_peer = worker.connections_by_peer
            held = by_peer.get(self.peer, 0)
            if held >= limits.max_connections_per_client:
                self.counters.inc("client_connections_refused_total", "max_connections_per_client")
                self.is_closed = True
                self.transport.write(_TOO_MANY_CONNECTIONS)
                self.transport.close()
                return
            by_peer[self.peer] = held + 1
            self.is_counted_per_peer = True
        worker.connections.add(self)
        self.deadline = worker.loop.time() + worker.snapshot.limits.header_timeout_s

    def data_received(self, data: bytes) -> None:
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.write(data)
            return
        parser = self.parser
        if parser is None:
            if self._paused & _PAUSE_UPGRADE:
                self._upgrade_buffer.append(data)
            return
        completed = self._messages_completed
        self.is_feeding = True
        size = len(data)
        start = end = 0
        try:
            guard = self.guard
            # Fed one head at a time: the parser reads each head's framing before the guard
            # looks at what follows it (see wire_guard.py).
            while start < size:
                end = guard.segment_end(data, start)
                parser.feed_data(
                    data if start == 0 and end == size else memoryview(data)[start:end]
                )
                start = end
            if self._is_head_pending and self._messages_completed == completed:
                # httptools buffers a header line until it ends, so count the raw bytes of an
                # unfinished head ourselves: a header that never ends must not grow unbounded.
                self._head_raw_bytes += len(data)
                if self._head_raw_bytes > self.worker.snapshot.limits.max_header_bytes:
                    self._error = ClientProtocolError(
                        431, "the request's header section is too large"
                    )
                    self._reject(self._error)
        except httptools.HttpParserUpgrade as exc:
            self.parser = None
            offset = start + (exc.args[0] if exc.args else end - start)
            if offset < size:
                self._upgrade_buffer.append(data[offset:])
            self._set_paused(_PAUSE_UPGRADE, on=True)
        except ClientProtocolError as exc:
            self.counters.inc("client_requests_refused_total", "framing")
            self._reject(exc)
        except httptools.HttpParserError as exc:
            error = self._error
            if error is None:
                if isinstance(exc, httptools.HttpParserCallbackError):
                    log.error("request parsing callback failed", exc_info=exc)
                error = ClientProtocolError(400, _parser_reason(exc))
            self._reject(error)
        finally:
            self.is_feeding = False
            current = self.current
            if current is not None and current.to_upstream:
                current.flush_upstream()

    def eof_received(self) -> bool | None:
        tunnel = self.tunnel
        if tunnel is not None:
            self.has_eof = True
            if tunnel.has_eof or tunnel.transport is None or not tunnel.transport.can_write_eof():
                # Both directions are finished: close both sockets.
                tunnel.close()
                return None
            tunnel.transport.write_eof()
            return True
        # A client may half-close after its last request and still read the answer.
        self.has_eof = True
        return self.current is not None

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        self.worker.connections.discard(self)
        if self.is_counted_per_peer:
            self.is_counted_per_peer = False
            by_peer = self.worker.connections_by_peer
            left = by_peer.get(self.peer, 1) - 1
            if left > 0:
                by_peer[self.peer] = left
            else:
                by_peer.pop(self.peer, None)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        if self.current is not None:
            self.current.cancel()
            self.current = None
        while self.pipeline:
            self.pipeline.popleft().cancel()
        if self.parsing is not None:
            # A request answered early whose body never finished: its shadow copy ends here too.
            self.parsing.cancel()
            self.parsing = None

    def pause_writing(self) -> None:
        self.is_write_paused = True
        conn = self._upstream_reading()
        if conn is not None:
            conn.set_reading(is_paused=True)

    def resume_writing(self) -> None:
        self.is_write_paused = False
        conn = self._upstream_reading()
        if conn is not None:
            conn.set_reading(is_paused=False)

    def _upstream_reading(self) -> UpstreamConnection | None:
        if self.tunnel is not None:
            return self.tunnel
        return self.current.conn if self.current is not None else None

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._is_head_pending = True
        self._head_raw_bytes = 0
        limits = self._limits_of(self.worker.snapshot)
        # Slowloris: the header section must arrive within header_timeout_s of its first byte.
        self._head_deadline = self.loop.time() + limits.header_timeout_s
        if self.current is None:
            self.deadline = self._head_deadline

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)
        if self._header_bytes > self.limits.max_header_bytes:
            self._error = ClientProtocolError(431, "the request's header section is too large")
            raise self._error

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > self.limits.max_header_bytes:
            self._error = ClientProtocolError(431, "the request's header section is too large")
            raise self._error
        lowered = name.lower()
        kind = _REQUEST_SPECIAL.get(lowered)
        if kind is None:
            if _has_underscore(name):
                # nginx's `underscores_in_headers off`: Rack reads X_Strangler_Identity as
                # X-Strangler-Identity (CGI variables), so a name with `_` could smuggle a header
                # the gateway strips. Dropped, counted.
                self.counters.inc("client_headers_dropped_total", "underscore")
            elif lowered not in self._stripped:
                add_header(self._out, name, value)
        elif kind >= _H_COOKIE:
            self._read_bridge_header(kind, name, value)
        elif kind == _H_LENGTH:
            self._content_length = int(value)
            add_header(self._out, name, value)
        elif kind == _H_HOST:
            if self._host is not None:
                self._has_host_twice = True
            self._host = value
        elif kind == _H_TE:
            # llhttp already refused anything but a final `chunked`; be exact about it anyway.
            if value.strip().lower() != b"chunked":
                self._error = ClientProtocolError(400, "unsupported Transfer-Encoding")
                raise self._error
            self._is_chunked = True
        elif kind == _H_TRACEPARENT:
            self._traceparent = value
        elif kind == _H_REQUEST_ID:
            self._request_id = value
        elif kind == _H_XFF:
            self._xff = value if self._xff is None else self._xff + b", " + value
        elif kind == _H_XFP:
            self._xfp = value
        elif kind == _H_XFH:
            self._xfh = value
        elif kind in (_H_FORWARDED, _H_PEER_ONLY):
            if self.is_trusted_peer:
                add_header(self._out, name, value)
        elif kind == _H_CONNECTION:
            self._connection_tokens = value
        elif kind == _H_UPGRADE:
            self._upgrade = value
        elif kind == _H_EXPECT:
            self._expects_continue = value.strip().lower() == b"100-continue"
            add_header(self._out, name, value)
        elif kind in (_H_VIA, _H_PASS):
            add_header(self._out, name, value)
        elif kind == _H_OVERRIDE:
            self._override = value
        elif kind == _H_SIGNATURE:
            self._signature = value
        elif kind == _H_METHOD_OVERRIDE:
            self._method_override = value
            add_header(self._out, name, value)

    def _read_bridge_header(self, kind: int, name: bytes, value: bytes) -> None:
        if kind == _H_COOKIE:
            if self._cookie_at >= 0:
                # RFC 6265 §5.4: one Cookie header; fold a second one into the first.
                self._out[self._cookie_at] += b"; " + value
                return
            self._cookie_at = len(self._out) + 2
        elif kind == _H_AUTHORIZATION:
            self._has_authorization = True
        elif kind == _H_CSRF_TOKEN:
            self._csrf_token = value
        elif kind == _H_ORIGIN:
            self._origin = value
        else:
            self._content_type = value
        add_header(self._out, name, value)

    def on_headers_complete(self) -> None:
        snapshot = self.worker.snapshot
        head = self._freeze_head(snapshot)
        route_method = head.method
        if route_method == b"POST":
            header_method = override_method(head.method_override)
            if (
                head.has_body
                and is_form_body(route_method, head.content_type)
                and override_matters(snapshot.table, head.path.decode("latin-1"))
            ):
                # Rails routes this form by its `_method` field: read it before routing. The
                # head is complete: what arrives now is body, not head bytes.
                self._held = _HeldHead(head, header_method)
                self._is_head_pending = False
                if head.expects_continue and self.current is None:
                    self.write(_CONTINUE)
                self._await_body(self._limits_of(snapshot))
                return
            if header_method is not None:
                route_method = header_method
        self._dispatch(snapshot, head, route_method)

    def _freeze_head(self, snapshot: Snapshot) -> RequestHead:
        """Check the parsed head's framing and target (refusing it through `_fail_head`), then
        freeze what it says."""
        parser = self.parser
        assert parser is not None
        upgrade = self._upgrade
        is_upgrade = upgrade is not None and parser.should_upgrade()
        self.guard.expect_body(
            content_length=self._content_length,
            is_chunked=self._is_chunked,
            is_upgrade=is_upgrade,
        )
        version = parser.get_http_version()
        if version == "1.1":
            is_http10 = False
            if self._host is None:
                self._fail_head(400, "HTTP/1.1 requests need a Host header (RFC 9112 §3.2)")
        elif version == "1.0":
            is_http10 = True
            if self._is_chunked:
                # RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
                self._fail_head(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        else:
            self._fail_head(505, f"HTTP/{version} is not supported")
        if self._has_host_twice:
            self._fail_head(400, "several Host headers")
        method = parser.get_method()
        if method == b"CONNECT":
            self._fail_head(405, "CONNECT is not served by a reverse proxy")
        url = self._url
        if url[:1] != b"/":
            url = self._origin_form(url)
        if url == b"*" and method != b"OPTIONS":
            self._fail_head(400, "the asterisk-form target is only for OPTIONS (RFC 9112 §3.2.4)")
        if self._content_length > self._limits_of(snapshot).max_body_bytes:
            self._fail_head(413, "the request body is larger than the limit")
        question = url.find(b"?")
        path = url if question < 0 else url[:question]
        if url != b"*":
            canonical = self._canonical_path(path, snapshot)
            if canonical is not path:
                path = canonical
                url = path if question < 0 else path + url[question:]
        if upgrade is not None and b"h2c" in upgrade.lower():
            # h2c smuggling: a backend that takes the upgrade would read the next bytes as an
            # HTTP/2 connection the gateway never routes. Cleartext HTTP/2 is never forwarded.
            self._fail_head(400, "Upgrade: h2c is not forwarded")
        return RequestHead(
            method,
            url,
            path,
            is_http10,
            parser.should_keep_alive() and not self.is_draining,
            is_upgrade,
            self._is_chunked,
            self._content_length,
            self._expects_continue,
            self._out,
            self._cookie_at,
            self._host,
            self._xff,
            self._xfp,
            self._xfh,
            upgrade,
            self._connection_tokens,
            self._traceparent,
            self._request_id,
            self._has_authorization,
            self._csrf_token,
            self._origin,
            self._content_type,
            self._override,
            self._signature,
            self._method_override,
            self.peer,
            self.is_trusted_peer,
            self.is_tls,
        )

    def _canonical_path(self, path: bytes, snapshot: Snapshot) -> bytes:
        try:
            return canonical_path(path, self._limits_of(snapshot).path_policy)
        except ClientProtocolError as exc:
            self.counters.inc("client_requests_refused_total", "path")
            self._error = exc
            raise

    def _dispatch(self, snapshot: Snapshot, head: RequestHead, route_method: bytes) -> None:
        """Route the request whose head was parsed (`route_method`: the method Rails will act
        on), build what goes upstream and start or queue its exchange."""
        steering = steer(head, snapshot, route_method, self.worker.bridge, self.counters)
        started_at = _clock()
        # A refusal from here on (CSRF, a bad body) is counted under this route.
        self._decided = steering.decision
        if steering.refusal is not None:
            self._fail_head(
                403, f"the request failed Rails' forgery protection ({steering.refusal})"
            )
        exchange = self._new_exchange(snapshot, head, steering)
        exchange.started_at = started_at
        if (
            (exchange.body_gate is not None or exchange.is_body_held)
            and head.expects_continue
            and self.current is None
        ):
            # The body must be read before anything is forwarded: say "go on" ourselves.
            self.write(_CONTINUE)
        is_held = self._held is not None
        self._reset_message()
        self.parsing = exchange
        if not head.has_body:
            self.deadline = 0.0
        elif not is_held:
            # (A held form's body is complete already: on_message_complete dispatched it.)
            self._await_body(self._limits_of(snapshot))
        if self.current is None:
            self.current = exchange
            exchange.start()
        else:
            self.pipeline.append(exchange)
            self._set_paused(_PAUSE_PIPELINE, on=True)

    def _new_exchange(self, snapshot: Snapshot, head: RequestHead, steering: Steering) -> Exchange:
        """The exchange for a steered request: its upstream head, its fallback and its shadow
        copy, each built from the same frozen head."""
        worker = self.worker
        decision = steering.decision
        pool = worker.pools.get(decision.backend)
        request_id, traceparent, trace = _trace_ids(head, self.journal)
        via = snapshot.via
        request_head = upstream_head(
            head, _target(pool), via, request_id, traceparent, steering.identity, steering.cookie
        )
        exchange = Exchange(
            self,
            head,
            decision,
            pool,
            request_head,
            request_id,
            steering.set_cookie + _response_tail(request_id, via),
        )
        exchange.trace = trace
        exchange.user = steering.user
        if steering.body_gate is not None:
            exchange.body_gate = steering.body_gate
        elif head.has_body and (
            head.is_chunked or head.content_length <= self._limits_of(snapshot).buffer_body_bytes
        ):
            # A small body is read whole before the exchange takes an upstream connection: a
            # client trickling it holds none of the backend's pool.
            exchange.is_body_held = True
        legacy = steering.fallback
        if legacy is not None:
            # Built from the head as it came: the new side's head may have lost the Rails cookie.
            legacy_pool = worker.pools.get(legacy.backend)
            legacy_head = upstream_head(
                head, _target(legacy_pool), via, request_id, traceparent, b"", head.cookie
            )
            exchange.fallback = Fallback(legacy, legacy_pool, legacy_head)
        if steering.fault is not None:
            exchange.hold_for_fault(steering.fault)
        if decision.shadow_backend is not None and not head.is_upgrade:
            copy_head = request_head
            bridge = worker.bridge
            if bridge is not None:
                # A shadow copy always goes to the new side.
                copy_head = bridge_shadow_copy(head, bridge, decision, request_head)
            mirror = worker.shadow.begin(
                snapshot,
                decision,
                head.method,
                head.url,
                copy_head,
                traceparent,
                is_request_chunked=head.is_chunked,
            )
            if mirror is not None:
                mirror.trace = trace
            exchange.mirror = mirror
        return exchange

    def _limits_of(self, snapshot: Snapshot) -> RequestLimits:
        limits = self.limits
        if limits.snapshot is not snapshot:
            limits = self.limits = RequestLimits(snapshot)
        return limits

    def _await_body(self, limits: RequestLimits) -> None:
        """A body is due: each read within body_timeout_s of the last, all of it within
        body_deadline_s."""
        now = self.loop.time()
        self._body_deadline = now + limits.body_deadline_s
        self.deadline = min(now + limits.body_timeout_s, self._body_deadline)

    def on_body(self, body: bytes) -> None:
        limits = self.limits
        now = self.loop.time()
        self.deadline = min(now + limits.body_timeout_s, self._body_deadline)
        self._body_bytes += len(body)
        if self._held is not None:
            # Read whole for its `_method`, within the bound a checked form has.
            if self._body_bytes > MAX_FORM_BYTES:
                self.counters.inc("client_requests_refused_total", "form_too_large")
                self._fail_head(413, "a form whose _method decides its route is larger than 1 MiB")
            self._held_body.append(body)
            return
        exchange = self.parsing
        if exchange is None:
            return
        if self._body_bytes > limits.max_body_bytes:
            self._error = ClientProtocolError(413, "the request body is larger than the limit")
            raise self._error
        exchange.send_body(body)
        if exchange.body_gate is not None:
            # Read whole before it is forwarded (a form whose token must be checked): bounded.
            if exchange.body_buffered_bytes > MAX_FORM_BYTES:
                self.counters.inc("identity_csrf_refused_total", "form_too_large")
                self.counters.inc("csrf_refused_total", exchange.decision.route or DEFAULT_ROUTE)
                self._fail_head(413, "a form checked for its authenticity token is too large")
        elif exchange.is_body_held:
            if exchange.body_buffered_bytes > limits.buffer_body_bytes:
                # A chunked body that outgrew the bound: it streams from here on.
                exchange.is_body_held = False
                if exchange is self.current:
                    exchange.start()
        elif exchange.body_buffered_bytes > _BUFFER_HIGH_WATER:
            self._set_paused(_PAUSE_BUFFER, on=True)

    def on_message_complete(self) -> None:
        self._messages_completed += 1
        self._body_deadline = 0.0
        held = self._held
        if held is not None:
            body = b"".join(self._held_body)
            self._held_body = []
            # Rack: the form's `_method` field first, else the header.
            route_method = form_override(body, held.head.content_type) or held.header_method
            self._dispatch(self.worker.snapshot, held.head, route_method or b"POST")
            if self.parsing is not None and body:
                self.parsing.send_body(body)
        exchange = self.parsing
        gate = exchange.body_gate if exchange is not None else None
        if gate is not None and exchange is not None:
            exchange.body_gate = None
            refusal = gate(b"".join(exchange.body or ()))
            if refusal is not None:
                self.counters.inc("identity_csrf_refused_total", refusal)
                self.counters.inc("csrf_refused_total", exchange.decision.route or DEFAULT_ROUTE)
                self._fail_head(403, f"the request failed Rails' forgery protection ({refusal})")
        self.parsing = None
        self._body_bytes = 0
        if exchange is not None:
            if self.current is not None:
                self.deadline = 0.0
            is_waiting = gate is not None or exchange.is_body_held
            exchange.is_body_held = False
            exchange.end_body()
            if is_waiting and exchange is self.current:
                exchange.start()

    # -- building the upstream request head ---------------------------------------------------

    def _fail_head(self, status: int, reason: str) -> None:
        self._error = ClientProtocolError(status, reason)
        raise self._error

    def _origin_form(self, url: bytes) -> bytes:
        """An absolute-form target (RFC 9112 §3.2.2) is taken only when it names the authority
        the request is for (its Host), and then its path and query are used as they are; `*`
        only for OPTIONS."""
        lowered = url[:8].lower()
        if lowered.startswith((b"http://", b"https://")):
            rest = url.split(b"://", 1)[1]
            end = len(rest)
            for mark in (b"/", b"?", b"#"):
                at = rest.find(mark)
                if 0 <= at < end:
                    end = at
            authority, target = rest[:end], rest[end:]
            host = self._host
            if host is None or authority.lower() != host.strip().lower():
                self._fail_head(
                    400, "an absolute-form request target must name the Host the request is for"
                )
            # `http://host?next=/x` is the path "/" with its query, never the path "/x".
            return target if target[:1] == b"/" else b"/" + target
        if url == b"*":
            return url
        self._fail_head(400, "the request target is not a path")
        return url

    # -- exchanges ----------------------------------------------------------------------------

    def exchange_done(self, exchange: Exchange) -> None:
        """Called once when `exchange`'s answer is complete (or its error was written)."""
        decision = exchange.decision
        worker = self.worker
        is_new = decision.is_new_side or decision.backend == worker.new_backend
        status = exchange.status
        elapsed = _clock() - exchange.started_at
        self.traffic.count(decision.route, is_new, status, elapsed)
        slo_targets = worker.snapshot.slo_targets.get(decision.route or "")
        if slo_targets is not None:
            # What the client received counts, whichever side (after a fallback: legacy's).
            self.slos.record(slo_targets, is_new, status, elapsed)
        if decision.stage is _CANARY:
            # The side the canary chose, whatever backend the route names for it.
            self.windows.record(
                decision.route or "",
                decision.reason is _CANARY_NEW,
                status,
                elapsed,
            )
        side = SIDE_NEW if is_new else SIDE_LEGACY
        if exchange.is_gateway_answer:
            side = SIDE_GATEWAY
        metrics = self.metrics
        if metrics is not None and status:
            _count_request(metrics, decision, side, status, elapsed)
        journal = self.journal
        if journal is not None:
            _journal_exchange(journal, exchange, self.peer, side, status, elapsed)
        if exchange is not self.current:
            return
        self.current = None
        if self.is_closed:
            return
        # A full upstream write buffer belonged to that exchange's connection, not the next one.
        self._set_paused(_PAUSE_UPSTREAM, on=False)
        if not exchange.keep_alive or self.is_draining or (self.has_eof and not self.pipeline):
            self.close()
            return
        if self.pipeline:
            nxt = self.pipeline.popleft()
            self.current = nxt
            if not self.pipeline:
                self._set_paused(_PAUSE_PIPELINE, on=False)
            nxt.start()
            return
        self._set_paused(_PAUSE_PIPELINE, on=False)
        if self._is_head_pending:
            self.deadline = self._head_deadline
        elif self.parsing is None:
            idle_s = self._limits_of(self.worker.snapshot).idle_timeout_s
            self.deadline = self.worker.loop.time() + idle_s

    def start_tunnel(self, conn: UpstreamConnection, tail: bytes) -> None:
        """The upstream said 101: from now on bytes flow both ways untouched."""
        self.current = None
        self.tunnel = conn
        self.deadline = 0.0
        conn.start_tunnel(self)
        if tail:
            self.write(tail)
        buffered, self._upgrade_buffer = self._upgrade_buffer, []
        for data in buffered:
            conn.write(data)
        self.counters.inc("websocket_tunnels_total")
        self._set_paused(_PAUSE_UPGRADE, on=False)
        self._set_paused(_PAUSE_PIPELINE, on=False)

    # -- flow control and I/O -----------------------------------------------------------------

    def on_body_flushed(self) -> None:
        self._set_paused(_PAUSE_BUFFER, on=False)

    def set_upstream_full(self, *, is_paused: bool) -> None:
        self._set_paused(_PAUSE_UPSTREAM, on=is_paused)

    def _set_paused(self, reason: int, *, on: bool) -> None:
        before = self._paused
        after = before | reason if on else before & ~reason
        self._paused = after
        transport = self.transport
        if transport is None or self.is_closed:
            return
        if before == 0 and after != 0:
            transport.pause_reading()
        elif before != 0 and after == 0:
            transport.resume_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.is_closed:
            self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        if self.transport is not None and not self.is_closed:
            self.transport.writelines(parts)

    def close(self) -> None:
        """Close after what was written is flushed."""
        if self.transport is not None and not self.is_closed:
            self.is_closed = True
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection now; the client sees a reset, never a complete-looking answer."""
        if self.transport is not None:
            self.is_closed = True
            self.transport.abort()

    def _reject(self, error: ClientProtocolError) -> None:
        """A request we refuse: answer it in order, then close."""
        self.parser = None
        self._held = None
        self._set_paused(_PAUSE_ERROR, on=True)
        self.counters.inc("client_requests_rejected_total", str(error.status))
        exchange = self.parsing
        started = exchange.started_at if exchange is not None else 0.0
        elapsed = _clock() - started if started else 0.0
        metrics = self.metrics
        if metrics is not None:
            decided = exchange.decision if exchange is not None else self._decided
            _count_request(metrics, decided, SIDE_GATEWAY, error.status, elapsed)
        journal = self.journal
        if journal is not None:
            if exchange is not None:
                _journal_exchange(journal, exchange, self.peer, SIDE_GATEWAY, error.status, elapsed)
            else:
                journal.refused(self.peer, self._url, error.status, self._decided)
        response = render_problem(
            error.status,
            _REJECT_TITLES.get(error.status, "Bad request"),
            error.reason,
            reason=f"client_{error.status}",
        )
        self.parsing = None
        if exchange is not None and exchange is self.current:
            # The body of the request being forwarded went bad: the upstream gets nothing more.
            was_answering = exchange.is_response_started
            exchange.cancel()
            self.current = None
            if was_answering:
                self.abort()
                return
        elif exchange is not None:
            # A pipelined request whose body went bad is never sent: its refusal takes its turn.
            exchange.cancel()
            self.pipeline.remove(exchange)
        if self.current is None:
            self.write(response)
            self.close()
            return
        self.pipeline.append(Exchange.rejected(self, response))

    def on_deadline(self, now: float) -> None:
        """Called by the worker's sweeper when `deadline` has passed."""
        self.deadline = 0.0
        if self.tunnel is not None:
            return
        if self.parsing is not None or self._held is not None:
            if self._paused:
                # We stopped reading (backpressure), so the client is not the one stalling.
                self.deadline = now + self.worker.snapshot.limits.body_timeout_s
                return
            if self._body_deadline and now >= self._body_deadline:
                self.counters.inc("client_timeouts_total", "body_deadline")
                self._reject(
                    ClientProtocolError(408, "the request body took longer than its deadline")
                )
                return
            self.counters.inc("client_timeouts_total", "body")
            self._reject(ClientProtocolError(408, "the request body stopped arriving"))
            return
        if self.current is not None:
            return
        if self._is_head_pending:
            self.counters.inc("client_timeouts_total", "header")
            problem = render_problem(
                408, "Request Timeout", "the header section took too long", reason="client_408"
            )
            self.write(problem)
        else:
            self.counters.inc("client_timeouts_total", "idle")
        self.close()

    def begin_drain(self) -> None:
        """Stop taking requests: idle connections close now, busy ones after their answer."""
        self.is_draining = True
        if (
            self.current is None
            and self.tunnel is None
            and self.parsing is None
            and self._held is None
        ):
            self.close()


_REJECT_TITLES: Final = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    505: "HTTP Version Not Supported",
}


def _has_underscore(name: bytes) -> bool:
    # A compiled loop: `b"_" in name` raises and clears a TypeError inside CPython, and
    # find() parses its arguments the slow way; this runs for every header (request_target.py).
    # Indexed (see request_target._is_plain).
    for index in range(len(name)):  # noqa: SIM110
        if name[index] == 0x5F:
            return True
    return False


def _trace_ids(
    head: RequestHead, journal: RequestJournal | None
) -> tuple[bytes, bytes, tuple[bytes, bytes, bytes, bytes] | None]:
    """(request id, traceparent to send upstream, span ids when the request is sampled): the
    incoming ones passed through when valid, else made."""
    # One draw for both: a 32-digit trace (and request) id, then a 16-digit span id.
    bits = _getrandbits(192)
    # b"%048x" % bits, without the generic formatting machinery.
    ids = _hex(bits.to_bytes(24, "big"))
    new_id, span = ids[:32], ids[32:]
    incoming = head.traceparent
    match = _TRACEPARENT.fullmatch(incoming) if incoming is not None else None
    trace = None
    if (
        match is not None
        and match[1] != b"ff"
        and match[2] != _ZERO_TRACE
        and match[3] != _ZERO_SPAN
    ):
        flags = match[4]
        if journal is not None and journal.traces and int(flags, 16) & 1 == 1:
            # Parent-based: the caller's sampled flag decides.
            trace = journal.span_ids(match[2], match[3], span)
        traceparent = b"00-" + match[2] + b"-" + span + b"-" + flags
    else:
        # A new trace: its id doubles as the request id, so logs and traces join up.
        flags = b"01"
        if journal is not None and journal.traces:
            # TraceIdRatioBased: the trace id's lower 64 bits (bits 64-127 of the draw)
            # against the ratio's share of 2**64; an unsampled request costs no call.
            if (bits >> 64) & _LOW_64 < journal.threshold:
                trace = journal.span_ids(new_id, b"", span)
            else:
                flags = b"00"
        traceparent = b"00-" + new_id + b"-" + span + b"-" + flags
    request_id = head.request_id
    if request_id is None or _REQUEST_ID.fullmatch(request_id) is None:
        request_id = new_id
    return request_id, traceparent, trace


def _target(pool: UpstreamPool | None) -> BackendTarget | None:
    return pool.target if pool is not None else None


def _response_tail(request_id: bytes, via: bytes) -> bytes:
    """The headers every answer gets, and the blank line that ends the head."""
    return b"X-Request-Id: " + request_id + b"\r\nVia: " + via + b"\r\n\r\n"


def _parser_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return f"malformed request: {text}"


class RequestLimits:
    """The limits a request is held to, and the path policy, copied out of one snapshot's
    config: compiled code reads a native object's field directly, and a pydantic model's
    attribute through its __getattr__ hook, several times per request."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot: Final = snapshot
        limits = snapshot.limits
        self.max_header_bytes: Final = limits.max_header_bytes
        self.max_body_bytes: Final = limits.max_body_bytes
        self.buffer_body_bytes: Final = limits.buffer_body_bytes
        self.header_timeout_s: Final = limits.header_timeout_s
        self.body_timeout_s: Final = limits.body_timeout_s
        self.body_deadline_s: Final = limits.body_deadline_s
        self.idle_timeout_s: Final = limits.idle_timeout_s
        self.path_policy: Final = snapshot.config.path_policy


class _HeldHead:
    """A POST form routed once its `_method` is known; `header_method` is what
    X-HTTP-Method-Override names (Rack's fallback)."""

    def __init__(self, head: RequestHead, header_method: bytes | None) -> None:
        self.head = head
        self.header_method = header_method


def _count_request(
    metrics: WorkerMetrics, decision: Decision | None, side: int, status: int, elapsed: float
) -> None:
    if decision is None:
        metrics.request(DEFAULT_ROUTE, NO_STAGE, side, status, elapsed)
        return
    metrics.request(decision.route_label, decision.stage_label, side, status, elapsed)


def _journal_exchange(
    journal: RequestJournal,
    exchange: Exchange,
    client: bytes,
    side: int,
    status: int,
    elapsed: float,
) -> None:
    """The access log line (formatted here, compiled) and, for a sampled request, its spans."""
    lines = journal.lines
    if lines is not None and lines.wants(status, elapsed * 1000.0):
        _log_line(lines, exchange, client, side, status, elapsed)
    if exchange.trace is not None or journal.has_entries:
        # Spans of a sampled request; entries of the combined format.
        journal.request_done(exchange, client, side, status, elapsed)


def _log_line(
    lines: AccessLines,
    exchange: Exchange,
    client: bytes,
    side: int,
    status: int,
    elapsed: float,
) -> None:
    decision = exchange.decision
    trace = exchange.trace
    reason = decision.reason
    canary_reason: str | None = None
    if reason is _CANARY_NEW:
        canary_reason = "canary_new"
    elif reason is _CANARY_LEGACY:
        canary_reason = "canary_legacy"
    lines.add(
        exchange.request_id,
        trace[0] if trace is not None else b"",
        client,
        exchange.method,
        exchange.url,
        decision.route_label,
        decision.stage_label,
        SIDE_NAMES[side],
        status,
        exchange.bytes_in,
        exchange.bytes_out,
        elapsed,
        exchange.upstream_s,
        canary_reason,
        exchange.user,
        None if exchange.fault is None else exchange.fault.value,
    )
