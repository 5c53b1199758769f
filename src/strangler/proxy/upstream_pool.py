"""Keep-alive connection pools to one backend, and the protocol that reads its answers.

Rules:
- A pool never holds more than `pool_size` connections (idle + busy + connecting) per worker.
  Exchanges that find it full wait in FIFO order; the sweeper fails those that wait longer than
  the backend's connect timeout (503, counted).
- Idle connections are reused newest first, so the oldest expire after `pool_idle_s`.
- An idle connection the backend closes leaves the pool at once (connection_lost).
- The fast path (an idle connection is there) is synchronous: no task, no future.
"""

from __future__ import annotations

import asyncio
import collections
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol, cast

import httptools

from strangler.proxy.failures import FailureKind
from strangler.proxy.headers import R_LENGTH, R_SKIP, R_TE, RESPONSE_SPECIAL, add_header
from strangler.proxy.tasks import TaskSet
from strangler.proxy.tls_session import keep_session
from strangler.runtime.snapshot import BackendTarget

if TYPE_CHECKING:
    from strangler.observe.counters import Counters


class PoolClient(Protocol):
    """The side of an exchange the pool talks to (implemented by proxy.exchange.Exchange)."""

    wait_deadline: float
    # A safe request without a body: a balanced backend may send it to another server when
    # the connect for it failed.
    is_replayable: bool

    @property
    def is_cancelled(self) -> bool:
        """The client went away: a connection handed over now goes back to the pool."""

    def attach(self, conn: UpstreamConnection) -> None:
        """Called once with a connection ready for this exchange's request."""

    def fail(self, kind: FailureKind) -> None:
        """Called once if no connection could be had."""


class TunnelClient(Protocol):
    """The client side of a WebSocket (or other Upgrade) tunnel."""

    transport: asyncio.Transport | None
    has_eof: bool

    def close(self) -> None: ...


class ResponseSink(Protocol):
    """Who receives a parsed upstream response (the exchange that sent the request)."""

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_complete(self, conn: UpstreamConnection, is_reusable: bool) -> None: ...
    def on_upgrade(self, conn: UpstreamConnection, tail: bytes) -> None: ...
    def on_upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None: ...
    def on_upstream_pause(self, is_paused: bool) -> None: ...
    def flush_client(self) -> None: ...


class UpstreamConnection(asyncio.Protocol):
    """One TCP connection to a backend; parses responses with httptools (llhttp)."""

    __slots__ = (
        "_head_keep_alive",
        "_head_status",
        "_parser",
        "deadline",
        "has_eof",
        "has_response_bytes",
        "head_parts",
        "idle_since",
        "is_closed",
        "is_head_request",
        "is_reading_paused",
        "is_reused",
        "is_session_due",
        "pool",
        "read_timeout_s",
        "sink",
        "special_headers",
        "transport",
        "tunnel_client",
        "tunnel_peer",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        # The response head as it will go to the client: a slot for the status line, then
        # (name, ": ", value, CRLF) runs; headers the proxy handles itself wait in special_headers.
        self.head_parts: list[bytes] = [b""]
        self.special_headers: list[tuple[int, bytes, bytes]] = []
        self.is_head_request = False
        self.is_reused = False
        self.is_closed = False
        self.has_response_bytes = False
        self.deadline = 0.0
        self.idle_since = 0.0
        self.read_timeout_s = pool.target.read_timeout_s
        # Set once a 101 switched this connection to a raw byte tunnel.
        self.tunnel_peer: asyncio.Transport | None = None
        self.tunnel_client: TunnelClient | None = None
        self.has_eof = False
        self._head_keep_alive = False
        self._head_status = 0
        self.is_reading_paused = False
        # An https connection whose TLS session is still to be kept for the next handshakes
        # (a TLS 1.3 ticket arrives after the handshake: it is read with the first answer).
        self.is_session_due = False

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else ("busy" if self.sink else "idle")
        return f"<UpstreamConnection {self.pool.target.name} {state}>"

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.tunnel_peer is not None:
            self.tunnel_peer.write(data)
            return
        sink = self.sink
        if sink is None:
            # A backend talking out of turn on an idle connection: it cannot be trusted again.
            self.close()
            return
        self.has_response_bytes = True
        self.deadline = self.pool.loop.time() + self.read_timeout_s
        try:
            self._parser.feed_data(data)
            if self.sink is not None:
                self.sink.flush_client()
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0] if exc.args else len(data)
            sink.on_upgrade(self, data[offset:])
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadResponseDone):
                # llhttp can't be told a response answers HEAD: the head ends the message here.
                self._parser = httptools.HttpResponseParser(self)
                self._complete(keep_alive=self._head_keep_alive)
                self._head_status = 0
                return
            if self.sink is not None:
                self.sink.on_upstream_lost(self, _BadResponse())
            self.close()

    def eof_received(self) -> bool | None:
        self.has_eof = True
        client = self.tunnel_client
        if client is None or client.has_eof or client.transport is None:
            # Both directions are finished (or this is no tunnel): close.
            if client is not None:
                client.close()
            return None
        # Half-close: pass the backend's EOF on and keep carrying the client's bytes.
        if client.transport.can_write_eof():
            client.transport.write_eof()
            return True
        client.close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        self.pool.forget(self)
        sink = self.sink
        if sink is not None:
            self.sink = None
            sink.on_upstream_lost(self, exc)
        elif self.tunnel_peer is not None:
            self.tunnel_peer.close()

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_pause(True)
        elif self.tunnel_peer is not None:
            self.tunnel_peer.pause_reading()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.on_upstream_pause(False)
        elif self.tunnel_peer is not None:
            self.tunnel_peer.resume_reading()

    # -- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.head_parts = [b""]
        self.special_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        kind = RESPONSE_SPECIAL.get(name.lower())
        if kind is None:
            add_header(self.head_parts, name, value)
        elif kind != R_SKIP:
            self.special_headers.append((kind, name, value))

    def on_headers_complete(self) -> None:
        sink = self.sink
        if sink is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            sink.on_response_head(self, status)
            return
        sink.on_response_head(self, status)
        if self.is_head_request and status != 101:
            self._head_keep_alive = self._parser.should_keep_alive()
            # The parser is replaced when the head ends the message: keep its status.
            self._head_status = status
            raise _HeadResponseDone

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        # Interim 1xx answers are not the response; a 101 ends in on_upgrade instead.
        if self._parser.get_status_code() < 200:
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # -- used by the exchange -----------------------------------------------------------------

    def start_request(self, sink: ResponseSink, *, is_head_request: bool) -> None:
        """The next response on this connection goes to `sink` (the request bytes follow)."""
        self.sink = sink
        self.is_head_request = is_head_request
        self.has_response_bytes = False
        self.deadline = self.pool.loop.time() + self.read_timeout_s

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def writelines(self, parts: list[bytes]) -> None:
        assert self.transport is not None
        self.transport.writelines(parts)

    def set_reading(self, *, is_paused: bool) -> None:
        if self.transport is None or self.is_closed or self.is_reading_paused == is_paused:
            return
        self.is_reading_paused = is_paused
        if is_paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def response_status(self) -> int:
        """The status of the response being read (0 before its head)."""
        if self.is_head_request:
            return self._head_status
        return self._parser.get_status_code()

    def has_length_framing(self) -> bool:
        """Whether the current response said where its body ends (Content-Length or chunked)."""
        return any(kind in (R_LENGTH, R_TE) for kind, _, _ in self.special_headers)

    def start_tunnel(self, client: TunnelClient) -> None:
        self.sink = None
        self.deadline = 0.0
        self.tunnel_client = client
        self.tunnel_peer = client.transport

    def close(self) -> None:
        if self.transport is not None and not self.is_closed:
            self.is_closed = True
            self.transport.close()
        self.pool.forget(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.is_closed = True
            self.transport.abort()
        self.pool.forget(self)

    def _complete(self, *, keep_alive: bool) -> None:
        sink = self.sink
        self.sink = None
        self.deadline = 0.0
        if sink is not None:
            sink.on_response_complete(self, keep_alive)


class _HeadResponseDone(Exception):
    """Raised from on_headers_complete to end a response to HEAD at its header section."""


class _BadResponse(Exception):
    """The upstream's bytes were not a valid HTTP/1.1 response."""


def reconcile_pools(
    pools: Mapping[str, UpstreamPool],
    targets: Mapping[str, BackendTarget],
    make: Callable[[BackendTarget], UpstreamPool],
) -> dict[str, UpstreamPool]:
    """The pools for a new snapshot: a backend at the same address keeps its pool (and its idle
    sockets) with the new limits; one that is gone or moved has its pool retired, so exchanges
    in flight finish on it and its sockets close as they free up."""
    fresh: dict[str, UpstreamPool] = {}
    for name, target in targets.items():
        pool = pools.get(name)
        if pool is not None and pool.target.address == target.address:
            pool.update_target(target)
        else:
            pool = make(target)
        fresh[name] = pool
    for name, pool in pools.items():
        if fresh.get(name) is not pool:
            pool.retire()
    return fresh


class UpstreamPool:
    """Per-worker keep-alive pool for one backend."""

    def __init__(
        self,
        target: BackendTarget,
        loop: asyncio.AbstractEventLoop,
        tasks: TaskSet,
        counters: Counters,
    ) -> None:
        self.target = target
        self.loop = loop
        self._tasks = tasks
        self._counters = counters
        self.idle: list[UpstreamConnection] = []
        self.busy: set[UpstreamConnection] = set()
        self.connecting = 0
        self.waiters: collections.deque[PoolClient] = collections.deque()
        # Set when a reload dropped or moved this backend: connections close as they free up.
        self.is_retired = False
        # Why the last TLS handshake failed (OpenSSL's words), for the 502 it becomes.
        self.tls_failure = ""

    def __repr__(self) -> str:
        return (
            f"<UpstreamPool {self.target.name}: {len(self.busy)} active, {len(self.idle)} idle, "
            f"{self.connecting} connecting, {len(self.waiters)} waiting>"
        )

    @property
    def size(self) -> int:
        return len(self.idle) + len(self.busy) + self.connecting

    def update_target(self, target: BackendTarget) -> None:
        """Take new timeouts and limits from a reloaded config (same address)."""
        self.target = target

    def acquire(self, client: PoolClient, *, is_fresh: bool = False) -> None:
        """Hand `client` a connection now, later (after connect or when one frees up), or fail.

        `is_fresh` skips idle connections: a retry after a stale one must not meet another."""
        idle = self.idle
        while idle and not is_fresh:
            conn = idle.pop()
            if conn.is_closed:
                continue
            conn.is_reused = True
            conn.read_timeout_s = self.target.read_timeout_s
            self.busy.add(conn)
            client.attach(conn)
            return
        if self.size < self.target.pool_size:
            self._start_connect(client)
        else:
            client.wait_deadline = self.loop.time() + self.target.connect_timeout_s
            self.waiters.append(client)

    def release(self, conn: UpstreamConnection, *, is_reusable: bool) -> None:
        """Give back a connection whose exchange is over."""
        self.busy.discard(conn)
        if conn.is_session_due:
            conn.is_session_due = False
            keep_session(self.target.ssl_context, conn.transport)
        if not is_reusable or conn.is_closed or self.is_retired:
            conn.close()
            self._serve_waiter()
            return
        # Paused for a slow client of the last exchange: the next one starts unpaused.
        conn.set_reading(is_paused=False)
        while self.waiters:
            client = self.waiters.popleft()
            if client.is_cancelled:
                continue
            conn.is_reused = True
            self.busy.add(conn)
            client.attach(conn)
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """Drop a closed connection from the books; its slot may serve a waiter."""
        was_busy = conn in self.busy
        self.busy.discard(conn)
        if not was_busy:
            try:
                self.idle.remove(conn)
            except ValueError:
                return
        self._serve_waiter()

    def take_for_tunnel(self, conn: UpstreamConnection) -> None:
        """An upgraded connection leaves the pool for good (its slot is freed)."""
        self.busy.discard(conn)
        self._serve_waiter()

    def sweep(self, now: float) -> None:
        """Expire idle connections and waiters; called by the worker's sweeper."""
        if self.idle:
            expiry = now - self.target.pool_idle_s
            while self.idle and self.idle[0].idle_since < expiry:
                self.idle.pop(0).close()
        while self.waiters and self.waiters[0].wait_deadline <= now:
            client = self.waiters.popleft()
            if not client.is_cancelled:
                self._counters.inc("pool_wait_timeouts_total", self.target.name)
                client.fail(FailureKind.POOL_TIMEOUT)
        for conn in list(self.busy):
            if conn.deadline and conn.deadline <= now and conn.sink is not None:
                sink = conn.sink
                conn.sink = None
                conn.abort()
                sink.on_upstream_lost(conn, TimeoutError("read timeout"))

    def close_idle(self) -> None:
        while self.idle:
            self.idle.pop().close()

    def retire(self) -> None:
        """No new exchanges come here; the ones in flight finish, then their sockets close."""
        self.is_retired = True
        self.close_idle()

    def _serve_waiter(self) -> None:
        while self.waiters and self.size < self.target.pool_size:
            client = self.waiters.popleft()
            if not client.is_cancelled:
                self._start_connect(client)
                return

    def _start_connect(self, client: PoolClient) -> None:
        self.connecting += 1
        self._tasks.spawn(self._connect(client), name=f"connect-{self.target.name}")

    async def _connect(self, client: PoolClient) -> None:
        target = self.target
        try:
            try:
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(
                        lambda: UpstreamConnection(self),
                        target.host,
                        target.port,
                        ssl=target.ssl_context,
                        server_hostname=target.server_name,
                    ),
                    timeout=target.connect_timeout_s,
                )
            finally:
                self.connecting -= 1
        except ssl.SSLError as exc:
            # Before OSError, its base class. verify_message is OpenSSL's X509 verify text
            # ("certificate has expired", "Hostname mismatch, ...", "unable to get local issuer
            # certificate"); other handshake failures have only a reason code.
            verify = exc.verify_message if isinstance(exc, ssl.SSLCertVerificationError) else None
            self.tls_failure = verify or exc.reason or str(exc)
            self._counters.inc("upstream_connect_failures_total", target.name, "tls")
            self._fail_or_next(client, FailureKind.TLS_FAILED)
            return
        except TimeoutError:
            self._counters.inc("upstream_connect_failures_total", target.name, "timeout")
            self._fail_or_next(client, FailureKind.CONNECT_TIMEOUT)
            return
        except socket.gaierror:
            self._counters.inc("upstream_connect_failures_total", target.name, "dns")
            self._fail_or_next(client, FailureKind.DNS_FAILED)
            return
        except OSError:
            self._counters.inc("upstream_connect_failures_total", target.name, "refused")
            self._fail_or_next(client, FailureKind.CONNECT_REFUSED)
            return
        if target.ssl_context is not None:
            resumed = keep_session(target.ssl_context, conn.transport)
            self._counters.inc(
                "upstream_tls_handshakes_total", target.name, "true" if resumed else "false"
            )
            conn.is_session_due = True
        if client.is_cancelled:
            self.release(conn, is_reusable=True)
            return
        self.busy.add(conn)
        client.attach(conn)

    def _fail_or_next(self, client: PoolClient, kind: FailureKind) -> None:
        if not client.is_cancelled:
            client.fail(kind)
        self._serve_waiter()
