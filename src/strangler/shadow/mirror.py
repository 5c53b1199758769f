"""Stage `shadow`: copy a request to the new backend, keep both answers, compare them.

Rules:
- Nothing here changes or delays what the client receives. The primary exchange only hands
  over bounded copies of bytes it already has; it never waits for the shadow side, and the
  shadow side has its own connection pools and its own timeout.
- At most `limits.max_shadow_in_flight` copies per worker; one more is dropped and counted
  (`queue_full`). Bodies kept for comparison are bounded by the route's `shadow.max_body_bytes`
  (request and each answer); a larger one drops the comparison (`body_too_large`).
- Only GET, HEAD and OPTIONS are copied unless the route says `shadow.writes: sandbox`; others
  are counted as `not_mirrored_unsafe` and go to the primary only.
- The copy carries `X-Strangler-Shadow: 1` and the primary's trace id with its own span id.
- Comparison runs after both answers are complete, scheduled with call_soon, never inside the
  callback that finishes the client's answer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING

import orjson

from strangler.diff import BodyKind, Comparison, ResponseSample, compare_responses
from strangler.proxy.failures import FailureKind
from strangler.proxy.headers import R_CONNECTION, R_UPGRADE
from strangler.shadow.channel import ShadowChannel
from strangler.shadow.drop import DropReason
from strangler.shadow.results import ShadowResults

if TYPE_CHECKING:
    from strangler.control.snapshot import ShadowRoute, Snapshot
    from strangler.observe.counters import Counters
    from strangler.proxy.upstream_pool import UpstreamConnection, UpstreamPool
    from strangler.routing.model import Decision

log = logging.getLogger("strangler.shadow")

# The default: only these are copied unless the route says its target is a sandbox.
_MIRRORED_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
# HEAD answers can't be framed in a pipeline (llhttp can't be told an answer is to HEAD).
_PIPELINED_METHODS = frozenset({b"GET", b"OPTIONS"})
_SHADOW_HEADER = b"X-Strangler-Shadow: 1\r\n"
_IDENTICAL = Comparison(is_equal=True, differences=(), body_compared=True, kind=BodyKind.IDENTICAL)


class _Side:
    """One message (the request's body, or an answer) being captured, bounded."""

    __slots__ = ("body", "body_bytes", "headers", "is_done", "status")

    def __init__(self) -> None:
        self.status = 0
        self.headers: tuple[tuple[str, str], ...] = ()
        self.body: list[bytes] = []
        self.body_bytes = 0
        self.is_done = False

    def sample(self) -> ResponseSample:
        return ResponseSample(self.status, self.headers, b"".join(self.body), False)


class Mirror:
    """One copied request: its bounded bytes, the shadow exchange, and both answers."""

    __slots__ = (
        "_conn",
        "_head",
        "_is_head",
        "_is_request_chunked",
        "_limit",
        "_primary",
        "_request",
        "_shadow",
        "backend",
        "dropped",
        "is_cancelled",
        "is_finished",
        "is_noise_probe",
        "method",
        "path",
        "resends",
        "route",
        "runner",
        "setup",
        "twin",
        "wait_deadline",
    )

    def __init__(
        self,
        runner: ShadowRunner,
        route: str,
        backend: str,
        setup: ShadowRoute,
        head: bytes,
        method: bytes,
        path: bytes,
        *,
        is_head: bool,
        is_request_chunked: bool,
        is_noise_probe: bool = False,
    ) -> None:
        self.runner = runner
        # A noise probe sends the request to the primary's own backend a second time.
        self.is_noise_probe = is_noise_probe
        # The primary exchange feeds one Mirror; it passes everything on to its twin (a probe).
        self.twin: Mirror | None = None
        self.route = route
        self.backend = backend
        self.setup = setup
        self.method = method
        self.path = path
        self._head = head
        self._is_head = is_head
        self._is_request_chunked = is_request_chunked
        self._limit = setup.settings.max_body_bytes
        # The request body's side is made when a body arrives: most copies are bodiless GETs.
        self._request: _Side | None = None
        self._primary = _Side()
        self._shadow = _Side()
        self._conn: UpstreamConnection | None = None
        self.dropped: DropReason | None = None
        # Set once the outcome (a comparison or a drop) is counted; later callbacks are no-ops.
        self.is_finished = False
        self.is_cancelled = False
        self.wait_deadline = 0.0
        # Times this copy went out again after its pipelined connection ended unanswered.
        self.resends = 0

    @property
    def is_pipelinable(self) -> bool:
        """A copy the shadow channel may pipeline: a GET or OPTIONS without a body."""
        return self.method in _PIPELINED_METHODS and self._request is None

    @property
    def wire_bytes(self) -> bytes:
        """The whole copy as sent; a pipelined copy keeps it, since it may go out again."""
        return self._head

    @property
    def request_line(self) -> str:
        """`METHOD /path` (never the query): what examples and logs show of the request."""
        return self.method.decode("latin-1") + " " + self.path.decode("latin-1")

    # -- fed by the primary exchange ----------------------------------------------------------

    def add_request_body(self, data: bytes) -> None:
        if self.twin is not None:
            self.twin.add_request_body(data)
        if self._request is None:
            self._request = _Side()
        self._capture(self._request, data)

    def request_complete(self) -> None:
        """The client's request is all here: send the copy."""
        if self.twin is not None:
            self.twin.request_complete()
        if self.dropped is not None:
            return
        body = b""
        if self._request is not None:
            body = b"".join(self._request.body)
            self._request.body = []
        head = self._head
        if self._is_request_chunked:
            # The copy is sent whole, so it is framed by length.
            head = head.replace(
                b"Transfer-Encoding: chunked\r\n", b"Content-Length: %d\r\n" % len(body), 1
            )
        self._head = head[:-2] + _SHADOW_HEADER + b"\r\n" + body
        self.runner.send(self)

    def primary_head(self, status: int, conn: UpstreamConnection) -> None:
        if self.twin is not None:
            self.twin.primary_head(status, conn)
        if self.dropped is None:
            self._primary.status = status
            self._primary.headers = response_headers(conn, self.setup.kept_headers)

    def primary_body(self, data: bytes) -> None:
        if self.twin is not None:
            self.twin.primary_body(data)
        self._capture(self._primary, data)

    def primary_complete(self) -> None:
        if self.twin is not None:
            self.twin.primary_complete()
        self._primary.is_done = True
        self._maybe_compare()

    def primary_failed(self) -> None:
        if self.twin is not None:
            self.twin.primary_failed()
        self.drop(DropReason.PRIMARY_FAILED)

    # -- PoolClient (the shadow backend's pool) -----------------------------------------------

    def attach(self, conn: UpstreamConnection) -> None:
        if self.dropped is not None:
            conn.pool.release(conn, is_reusable=True)
            return
        self._conn = conn
        conn.start_request(self, is_head_request=self._is_head)
        conn.read_timeout_s = self.setup.settings.timeout_s
        conn.deadline = conn.pool.loop.time() + conn.read_timeout_s
        conn.set_reading(is_paused=False)
        conn.writelines([self._head])
        self._head = b""

    def fail(self, kind: FailureKind) -> None:
        timeout = kind in (FailureKind.CONNECT_TIMEOUT, FailureKind.POOL_TIMEOUT)
        self.drop(DropReason.SHADOW_TIMEOUT if timeout else DropReason.SHADOW_ERROR)

    # -- ResponseSink (the shadow backend's answer) -------------------------------------------

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None:
        if status >= 200 and self.dropped is None:
            self._shadow.status = status
            self._shadow.headers = response_headers(conn, self.setup.kept_headers)

    def shadow_head(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        """The shadow channel's answer head (final status only)."""
        if self.dropped is None:
            kept = self.setup.kept_headers
            self._shadow.status = status
            self._shadow.headers = tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in headers
                if name.lower() in kept
            )

    def shadow_complete(self) -> None:
        """The shadow channel's answer is all here."""
        self._shadow.is_done = True
        self._maybe_compare()

    def on_response_body(self, data: bytes) -> None:
        self._capture(self._shadow, data)

    def on_response_complete(self, conn: UpstreamConnection, is_reusable: bool) -> None:
        self._conn = None
        conn.pool.release(conn, is_reusable=is_reusable)
        self._shadow.is_done = True
        self._maybe_compare()

    def on_upgrade(self, conn: UpstreamConnection, tail: bytes) -> None:
        self._conn = None
        conn.pool.take_for_tunnel(conn)
        conn.close()
        self.drop(DropReason.SHADOW_ERROR)

    def on_upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        self._conn = None
        if self._shadow.is_done:
            return
        is_timeout = isinstance(exc, TimeoutError)
        self.drop(DropReason.SHADOW_TIMEOUT if is_timeout else DropReason.SHADOW_ERROR)

    def on_upstream_pause(self, is_paused: bool) -> None:
        """The shadow request is written whole; nothing to pause on the client's side."""

    def flush_client(self) -> None:
        """There is no client on the shadow side."""

    # -- outcome ------------------------------------------------------------------------------

    def drop(self, reason: DropReason) -> None:
        if self.dropped is not None or self.is_finished:
            return
        self.dropped = reason
        self.is_finished = True
        self.is_cancelled = True
        self._request = None
        self._primary.body = []
        self._shadow.body = []
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.sink = None
            conn.abort()
        self.runner.finish(self, reason)

    def _capture(self, side: _Side, data: bytes) -> None:
        if self.dropped is not None:
            return
        side.body_bytes += len(data)
        if side.body_bytes > self._limit:
            self.drop(DropReason.BODY_TOO_LARGE)
            return
        side.body.append(data)

    def _maybe_compare(self) -> None:
        if not self.is_finished and self._primary.is_done and self._shadow.is_done:
            self.is_finished = True
            self.runner.compare_soon(self)

    def samples(self) -> tuple[ResponseSample, ResponseSample]:
        return self._primary.sample(), self._shadow.sample()

    def are_answers_identical(self) -> bool:
        """Same status, same kept headers, same body bytes: equal under any rules, since rules
        only ever make more answers equal. Most answers are, so this skips the diff engine."""
        a, b = self._primary, self._shadow
        return (
            a.status == b.status
            and a.headers == b.headers
            and (a.body == b.body or b"".join(a.body) == b"".join(b.body))
        )


def response_headers(
    conn: UpstreamConnection, kept: frozenset[bytes]
) -> tuple[tuple[str, str], ...]:
    """The answer's headers named in `kept` (lowercase) as (name, value) text pairs.

    Only what the comparison reads is decoded: copying every header of every answer was a
    measurable share of a copy's cost (bench/proxy_bench.py --shadow)."""
    parts = conn.head_parts
    pairs = [
        (parts[i].decode("latin-1"), parts[i + 2].decode("latin-1"))
        for i in range(1, len(parts), 4)
        if parts[i].lower() in kept
    ]
    for kind, name, value in conn.special_headers:
        if kind not in (R_CONNECTION, R_UPGRADE) and name.lower() in kept:
            pairs.append((name.decode("latin-1"), value.decode("latin-1")))
    return tuple(pairs)


class ShadowRunner:
    """One worker's shadowing: its pools, its in-flight bound, its results."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counters: Counters) -> None:
        self.loop = loop
        self.counters = counters
        self.in_flight = 0
        self.results = ShadowResults(clock=time.time)
        self._to_compare: list[Mirror] = []
        # Set by the worker for each snapshot (proxy.upstream_pool.reconcile_pools).
        self.pools: dict[str, UpstreamPool] = {}
        # Pipelined connections for GET/OPTIONS copies, per backend (see channel.py).
        self.channels: dict[str, ShadowChannel] = {}

    def __repr__(self) -> str:
        return f"<ShadowRunner {self.in_flight} in flight, {len(self.pools)} pools>"

    def sweep(self, now: float) -> None:
        for pool in self.pools.values():
            pool.sweep(now)
        for channel in self.channels.values():
            channel.sweep(now)

    def report(self, *, as_json: bool = False) -> None:
        """Log each shadowed route's figures (periodically, and as JSON when the worker stops)."""
        for stats in self.results.routes.values():
            if as_json:
                log.info("shadow results %s", orjson.dumps(stats.as_dict()).decode())
                continue
            ratio, (low, high) = stats.parity()
            parity = "n/a" if ratio is None else f"{ratio:.2%} (95% CI {low:.2%}-{high:.2%})"
            log.info(
                "shadow %s: mirrored %d, compared %d, equal %d, different %d, dropped %s, "
                "parity %s",
                stats.route,
                stats.mirrored,
                stats.compared,
                stats.equal,
                stats.different,
                dict(stats.dropped) or "none",
                parity,
            )

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close_idle()
        for channel in self.channels.values():
            channel.close()

    def begin(
        self,
        snapshot: Snapshot,
        decision: Decision,
        method: bytes,
        url: bytes,
        head: bytes,
        traceparent: bytes,
        *,
        is_request_chunked: bool,
    ) -> Mirror | None:
        """Called once per request of a shadowed route, when its head is complete."""
        route = decision.route
        setup = snapshot.shadow_routes.get(route) if route is not None else None
        if route is None or setup is None:
            return None
        if method not in _MIRRORED_METHODS and not decision.mirrors_unsafe:
            self.results.count_drop(route, DropReason.NOT_MIRRORED_UNSAFE)
            self.counters.inc("shadow_dropped_total", route, DropReason.NOT_MIRRORED_UNSAFE)
            return None
        if self.in_flight >= snapshot.limits.max_shadow_in_flight:
            self.results.count_drop(route, DropReason.QUEUE_FULL)
            self.counters.inc("shadow_dropped_total", route, DropReason.QUEUE_FULL)
            return None
        self.in_flight += 1
        self.results.count_mirrored(route)
        # Same trace, a span of its own: the copy shows up beside the primary in a trace view.
        span = b"%016x" % random.getrandbits(64)
        shadow_traceparent = traceparent[:36] + span + traceparent[52:]
        head = head.replace(traceparent, shadow_traceparent, 1)
        path = url.partition(b"?")[0]
        assert decision.shadow_backend is not None  # set for every route in shadow_routes
        mirror = Mirror(
            self,
            route,
            decision.shadow_backend,
            setup,
            head,
            method,
            path,
            is_head=method == b"HEAD",
            is_request_chunked=is_request_chunked,
        )
        if (
            method in _MIRRORED_METHODS
            and random.random() < setup.settings.noise_sample_rate
            and self.in_flight < snapshot.limits.max_shadow_in_flight
        ):
            self.in_flight += 1
            mirror.twin = Mirror(
                self,
                route,
                decision.backend,
                setup,
                head,
                method,
                path,
                is_head=method == b"HEAD",
                is_request_chunked=is_request_chunked,
                is_noise_probe=True,
            )
        return mirror

    def send(self, mirror: Mirror) -> None:
        channel = self.channels.get(mirror.backend)
        if channel is not None and mirror.is_pipelinable:
            channel.send(mirror)
            return
        pool = self.pools.get(mirror.backend)
        if pool is None:
            mirror.drop(DropReason.SHADOW_ERROR)
            return
        pool.acquire(mirror)

    def finish(self, mirror: Mirror, reason: DropReason | None) -> None:
        """Called exactly once per Mirror that `begin` made (copies and noise probes)."""
        self.in_flight -= 1
        if reason is not None and not mirror.is_noise_probe:
            self.results.count_drop(mirror.route, reason)
            self.counters.inc("shadow_dropped_total", mirror.route, reason)

    def compare_soon(self, mirror: Mirror) -> None:
        # One loop callback compares every pair that completed in this loop iteration.
        if not self._to_compare:
            self.loop.call_soon(self._compare_all)
        self._to_compare.append(mirror)

    def _compare_all(self) -> None:
        batch, self._to_compare = self._to_compare, []
        for mirror in batch:
            try:
                self._compare(mirror)
            except Exception:
                # A bug in one comparison must not lose the rest of the batch.
                log.exception("shadow %s: comparison failed", mirror.route)

    def _compare(self, mirror: Mirror) -> None:
        self.in_flight -= 1
        if mirror.are_answers_identical():
            comparison = _IDENTICAL
        else:
            primary, shadow = mirror.samples()
            comparison = compare_responses(
                primary,
                shadow,
                mirror.setup.rules,
                max_decoded_bytes=mirror.setup.settings.max_body_bytes,
            )
            if not comparison.body_compared:
                # Only an inflated body past the bound gets here (captures are never truncated).
                if not mirror.is_noise_probe:
                    self.results.count_drop(mirror.route, DropReason.BODY_TOO_LARGE)
                    self.counters.inc(
                        "shadow_dropped_total", mirror.route, DropReason.BODY_TOO_LARGE
                    )
                return
        if mirror.is_noise_probe:
            for path in self.results.record_noise(mirror.route, comparison):
                log.info("shadow %s: legacy differs from itself at %s", mirror.route, path)
            return
        if comparison.is_equal:
            self.results.count_equal(mirror.route)
            return
        if comparison.differences:
            redactor = mirror.setup.redactor
            comparison = dataclasses.replace(
                comparison, differences=tuple(map(redactor.difference, comparison.differences))
            )
        for path in self.results.record(mirror.route, mirror.request_line, comparison):
            log.info(
                "shadow %s: new difference at %s (%s)", mirror.route, path, mirror.request_line
            )
