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
  callback that finishes the client's answer. A pair whose bodies together pass the route's
  `shadow.diff_off_loop_bytes` (a compressed body counts as `max_body_bytes`, what it may
  inflate to) is compared in the worker's helper process (offload.py), never on the loop; so
  is a smaller one whose JSON walk passes MAX_NODES_ON_LOOP nodes (compared again there).
  A copy stays in flight until its comparison is back.
- A comparison that stops at the route's `diff.max_nodes` counts as dropped (`diff_budget`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Sequence
from time import perf_counter
from typing import TYPE_CHECKING

import orjson

from strangler.diff import BodyKind, Comparison, ResponseSample, compare_responses
from strangler.proxy.failures import FailureKind
from strangler.proxy.headers import R_CONNECTION, R_UPGRADE, with_path_prefix
from strangler.shadow.channel import ShadowChannel
from strangler.shadow.drop import DropReason
from strangler.shadow.offload import DiffHelper
from strangler.shadow.results import RouteShadowStats, ShadowResults

if TYPE_CHECKING:
    from strangler.observe.counters import Counters
    from strangler.observe.journal import RequestJournal
    from strangler.observe.metrics import WorkerMetrics
    from strangler.observe.traffic import TrafficCounter
    from strangler.proxy.upstream_pool import UpstreamConnection, UpstreamPool
    from strangler.routing.model import Decision
    from strangler.runtime.snapshot import ShadowRoute, Snapshot

log = logging.getLogger("strangler.shadow")

# The default: only these are copied unless the route says its target is a sandbox.
_MIRRORED_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
# HEAD answers can't be framed in a pipeline (llhttp can't be told an answer is to HEAD).
_PIPELINED_METHODS = frozenset({b"GET", b"OPTIONS"})
_SHADOW_HEADER_END = b"X-Strangler-Shadow: 1\r\n\r\n"
# A 64 KiB pair like bench_diff.py's documents visits ~2,700 nodes; 10,000 are 1-6 ms of the
# loop in the compiled build. A small pair built against the walk (256 multiset probes) would
# otherwise hold the loop for a whole `diff.max_nodes`: 18 ms, 3 ms with this bound
# (bench_diff_adversarial.py, `probes 64 KiB`).
MAX_NODES_ON_LOOP = 10_000
_IDENTICAL = Comparison(is_equal=True, differences=(), body_compared=True, kind=BodyKind.IDENTICAL)


class Mirror:
    """One copied request: its bounded bytes, the shadow exchange, and both answers.

    An answer is kept as its status, its header names and values (as received) and its body
    chunks; the compared headers are picked out only when the two answers are compared. A
    plain class with class-level defaults, not slots: a copy sets only what differs per
    request, and most copies never touch the request-body or pool fields.
    """

    # A noise probe sends the request to the primary's own backend a second time.
    is_noise_probe = False
    # The primary exchange feeds one Mirror; it passes everything on to its twin (a probe).
    twin: Mirror | None = None
    dropped: DropReason | None = None
    # Set once the outcome (a comparison or a drop) is counted; later callbacks are no-ops.
    is_finished = False
    # Seen by the shadow pool, which skips a copy dropped while it waited for a connection.
    is_cancelled = False
    wait_deadline = 0.0
    # A copy whose connect failed is dropped, never sent to another server of the backend.
    is_replayable = False
    # Times this copy went out again after its pipelined connection ended unanswered.
    resends = 0
    request_chunks: list[bytes] | None = None
    request_size = 0
    primary_status = 0
    primary_names: Sequence[bytes] = ()
    primary_values: Sequence[bytes] = ()
    primary_chunks: list[bytes] | None = None
    primary_size = 0
    is_primary_done = False
    shadow_status = 0
    shadow_names: Sequence[bytes] = ()
    shadow_values: Sequence[bytes] = ()
    shadow_chunks: list[bytes] | None = None
    shadow_size = 0
    is_shadow_done = False
    _conn: UpstreamConnection | None = None
    # perf_counter() at the request's head: the new side's answer time is measured from it;
    # and when that answer was complete.
    started_at = 0.0
    shadow_done_at = 0.0
    # The copy's own span id (in the traceparent it carries), and the request's span ids when
    # its trace is sampled (observe/journal.py).
    span_id = b""
    trace: tuple[bytes, bytes, bytes, bytes] | None = None

    def __init__(
        self,
        runner: ShadowRunner,
        stats: RouteShadowStats,
        backend: str,
        setup: ShadowRoute,
        wire: bytes,
        method: bytes,
        url: bytes,
        *,
        is_request_chunked: bool,
    ) -> None:
        self.runner = runner
        self.stats = stats
        self.route = stats.route
        self.backend = backend
        self.setup = setup
        # The copy's head (its body follows once the client's is in); a pipelined copy keeps
        # its bytes, since it may go out again on another connection.
        self.wire = wire
        self.method = method
        self.url = url
        self.is_request_chunked = is_request_chunked

    def probe(self, backend: str) -> Mirror:
        """This copy's twin: the same request, sent to the primary's backend again."""
        twin = Mirror(
            self.runner,
            self.stats,
            backend,
            self.setup,
            self.wire,
            self.method,
            self.url,
            is_request_chunked=self.is_request_chunked,
        )
        twin.is_noise_probe = True
        return twin

    @property
    def request_line(self) -> str:
        """`METHOD /path` (never the query): what examples and logs show of the request."""
        path = self.url.partition(b"?")[0]
        return self.method.decode("latin-1") + " " + path.decode("latin-1")

    # -- fed by the primary exchange ----------------------------------------------------------

    def add_request_body(self, data: bytes) -> None:
        if self.twin is not None:
            self.twin.add_request_body(data)
        if self.dropped is not None:
            return
        self.request_size += len(data)
        self.request_chunks = self._kept(self.request_chunks, self.request_size, data)

    def request_complete(self) -> None:
        """The client's request is all here: send the copy."""
        if self.twin is not None:
            self.twin.request_complete()
        if self.dropped is not None:
            return
        if self.request_chunks is not None:
            body = b"".join(self.request_chunks)
            self.request_chunks = None
            wire = self.wire
            if self.is_request_chunked:
                # The copy is sent whole, so it is framed by length.
                wire = wire.replace(
                    b"Transfer-Encoding: chunked\r\n", b"Content-Length: %d\r\n" % len(body), 1
                )
            self.wire = wire + body
        elif self.is_request_chunked:
            self.wire = self.wire.replace(
                b"Transfer-Encoding: chunked\r\n", b"Content-Length: 0\r\n", 1
            )
        self.runner.send(self)

    def primary_head(self, status: int, conn: UpstreamConnection) -> None:
        if self.twin is not None:
            self.twin.primary_head(status, conn)
        if self.dropped is None:
            self.primary_status = status
            self.primary_names, self.primary_values = answer_headers(conn, self.setup)

    def primary_body(self, data: bytes) -> None:
        if self.twin is not None:
            self.twin.primary_body(data)
        if self.dropped is not None:
            return
        self.primary_size += len(data)
        self.primary_chunks = self._kept(self.primary_chunks, self.primary_size, data)

    def primary_complete(self) -> None:
        if self.twin is not None:
            self.twin.primary_complete()
        self.is_primary_done = True
        if self.is_shadow_done and not self.is_finished:
            # This runs in the callback that finishes the client's answer: compare later.
            self.is_finished = True
            self.runner.compare_soon(self)

    def primary_failed(self) -> None:
        if self.twin is not None:
            self.twin.primary_failed()
        self.drop(DropReason.PRIMARY_FAILED)

    # -- the shadow channel (pipelined copies) ------------------------------------------------

    def shadow_answer(
        self, status: int, names: list[bytes], values: list[bytes], chunks: list[bytes] | None
    ) -> None:
        """The whole answer, from the shadow channel (which bounds the body)."""
        if self.is_finished:
            return
        self.shadow_status = status
        self.shadow_names = names
        self.shadow_values = values
        self.shadow_chunks = chunks
        self._shadow_done()

    # -- PoolClient (the shadow backend's pool) -----------------------------------------------

    def attach(self, conn: UpstreamConnection) -> None:
        if self.dropped is not None:
            conn.pool.release(conn, is_reusable=True)
            return
        self._conn = conn
        conn.start_request(self, is_head_request=self.method == b"HEAD")
        conn.read_timeout_s = self.setup.settings.timeout_s
        conn.deadline = conn.pool.loop.time() + conn.read_timeout_s
        conn.set_reading(is_paused=False)
        prefix = conn.pool.target.path_prefix
        conn.writelines([with_path_prefix(self.wire, prefix) if prefix else self.wire])
        self.wire = b""

    def fail(self, kind: FailureKind) -> None:
        timeout = kind in (FailureKind.CONNECT_TIMEOUT, FailureKind.POOL_TIMEOUT)
        self.drop(DropReason.SHADOW_TIMEOUT if timeout else DropReason.SHADOW_ERROR)

    # -- ResponseSink (the shadow backend's answer, through the pool) -------------------------

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None:
        if status >= 200 and self.dropped is None:
            self.shadow_status = status
            self.shadow_names, self.shadow_values = answer_headers(conn, self.setup)

    def on_response_body(self, data: bytes) -> None:
        if self.dropped is not None:
            return
        self.shadow_size += len(data)
        self.shadow_chunks = self._kept(self.shadow_chunks, self.shadow_size, data)

    def on_response_complete(self, conn: UpstreamConnection, is_reusable: bool) -> None:
        self._conn = None
        conn.pool.release(conn, is_reusable=is_reusable)
        if not self.is_finished:
            self._shadow_done()

    def on_upgrade(self, conn: UpstreamConnection, tail: bytes) -> None:
        self._conn = None
        conn.pool.take_for_tunnel(conn)
        conn.close()
        self.drop(DropReason.SHADOW_ERROR)

    def on_upstream_lost(self, conn: UpstreamConnection, exc: Exception | None) -> None:
        self._conn = None
        if self.is_shadow_done:
            return
        is_timeout = isinstance(exc, TimeoutError)
        self.drop(DropReason.SHADOW_TIMEOUT if is_timeout else DropReason.SHADOW_ERROR)

    def on_upstream_pause(self, is_paused: bool) -> None:
        """The shadow request is written whole; nothing to pause on the client's side."""

    def flush_client(self) -> None:
        """There is no client on the shadow side."""

    # -- outcome ------------------------------------------------------------------------------

    def _kept(self, chunks: list[bytes] | None, size: int, data: bytes) -> list[bytes] | None:
        """`chunks` with `data` added, or None once `size` passed the bound (the copy dropped)."""
        if size > self.setup.settings.max_body_bytes:
            self.drop(DropReason.BODY_TOO_LARGE)
            return None
        if chunks is None:
            return [data]
        chunks.append(data)
        return chunks

    def _shadow_done(self) -> None:
        self.is_shadow_done = True
        done = perf_counter()
        self.shadow_done_at = done
        metrics = self.runner.metrics
        if metrics is not None and not self.is_noise_probe:
            metrics.shadow(self.route, done - self.started_at)
        traffic = self.runner.traffic
        if traffic is not None and not self.is_noise_probe:
            traffic.count_shadow(self.route, self.shadow_status, done - self.started_at)
        if self.is_primary_done:
            # Not the client's callback: an identical pair is counted right here.
            self.is_finished = True
            self.runner.settle(self)

    def drop(self, reason: DropReason) -> None:
        if self.dropped is not None or self.is_finished:
            return
        self.dropped = reason
        self.is_finished = True
        self.is_cancelled = True
        self.request_chunks = self.primary_chunks = self.shadow_chunks = None
        conn = self._conn
        if conn is not None:
            self._conn = None
            conn.sink = None
            conn.abort()
        self.runner.finish(self, reason)

    def is_identical(self) -> bool:
        """Same status, same compared headers byte for byte, same body bytes: equal under any
        rules, since rules only ever make more answers equal. Most answers are, so this skips
        the diff engine."""
        if self.primary_status != self.shadow_status:
            return False
        a, b = self.primary_chunks, self.shadow_chunks
        if a != b and b"".join(a or ()) != b"".join(b or ()):
            return False
        pick = self.setup.picker.pick
        return pick(self.primary_names, self.primary_values) == pick(
            self.shadow_names, self.shadow_values
        )

    def samples(self) -> tuple[ResponseSample, ResponseSample]:
        pairs = self.setup.picker.pairs
        return (
            ResponseSample(
                self.primary_status,
                _decoded(pairs(self.primary_names, self.primary_values)),
                b"".join(self.primary_chunks or ()),
            ),
            ResponseSample(
                self.shadow_status,
                _decoded(pairs(self.shadow_names, self.shadow_values)),
                b"".join(self.shadow_chunks or ()),
            ),
        )


def answer_headers(conn: UpstreamConnection, setup: ShadowRoute) -> tuple[list[bytes], list[bytes]]:
    """The answer's header names and values, plus any compared header the connection keeps
    aside for framing (Content-Length, ...), which a route rarely compares.

    Called before the exchange adds its own framing headers to `head_parts`."""
    parts = conn.head_parts
    names, values = parts[1::4], parts[3::4]
    if setup.kept_special:
        for kind, name, value in conn.special_headers:
            if kind not in (R_CONNECTION, R_UPGRADE) and name.lower() in setup.kept_special:
                names.append(name)
                values.append(value)
    return names, values


def _decoded(pairs: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in pairs)


def _compared_size(sample: ResponseSample, max_body_bytes: int) -> int:
    """What comparing the body may cost, in bytes: a compressed body is inflated first."""
    for name, value in sample.headers:
        if name.lower() == "content-encoding" and value.strip().lower() not in ("", "identity"):
            return max_body_bytes
    return len(sample.body)


class ShadowRunner:
    """One worker's shadowing: its pools, its in-flight bound, its results."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counters: Counters) -> None:
        self.loop = loop
        self.counters = counters
        self.in_flight = 0
        self.results = ShadowResults(clock=time.time)
        self._to_compare: list[Mirror] = []
        # Noise probes' token buckets by route: (tokens, when last counted).
        self._probe_budget: dict[str, tuple[float, float]] = {}
        # Set by the worker for each snapshot (proxy.upstream_pool.reconcile_pools).
        self.pools: dict[str, UpstreamPool] = {}
        # Pipelined connections for GET/OPTIONS copies, per backend (see channel.py).
        self.channels: dict[str, ShadowChannel] = {}
        # Compares the large pairs; its process starts with the first of them.
        self.helper = DiffHelper(loop)
        # The worker's Prometheus series (None when `metrics.enabled` is off), and its access
        # log and tracer (None when both are off).
        self.metrics: WorkerMetrics | None = None
        self.journal: RequestJournal | None = None
        # The worker's traffic counts, which keep the copies' answers for the route series.
        self.traffic: TrafficCounter | None = None

    def __repr__(self) -> str:
        return f"<ShadowRunner {self.in_flight} in flight, {len(self.pools)} pools>"

    def sweep(self, now: float) -> None:
        for pool in self.pools.values():
            pool.sweep(now)
        for channel in self.channels.values():
            channel.sweep(now)

    def report(self, *, as_json: bool = False) -> None:
        """Log each shadowed route's figures (periodically, and as JSON when the worker stops):
        counts and paths, never examples (they hold response values; the store keeps them)."""
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
        self.helper.close()

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
        stats = self.results.routes.get(route) or self.results.route(route)
        if method not in _MIRRORED_METHODS and not decision.mirrors_unsafe:
            self._count_drop(stats, DropReason.NOT_MIRRORED_UNSAFE)
            return None
        limit = snapshot.limits.max_shadow_in_flight
        if self.in_flight >= limit:
            self._count_drop(stats, DropReason.QUEUE_FULL)
            return None
        self.in_flight += 1
        stats.mirrored += 1
        # Same trace, a span of its own: the copy shows up beside the primary in a trace view.
        span = b"%016x" % random.getrandbits(64)
        shadow_traceparent = traceparent[:36] + span + traceparent[52:]
        wire = head[:-2].replace(traceparent, shadow_traceparent, 1) + _SHADOW_HEADER_END
        assert decision.shadow_backend is not None  # set for every route in shadow_routes
        mirror = Mirror(
            self,
            stats,
            decision.shadow_backend,
            setup,
            wire,
            method,
            url,
            is_request_chunked=is_request_chunked,
        )
        mirror.started_at = perf_counter()
        mirror.span_id = span
        settings = setup.settings
        if (
            settings.noise_sample_rate
            and method in _MIRRORED_METHODS
            and self.in_flight < limit
            and random.random() < settings.noise_sample_rate
            and self._may_probe(route, settings.noise_max_per_s)
        ):
            self.in_flight += 1
            mirror.twin = mirror.probe(decision.backend)
        return mirror

    def _may_probe(self, route: str, per_s: float) -> bool:
        """A token bucket per route: at most `per_s` noise probes a second, in bursts of as
        many (at least one)."""
        now = self.loop.time()
        capacity = max(per_s, 1.0)
        tokens, then = self._probe_budget.get(route, (capacity, now))
        tokens = min(capacity, tokens + (now - then) * per_s)
        if tokens < 1.0:
            self._probe_budget[route] = (tokens, now)
            return False
        self._probe_budget[route] = (tokens - 1.0, now)
        return True

    def send(self, mirror: Mirror) -> None:
        channel = self.channels.get(mirror.backend)
        # A GET or OPTIONS without a body may be pipelined (see channel.py).
        if channel is not None and mirror.method in _PIPELINED_METHODS and not mirror.request_size:
            channel.send(mirror)
            return
        pool = self.pools.get(mirror.backend)
        if pool is None:
            mirror.drop(DropReason.SHADOW_ERROR)
            return
        pool.acquire(mirror)

    def finish(self, mirror: Mirror, reason: DropReason | None) -> None:
        """Called exactly once per Mirror that `begin` made (copies and noise probes) that
        ends without a comparison."""
        self.in_flight -= 1
        if reason is not None and not mirror.is_noise_probe:
            self._count_drop(mirror.stats, reason)
            self._traced(mirror, str(reason), 0)

    def _traced(self, mirror: Mirror, verdict: str, differences: int) -> None:
        journal = self.journal
        if journal is not None and mirror.trace is not None and not mirror.is_noise_probe:
            journal.shadow_done(mirror, verdict, differences)

    def _count_drop(self, stats: RouteShadowStats, reason: DropReason) -> None:
        stats.dropped[reason] += 1
        self.counters.inc("shadow_dropped_total", stats.route, reason)

    def settle(self, mirror: Mirror) -> None:
        """Both answers are in: an identical pair is counted now, others are diffed soon."""
        if not mirror.is_identical():
            self.compare_soon(mirror)
        elif mirror.is_noise_probe:
            self._count_identical(mirror)
        else:
            # The common case, inline: most copies end here.
            self.in_flight -= 1
            stats = mirror.stats
            stats.compared += 1
            stats.equal += 1
            if mirror.trace is not None:
                self._traced(mirror, "equal", 0)

    def _count_identical(self, mirror: Mirror) -> None:
        self.in_flight -= 1
        if mirror.is_noise_probe:
            self.results.record_noise(mirror.route, _IDENTICAL)
        else:
            stats = mirror.stats
            stats.compared += 1
            stats.equal += 1
            self._traced(mirror, "equal", 0)

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
        if mirror.is_identical():
            self._count_identical(mirror)
            return
        primary, shadow = mirror.samples()
        setup = mirror.setup
        max_body_bytes = setup.settings.max_body_bytes
        off_loop_bytes = setup.settings.diff_off_loop_bytes
        if off_loop_bytes is None:
            self.in_flight -= 1
            self._record(
                mirror,
                compare_responses(primary, shadow, setup.rules, max_decoded_bytes=max_body_bytes),
            )
            return
        size = _compared_size(primary, max_body_bytes) + _compared_size(shadow, max_body_bytes)
        if size <= off_loop_bytes:
            max_nodes = setup.rules.max_nodes
            comparison = compare_responses(
                primary,
                shadow,
                setup.rules,
                max_decoded_bytes=max_body_bytes,
                max_nodes=min(max_nodes, MAX_NODES_ON_LOOP),
            )
            if comparison.kind is not BodyKind.OVER_BUDGET or max_nodes <= MAX_NODES_ON_LOOP:
                self.in_flight -= 1
                self._record(mirror, comparison)
                return
        refused = self.helper.submit(
            primary,
            shadow,
            setup.rules,
            max_body_bytes,
            lambda comparison: self._compared_off_loop(mirror, comparison),
        )
        if refused is not None:
            self.in_flight -= 1
            if not mirror.is_noise_probe:
                self._count_drop(mirror.stats, refused)
        else:
            self.counters.inc("shadow_diffs_off_loop_total", mirror.route)

    def _compared_off_loop(self, mirror: Mirror, comparison: Comparison | None) -> None:
        """Called once per pair the helper accepted: with its comparison, or None if it failed."""
        self.in_flight -= 1
        if comparison is None:
            if not mirror.is_noise_probe:
                self._count_drop(mirror.stats, DropReason.DIFF_FAILED)
            return
        self._record(mirror, comparison)

    def _record(self, mirror: Mirror, comparison: Comparison) -> None:
        if not comparison.body_compared:
            # Captures are never truncated: only an inflated body past the bound, or a walk
            # past its budget, gets here.
            if not mirror.is_noise_probe:
                reason = (
                    DropReason.DIFF_BUDGET
                    if comparison.kind is BodyKind.OVER_BUDGET
                    else DropReason.BODY_TOO_LARGE
                )
                self._count_drop(mirror.stats, reason)
            return
        if mirror.is_noise_probe:
            for path in self.results.record_noise(mirror.route, comparison):
                log.info("shadow %s: legacy differs from itself at %s", mirror.route, path)
            return
        # What is kept of a difference, and the request line beside it, is redacted first: the
        # results go to the store, the admin API and the log.
        request_line = ""
        if not comparison.is_equal:
            redactor = mirror.setup.redactor
            comparison = dataclasses.replace(
                comparison, differences=tuple(map(redactor.difference, comparison.differences))
            )
            request_line = redactor.request_line(mirror.request_line)
        for path in self.results.record(mirror.route, request_line, comparison):
            log.info("shadow %s: new difference at %s (%s)", mirror.route, path, request_line)
        if mirror.trace is not None:
            verdict = "equal" if comparison.is_equal else "different"
            self._traced(mirror, verdict, len(comparison.differences))
