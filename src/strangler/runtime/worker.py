"""One worker: an event loop serving client connections on its listening sockets (plain HTTP,
HTTPS, or both).

Rules:
- The snapshot is swapped atomically on reload (SIGHUP, or a changed file with --watch);
  a bad new file is refused, logged, and the old snapshot stays in force.
- Deadlines (slowloris header timeout, idle keep-alive, upstream read timeout, pool waits and
  idle expiry) are checked by one sweeper every 100 ms instead of a timer per request.
- The HTTPS listener serves one SSLContext for the worker's life; a reload loads the
  certificate files again into it, so new handshakes get the new certificate while open
  connections keep theirs.
- SIGTERM/SIGINT drain: stop accepting, close idle connections, let in-flight exchanges finish
  up to `drain_timeout_s`, then abort what is left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from strangler import __version__, native
from strangler.config import Config, load_config
from strangler.control.effective import apply_overrides, override_conflicts
from strangler.control.state import Drill, Override, SharedStore, Store
from strangler.control.store import TrafficDelta
from strangler.control.watcher import StateWatcher
from strangler.errors import ConfigError
from strangler.identity.bridge import IdentityBridge
from strangler.identity.tokens import KeyRingError, KeyRingFile
from strangler.observe.counters import Counters
from strangler.observe.gateway_errors import GatewayErrorLog
from strangler.observe.metrics import WorkerMetrics
from strangler.observe.slo.counter import FLUSH_INTERVAL_S as SLO_FLUSH_INTERVAL_S
from strangler.observe.slo.counter import SloCounter
from strangler.observe.traffic import TrafficCounter
from strangler.observe.windows import WindowRecorder
from strangler.proxy.balance import BalancedPool
from strangler.proxy.redirect import RedirectConnection
from strangler.proxy.server import ClientConnection
from strangler.proxy.tasks import TaskSet
from strangler.proxy.upstream_pool import UpstreamPool, reconcile_pools
from strangler.runtime.data_gauges import DataGauges
from strangler.runtime.health_board import HealthBoard
from strangler.runtime.snapshot import BackendTarget, Snapshot
from strangler.runtime.snapshot_build import build_snapshot, source_mtime
from strangler.runtime.tls_contexts import reload_server_context, server_context
from strangler.shadow import ShadowRunner
from strangler.shadow.channel import reconcile_channels
from strangler.shadow.publisher import ResultsPublisher

if TYPE_CHECKING:
    from strangler.control.analyzer import AnalyzerThread
    from strangler.control.slo_monitor import SloMonitorThread
    from strangler.control.state import VerdictRecord
    from strangler.observe.exposition import MetricsHub
    from strangler.observe.journal import RequestJournal
    from strangler.observe.metrics_pipe import PipeWriter
    from strangler.runtime.webhook_relay import WebhookRelay

log = logging.getLogger("strangler.worker")

SWEEP_INTERVAL_S = 0.1
# How often a forked worker publishes its balanced backends' health to the supervisor.
HEALTH_REPORT_INTERVAL_S = 0.25
WATCH_INTERVAL_S = 1.0
SHADOW_REPORT_INTERVAL_S = 60.0
# Canary windows go to the store every second: the analyzer judges an interval ~2 s after it.
WINDOW_FLUSH_INTERVAL_S = 1.0
# Metrics go to the supervisor twice a second: a scrape shows a request within a second.
METRICS_PUBLISH_INTERVAL_S = 0.5
# How long a starting worker waits for the store's overrides before serving from the YAML.
FIRST_STATE_WAIT_S = 6.0
GIL_SWITCH_INTERVAL_S = 0.0005


class Worker:
    """Owns the loop-side state of one gateway process."""

    def __init__(
        self,
        snapshot: Snapshot,
        loop: asyncio.AbstractEventLoop,
        *,
        watch: bool = False,
        runs_analyzer: bool = False,
        on_degraded: Callable[[bool], object] | None = None,
        supervisor_pid: int | None = None,
        worker_index: int = 0,
        metrics_writer: PipeWriter | None = None,
        health_board: HealthBoard | None = None,
    ) -> None:
        self.snapshot = snapshot
        self.worker_index = worker_index
        # The YAML as loaded; the snapshot in force is it with the store's overrides on top.
        self.base: Config = snapshot.config
        self.overrides: dict[str, Override] = {}
        # Runtime faults by rollout unit; each expires by itself (the snapshot's FaultPlan
        # carries its expiry), so none is ever removed here for being old.
        self.drills: dict[str, Drill] = {}
        self.state_version = 0
        self._runs_analyzer = runs_analyzer
        self._on_degraded = on_degraded
        # A forked worker whose supervisor is gone (killed with SIGKILL, so it could not tell
        # anyone) drains and exits instead of serving on as an orphan nobody will stop.
        self._supervisor_pid = supervisor_pid
        self._was_degraded = False
        self.loop = loop
        self.counters = Counters()
        self.tasks = TaskSet(loop)
        self.connections: set[ClientConnection] = set()
        # Open connections by client address, for limits.max_connections_per_client (untrusted
        # peers only).
        self.connections_by_peer: dict[bytes, int] = {}
        self.pools: dict[str, UpstreamPool] = {}
        # The HTTPS listener's context and port, once serve() opened it.
        self.tls_context: ssl.SSLContext | None = None
        self.https_port = 0
        self.is_draining = False
        self._watch = watch
        self._mtime = source_mtime(snapshot.source)
        self._next_watch = 0.0
        self._next_shadow_report = loop.time() + SHADOW_REPORT_INTERVAL_S
        self._stop: asyncio.Future[None] = loop.create_future()
        self._sweeper: asyncio.TimerHandle | None = None
        self.shadow = ShadowRunner(loop, self.counters)
        # Prometheus series of the request path; whether they are kept is fixed at start.
        self.metrics = WorkerMetrics() if snapshot.config.metrics.enabled else None
        self.shadow.metrics = self.metrics
        # Forked workers hand their metrics to the supervisor through a pipe; a lone worker
        # serves them itself, from its own hub (filled at each scrape: refresh_metrics).
        self._metrics_writer = metrics_writer
        # Forked workers publish their balanced backends' health for the supervisor's admin.
        self._health_board = health_board
        self._next_health_report = 0.0
        self.metrics_hub: MetricsHub | None = None
        if self.metrics is not None and metrics_writer is None:
            from strangler.observe.exposition import MetricsHub

            self.metrics_hub = MetricsHub(version=__version__, compiled=native.is_compiled())
        self._metrics_sent: dict[tuple[str, ...], float] = {}
        self._gauges_sent: list[tuple[tuple[str, ...], float]] = []
        self._route_gauges: tuple[int, list[tuple[tuple[str, ...], float]]] = (-1, [])
        self._next_metrics = loop.time() + METRICS_PUBLISH_INTERVAL_S
        # The access log and the tracer (fixed at start, like the metrics).
        self.journal = make_journal(snapshot.config, snapshot.source)
        self.shadow.journal = self.journal
        self.traffic = TrafficCounter(time.time())
        self.shadow.traffic = self.traffic
        self.gateway_errors = GatewayErrorLog(loop.time)
        self.windows = WindowRecorder(time.time())
        self.slos = SloCounter(time.time())
        self.new_backend = snapshot.config.new_side_backend
        store = snapshot.config.store
        source = snapshot.source

        def open_store() -> Store:
            # Imported here, on the first opener's thread: SQLAlchemy costs ~25 MiB.
            from strangler.control.stores import open_store as open_configured_store

            return open_configured_store(store, source)

        # One store for the flush, the state watcher and the analyzer, closed at the end of
        # the drain once all three have stopped.
        self._store = SharedStore(open_store)
        self.publisher = ResultsPublisher(
            self._store.get,
            loop,
            self.counters,
            retention_s=store.retention_days * 86_400,
            max_paths_per_route=store.max_paths_per_route,
            on_reviews=self._take_reviews,
        )
        self._next_publish = loop.time() + store.flush_interval_s
        self._next_traffic_publish = loop.time() + store.traffic_flush_interval_s
        self._next_window_publish = loop.time() + WINDOW_FLUSH_INTERVAL_S
        self._next_slo_publish = loop.time() + SLO_FLUSH_INTERVAL_S
        self.watcher = StateWatcher(
            self._store.get, self._on_state, listen_url=store.url, closes_store=False
        )
        self.data_gauges = DataGauges(self._store.get, loop)
        self._analyzer: AnalyzerThread | None = None
        self._relay: WebhookRelay | None = None
        self._slo_monitor: SloMonitorThread | None = None
        self._apply_pools(snapshot)
        # The Rails bridge (with `rails:`): its key ring file is opened once per path.
        self._key_rings: dict[Path, KeyRingFile] = {}
        self.bridge: IdentityBridge | None = None
        self.bridge_outcomes: dict[str, int] = {}
        # Identity tokens sent by the bridges of earlier snapshots.
        self._tokens_before = 0
        self.stripped_headers: frozenset[bytes] = frozenset()
        self._apply_bridge(snapshot)

    def _reopen_logs(self) -> None:
        if self.journal is not None:
            self.journal.reopen()

    def __repr__(self) -> str:
        return f"<Worker pid={os.getpid()} v{self.snapshot.version} conns={len(self.connections)}>"

    async def serve(
        self,
        sock: socket.socket | None,
        on_ready: Callable[[], None],
        *,
        tls_sock: socket.socket | None = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT, then drain. `sock` is the plain listener (None: TLS
        only), `tls_sock` the HTTPS one (None: `tls:` is not configured)."""
        servers: list[asyncio.AbstractServer] = []
        if sock is not None:
            servers.append(await self.loop.create_server(self._plain_connection, sock=sock))
        server_tls = self.snapshot.server_tls
        if tls_sock is not None and server_tls is not None:
            self.tls_context = server_context(server_tls)
            self.https_port = int(tls_sock.getsockname()[1])
            servers.append(
                await self.loop.create_server(
                    lambda: ClientConnection(self, is_tls=True),
                    sock=tls_sock,
                    ssl=self.tls_context,
                    # A handshake that never finishes is a slowloris too.
                    ssl_handshake_timeout=self.snapshot.limits.header_timeout_s,
                )
            )
        # The store flush runs SQLAlchemy on a thread every few seconds; with CPython's default
        # 5 ms switch interval the event loop could wait that long for the GIL, which showed in
        # the shadow benchmark's 8-connection p99. 0.5 ms bounds the wait; it costs nothing
        # while the loop is the only runnable thread.
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self.stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)
        # logrotate's postrotate, as with nginx: the access log is opened again. Without one
        # the signal is ignored, never the default action (which ends the process).
        self.loop.add_signal_handler(signal.SIGUSR1, self._reopen_logs)
        if self.journal is not None:
            self.journal.start()
        self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)
        self.watcher.start()
        # The overrides in force (a rollback made before this worker started) apply before the
        # first request; a store that does not answer leaves the YAML in force, said once.
        await self.loop.run_in_executor(None, self.watcher.first_read.wait, FIRST_STATE_WAIT_S)
        await asyncio.sleep(0)
        # Said before the log line and readiness, not at the next sweep: /readyz must not
        # answer ready while this worker serves the YAML alone.
        self._report_degraded()
        if self.watcher.version < 0:
            log.warning("starting from the YAML file alone: %s", self.watcher.degraded)
        # The package checked its build's date at import; no second look at the files.
        # Pure Python (no build, or a stale one) serves correctly but slower: a warning either way.
        log.log(logging.INFO if native.is_compiled() else logging.WARNING, native.describe())
        if self._runs_analyzer:
            from strangler.control.analyzer import AnalyzerThread

            if self.base.webhooks:
                from strangler.observe.webhooks import WebhookDispatcher
                from strangler.runtime.webhook_relay import WebhookRelay, hooks_of

                # Fixed at start, like the metrics: a reload does not change where events go.
                dispatcher = WebhookDispatcher(
                    hooks_of(self.base),
                    on_outcome=lambda event, result: self.counters.inc(
                        "webhook_deliveries_total", event, result
                    ),
                )
                self._relay = WebhookRelay(self._store.get, dispatcher)
                self._relay.start()
            self._analyzer = AnalyzerThread(
                self._store.get,
                lambda: self.base,
                closes_store=False,
                on_verdict=self._count_verdict,
            )
            self._analyzer.start()
            from strangler.control.slo_monitor import SloMonitor, SloMonitorThread

            relay = self._relay
            # Started whatever the config says: a reload may add SLOs, and without any an
            # evaluation is one attribute read every 10 s.
            self._slo_monitor = SloMonitorThread(
                SloMonitor(
                    self._store.get,
                    lambda: self.base,
                    on_event=None if relay is None else relay.dispatcher.emit,
                )
            )
            self._slo_monitor.start()
        on_ready()
        try:
            await self._stop
        finally:
            await self._drain(servers)

    def _count_verdict(self, record: VerdictRecord) -> None:
        """Analyzer thread: one verdict stored (a dict update under the GIL)."""
        self.counters.inc("rollout_verdicts_total", record.unit, record.outcome)
        if self._relay is not None:
            self._relay.on_verdict(record)

    # -- metrics ------------------------------------------------------------------------------

    def metrics_message(self) -> dict[str, object]:
        """What this worker measured since the last message (see observe/exposition.py):
        request-path deltas, counters that changed (their current values), and the gauges
        when any changed."""
        message: dict[str, object] = {"pid": os.getpid(), "worker": str(self.worker_index)}
        if self.metrics is not None:
            requests, upstream, shadow = self.metrics.take_delta()
            # Labels are plain strings already (Decision.route_label/stage_label).
            message["requests"] = requests
            message["upstream"] = upstream
            message["shadow"] = shadow
        totals = self._totals()
        sent = self._metrics_sent
        changed = [(key, value) for key, value in totals.items() if sent.get(key) != value]
        sent.update(changed)
        message["totals"] = changed
        gauges = self._gauges()
        if gauges != self._gauges_sent:
            self._gauges_sent = gauges
            message["gauges"] = gauges
        return message

    def _totals(self) -> dict[tuple[str, ...], float]:
        """Every counter of this worker by (family, *labels), as Prometheus names them."""
        # Some labels are StrEnum members (drop reasons, CSRF refusals): plain strings go out.
        totals: dict[tuple[str, ...], float] = {
            tuple(map(_plain, key)): float(value) for key, value in self.counters.items()
        }
        for stats in self.shadow.results.routes.values():
            route = stats.route
            for verdict, count in (
                ("equal", stats.equal),
                ("equal_but_noise", stats.equal_but_noise),
                ("different", stats.different),
            ):
                if count:
                    totals[("shadow_comparisons_total", route, verdict)] = float(count)
        if self.journal is not None:
            totals.update(self.journal.counts())
        if self.watcher.failures:
            totals[("store_failures_total", "watch")] = float(self.watcher.failures)
        for outcome, count in self.bridge_outcomes.items():
            totals[("identity_sessions_total", outcome)] = float(count)
        if self.bridge is not None or self.tokens_issued:
            totals[("identity_tokens_issued_total",)] = float(self.tokens_issued)
        return totals

    @property
    def tokens_issued(self) -> int:
        return self._tokens_before + (self.bridge.tokens_issued if self.bridge is not None else 0)

    def _gauges(self) -> list[tuple[tuple[str, ...], float]]:
        idle = sum(1 for conn in self.connections if conn.current is None)
        gauges: list[tuple[tuple[str, ...], float]] = [
            (("connections", "open"), float(len(self.connections))),
            (("connections", "idle"), float(idle)),
            (("shadow_in_flight",), float(self.shadow.in_flight)),
            (("state_version",), float(self.state_version)),
        ]
        for name, pool in self.pools.items():
            if isinstance(pool, BalancedPool):
                gauges.extend(_server_gauges(name, pool, self.loop.time()))
                continue
            gauges.append((("upstream_connections", name, "busy"), float(len(pool.busy))))
            gauges.append((("upstream_connections", name, "idle"), float(len(pool.idle))))
        version, routes = self._route_gauges
        if version != self.snapshot.version:
            routes = []
            for route in self.snapshot.config.routes:
                routes.append((("route_stage", route.name, _plain(route.stage)), 1.0))
                if route.stage == "canary":
                    routes.append((("canary_weight", route.name), float(route.canary.weight)))
            self._route_gauges = (self.snapshot.version, routes)
        gauges.extend(routes)
        gauges.extend(self.data_gauges.gauges)
        return gauges

    def refresh_metrics(self) -> None:
        """Before a scrape served by this worker itself (one worker, no supervisor)."""
        if self.metrics_hub is not None:
            self.metrics_hub.add(str(self.worker_index), self.metrics_message())

    def _publish_metrics(self) -> None:
        writer = self._metrics_writer
        if writer is not None and writer.is_ready:
            try:
                writer.send(self.metrics_message())
            except ValueError:
                # A value marshal refuses is a bug; counters and gauges go again next time.
                log.exception("metrics message not sent")
                self._metrics_sent, self._gauges_sent = {}, []

    def _take_reviews(self, reviewed: dict[str, frozenset[str]]) -> None:
        self.shadow.results.reviewed = reviewed

    def stop(self) -> None:
        if not self._stop.done():
            self._stop.set_result(None)

    @property
    def degraded(self) -> str | None:
        """Why this worker serves a state that may be stale, or None."""
        return self.watcher.degraded

    def _report_degraded(self) -> None:
        is_degraded = self.watcher.degraded is not None
        if is_degraded != self._was_degraded:
            self._was_degraded = is_degraded
            if self._on_degraded is not None:
                self._on_degraded(is_degraded)

    def _on_state(
        self, overrides: dict[str, Override], drills: dict[str, Drill], version: int
    ) -> None:
        """Watcher thread: a new state version. The snapshot is built here, off the loop."""
        base = self.base
        if not overrides and not self.overrides and not drills and not self.drills:
            # Nothing on top of the YAML before or after: the snapshot in force stays.
            self.loop.call_soon_threadsafe(self._adopt, base, overrides, drills, version, None)
            return
        snapshot: Snapshot | None = None
        try:
            snapshot = self._build(base, overrides, drills, tls_from=self.snapshot)
        except ConfigError as exc:
            log.error("state version %d refused, keeping the one in force: %s", version, exc)
        self.loop.call_soon_threadsafe(self._adopt, base, overrides, drills, version, snapshot)

    def _adopt(
        self,
        base: Config,
        overrides: dict[str, Override],
        drills: dict[str, Drill],
        version: int,
        snapshot: Snapshot | None,
    ) -> None:
        self.overrides, self.drills, self.state_version = overrides, drills, version
        if base is not self.base:
            # A reload came in between: build again on the config now in force.
            self.reload_from(self.base)
            return
        if snapshot is not None and self._swap(snapshot, f"state version {version}"):
            self.counters.inc("state_changes_total", "applied")

    def reload(self) -> bool:
        """Load the config file again; on success new requests use the new snapshot."""
        path = self.snapshot.source
        try:
            base = load_config(path)
        except ConfigError as exc:
            self.counters.inc("config_reloads_total", "refused")
            log.error("config reload refused, keeping version %d: %s", self.snapshot.version, exc)
            return False
        before = self.base
        if not self.reload_from(base):
            return False
        self._mtime = source_mtime(path)
        self._reload_certificate()
        self.counters.inc("config_reloads_total", "applied")
        # Every worker reloads on its own SIGHUP; one of them says what the file can't change.
        if self.worker_index == 0:
            for line in override_conflicts(before, base, self.overrides):
                log.warning("%s", line)
        return True

    def reload_from(self, base: Config) -> bool:
        """Build and swap in the snapshot of `base` with the overrides in force."""
        try:
            snapshot = self._build(base, self.overrides, self.drills)
        except ConfigError as exc:
            self.counters.inc("config_reloads_total", "refused")
            log.error("config reload refused, keeping version %d: %s", self.snapshot.version, exc)
            return False
        if not self._swap(snapshot, "config reloaded"):
            self.counters.inc("config_reloads_total", "refused")
            return False
        self.base = base
        return True

    def _build(
        self,
        base: Config,
        overrides: dict[str, Override],
        drills: dict[str, Drill],
        *,
        tls_from: Snapshot | None = None,
    ) -> Snapshot:
        """The snapshot of `base` with `overrides` and `drills` on top (numbered when it is
        swapped in); `tls_from` as in build_snapshot."""
        return build_snapshot(
            apply_overrides(base, overrides),
            source=self.snapshot.source,
            version=0,
            drills=drills,
            tls_from=tls_from,
        )

    def _swap(self, snapshot: Snapshot, why: str) -> bool:
        """Put `snapshot` in force for new requests (numbered after the one in force)."""
        snapshot = dataclasses.replace(snapshot, version=self.snapshot.version + 1)
        try:
            self._apply_bridge(snapshot)
        except KeyRingError as exc:
            log.error("%s refused, keeping version %d: %s", why, self.snapshot.version, exc)
            return False
        self._apply_pools(snapshot)
        self.snapshot = snapshot
        self.new_backend = snapshot.config.new_side_backend
        log.info("%s: version %d, %d routes", why, snapshot.version, len(snapshot.table))
        return True

    def _apply_bridge(self, snapshot: Snapshot) -> None:
        """Build the Rails bridge for `snapshot`; raises KeyRingError if its keys are unusable
        (requests to the new backend would go without identity: refuse instead)."""
        setup = snapshot.bridge
        if setup is None:
            if self.bridge is not None:
                self._tokens_before += self.bridge.tokens_issued
            self.bridge, self.stripped_headers = None, frozenset()
            return
        ring = self._key_rings.get(setup.keys_path)
        if ring is None:
            ring = KeyRingFile(setup.keys_path, max_token_ttl_s=setup.identity.ttl_s)
            self._key_rings[setup.keys_path] = ring
        try:
            bridge = IdentityBridge.from_setup(setup, ring)
        except ValueError as exc:
            raise KeyRingError(f"{setup.keys_path}: {exc}") from exc
        # Session outcomes (forged, tampered, expired cookies) count for the worker's life: a
        # new snapshot must not wipe the evidence of a forgery attempt.
        bridge.outcomes = self.bridge_outcomes
        if self.bridge is not None:
            self._tokens_before += self.bridge.tokens_issued
        self.bridge, self.stripped_headers = bridge, bridge.stripped_headers

    def _apply_pools(self, snapshot: Snapshot) -> None:
        def make(target: BackendTarget) -> UpstreamPool:
            if target.balance is None:
                return UpstreamPool(target, self.loop, self.tasks, self.counters)
            # Every worker checks the servers; worker 0 alone logs what the checks find.
            pool = BalancedPool(
                target, self.loop, self.tasks, self.counters, logs_checks=self.worker_index == 0
            )
            pool.start()
            return pool

        def make_shadow(target: BackendTarget) -> UpstreamPool:
            leader = self.pools.get(target.name)
            if target.balance is None or not isinstance(leader, BalancedPool):
                return UpstreamPool(target, self.loop, self.tasks, self.counters)
            return BalancedPool(target, self.loop, self.tasks, self.counters, leader=leader)

        self.pools = reconcile_pools(self.pools, snapshot.backends, make)
        # Shadow traffic has pools of its own: a slow new backend never holds client sockets.
        self.shadow.pools = reconcile_pools(self.shadow.pools, snapshot.backends, make_shadow)
        # A balanced backend's copies take its shadow balancer, not a pipelined channel to
        # one address.
        plain = {name: t for name, t in snapshot.backends.items() if t.balance is None}
        self.shadow.channels = reconcile_channels(
            self.shadow.channels, plain, self.loop, self.tasks
        )

    def backend_health(self) -> dict[str, dict[str, object]]:
        """Each balanced backend's servers as this worker sees them (/readyz, status)."""
        return {
            name: pool.report()
            for name, pool in self.pools.items()
            if isinstance(pool, BalancedPool)
        }

    def _sweep(self) -> None:
        now = self.loop.time()
        try:
            for conn in [c for c in self.connections if c.deadline and c.deadline <= now]:
                conn.on_deadline(now)
            for pool in self.pools.values():
                pool.sweep(now)
            self.shadow.sweep(now)
            if self._supervisor_pid is not None and os.getppid() != self._supervisor_pid:
                log.error("the supervisor (pid %d) is gone: draining", self._supervisor_pid)
                self._supervisor_pid = None
                self.stop()
            self._report_degraded()
            if self._health_board is not None and now >= self._next_health_report:
                self._next_health_report = now + HEALTH_REPORT_INTERVAL_S
                health = self.backend_health()
                if health:
                    self._health_board.write(self.worker_index, health)
            wall = time.time()
            self.traffic.tick(wall)
            self.windows.tick(wall)
            self.slos.tick(wall)
            if not self.publisher.is_busy:
                self._publish(now)
            if not self.is_draining:  # the store closes at the end of the drain
                self.data_gauges.tick(now, self.snapshot.config)
            if now >= self._next_metrics:
                self._next_metrics = now + METRICS_PUBLISH_INTERVAL_S
                self._publish_metrics()
            if now >= self._next_shadow_report:
                self._next_shadow_report = now + SHADOW_REPORT_INTERVAL_S
                self.shadow.report()
            if self._watch and now >= self._next_watch:
                self._next_watch = now + WATCH_INTERVAL_S
                if source_mtime(self.snapshot.source) != self._mtime:
                    self._mtime = source_mtime(self.snapshot.source)
                    self.reload()
        finally:
            self._sweeper = self.loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _publish(self, now: float) -> None:
        """Start a store flush when something is due: canary windows every second, SLO counts
        every SLO_FLUSH_INTERVAL_S, shadow
        results every `store.flush_interval_s`, traffic counts every
        `store.traffic_flush_interval_s`."""
        is_window_due = self.windows.has_closed and now >= self._next_window_publish
        is_shadow_due = now >= self._next_publish and bool(self.snapshot.shadow_routes)
        # Traffic alone waits longer: `progress` reads whole minutes, and each flush holds the
        # GIL for a few ms of SQLAlchemy, which shows in the p99.
        is_traffic_due = now >= self._next_traffic_publish
        is_slo_due = self.slos.has_closed and now >= self._next_slo_publish
        if not (is_window_due or is_shadow_due or is_traffic_due or is_slo_due):
            return
        if is_window_due:
            self._next_window_publish = now + WINDOW_FLUSH_INTERVAL_S
        if is_slo_due:
            self._next_slo_publish = now + SLO_FLUSH_INTERVAL_S
        if now >= self._next_publish:
            self._next_publish = now + self.snapshot.config.store.flush_interval_s
        traffic: tuple[TrafficDelta, ...] = ()
        if is_traffic_due:
            self._next_traffic_publish = now + self.snapshot.config.store.traffic_flush_interval_s
            traffic = self.traffic.take_deltas()
        windows = self.windows.take_deltas() if is_window_due else []
        slo_counts = self.slos.take_deltas() if is_slo_due else []
        self.publisher.publish(self.shadow.results.take_deltas(), traffic, windows, slo_counts)

    def _plain_connection(self) -> asyncio.Protocol:
        # Decided per connection, so a reload that turns redirect_plain on or off takes effect
        # for the next client; the request path itself never asks.
        tls = self.snapshot.config.tls
        if tls is not None and tls.redirect_plain and self.https_port:
            return RedirectConnection(
                self.https_port, header_timeout_s=self.snapshot.limits.header_timeout_s
            )
        return ClientConnection(self)

    def _reload_certificate(self) -> None:
        """Serve the certificate the reloaded snapshot names (its files were checked loadable
        when it was built). The listeners themselves are fixed at start."""
        context, server_tls = self.tls_context, self.snapshot.server_tls
        if context is None:
            if server_tls is not None:
                log.warning("tls: added by a reload; the HTTPS listener starts with a restart")
            return
        if server_tls is None:
            log.warning("tls: removed by a reload; the HTTPS listener stays until a restart")
            return
        try:
            reload_server_context(context, server_tls)
        except (OSError, ssl.SSLError) as exc:
            log.error("tls.cert: reload failed, serving the previous certificate: %s", exc)
            return
        log.info("tls.cert: serving %s", server_tls.cert_path)

    async def _drain(self, servers: list[asyncio.AbstractServer]) -> None:
        self.is_draining = True
        for server in servers:
            server.close()
        for conn in list(self.connections):
            conn.begin_drain()
        deadline = self.loop.time() + self.snapshot.limits.drain_timeout_s
        # Shadow copies in flight finish too (each has its own timeout), so their results count.
        while (self.connections or self.shadow.in_flight) and self.loop.time() < deadline:
            await asyncio.sleep(0.05)
        left = len(self.connections)
        if left:
            log.warning("drain timeout: aborting %d connections", left)
        for conn in list(self.connections):
            conn.abort()
        for pool in self.pools.values():
            pool.close_idle()
        self.shadow.close()
        self.shadow.report(as_json=True)
        # The last deltas go after the flush in flight; closing first would refuse them.
        await self.publisher.wait()
        deltas = self.shadow.results.take_deltas()
        traffic = self.traffic.take_deltas()
        self.windows.tick(time.time() + 1.0)  # the second in progress is complete too
        windows = self.windows.take_deltas()
        self.slos.tick(time.time() + 1.0)
        slo_counts = self.slos.take_deltas()
        if deltas or traffic or windows or slo_counts:
            self.publisher.publish(deltas, traffic, windows, slo_counts)
        self.watcher.stop()
        if self._analyzer is not None:
            self._analyzer.stop()
        if self._slo_monitor is not None:
            self._slo_monitor.stop()
        if self._relay is not None:
            self._relay.stop()
        await self.publisher.close()
        # Every thread that used the store has stopped.
        await self.loop.run_in_executor(None, self._store.close)
        if self.windows.dropped_slots:
            self.counters.inc("canary_windows_dropped_total", by=self.windows.dropped_slots)
        if self.slos.dropped_seconds:
            self.counters.inc("slo_seconds_dropped_total", by=self.slos.dropped_seconds)
        if self.journal is not None:
            await self.loop.run_in_executor(None, self.journal.stop)
        self._last_metrics()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.tasks.cancel_all()
        if self.bridge is not None:
            log.info("identity sessions by outcome: %s", dict(sorted(self.bridge.outcomes.items())))
        log.info("drained; counters: %s", self.counters.snapshot())

    def _last_metrics(self) -> None:
        """The drain's last message: the supervisor keeps what this worker counted."""
        writer = self._metrics_writer
        if writer is None:
            return
        deadline = time.monotonic() + 1.0
        while not writer.is_ready and not writer.is_broken and time.monotonic() < deadline:
            time.sleep(0.01)
        if writer.is_ready:
            writer.send(self.metrics_message())
            while not writer.is_ready and not writer.is_broken and time.monotonic() < deadline:
                time.sleep(0.01)
        writer.close()


def _plain(value: str) -> str:
    """An exact str (a StrEnum member is a str subclass, which marshal refuses)."""
    return value if type(value) is str else str.__str__(value)


def make_journal(config: Config, source: str) -> RequestJournal | None:
    """The access log and span exporter `config` asks for, or None when it asks for neither.
    A relative access log path is relative to the config file's folder (`source`)."""
    settings = config.access_log
    tracing = config.tracing
    if settings.path is None and tracing.otlp_endpoint is None:
        return None
    from strangler.observe.journal import RequestJournal

    access_log = None
    if settings.path is not None:
        from strangler.config import DEFAULT_REDACT
        from strangler.observe.access_log import AccessLog, AccessLogSettings

        path = settings.path
        if path != "stdout" and not Path(path).is_absolute():
            path = str(Path(source).parent / path)
        access_log = AccessLog(
            AccessLogSettings(
                path=path,
                format=settings.format,
                min_status=settings.min_status,
                min_duration_ms=settings.min_duration_ms,
                sample=settings.sample,
                redact=tuple(DEFAULT_REDACT),
            )
        )
    exporter = None
    if tracing.otlp_endpoint is not None:
        from strangler.observe.tracing import SpanExporter, TracingSettings

        exporter = SpanExporter(
            TracingSettings(
                otlp_endpoint=tracing.otlp_endpoint,
                sample_ratio=tracing.sample_ratio,
                service_name=tracing.service_name,
                headers=tracing.resolved_headers(),
            ),
            resource_attributes={"service.instance.id": f"{socket.gethostname()}:{os.getpid()}"},
        )
    return RequestJournal(access_log, exporter, sample_ratio=tracing.sample_ratio)


def _server_gauges(
    name: str, pool: BalancedPool, now: float
) -> list[tuple[tuple[str, ...], float]]:
    """A balanced backend's connections (summed over its servers) and each server's health."""
    busy = sum(len(server.busy) for server in pool.servers)
    idle = sum(len(server.idle) for server in pool.servers)
    gauges: list[tuple[tuple[str, ...], float]] = [
        (("upstream_connections", name, "busy"), float(busy)),
        (("upstream_connections", name, "idle"), float(idle)),
    ]
    for server in pool.servers:
        healthy = 1.0 if server.is_available(now) else 0.0
        gauges.append((("backend_server_healthy", name, server.label), healthy))
    return gauges
