"""A backend with several servers: one keep-alive pool per server, a choice per request, and
each server's health as this worker sees it (active checks and passive outlier detection).

Rules:
- Only backends whose target has a BalancePlan come here; a lone `url` without health checks,
  outlier detection or `dns_ttl_s` keeps its plain UpstreamPool and pays nothing for this.
- A server is available while its active checks say up and it is not ejected. Requests go to
  available servers only; when none is, to every server (Envoy's panic routing): a backend
  that is all down answers as an unreachable one did, and one whose checks were wrong heals.
- `least_request` is the power of two choices over active requests, as Envoy's LEAST_REQUEST
  with equal weights (envoyproxy.io, "Load balancing: supported load balancers"): two random
  servers, the one with fewer requests in flight per weight wins. `round_robin` is smooth
  weighted round robin (nginx's upstream round robin): every pick adds each server's weight to
  its score, takes the highest, and takes the sum of the weights off the one taken.
- Outlier detection never ejects past `max_ejected_percent` of the servers; an ejection lasts
  eject_s times the ejections in a row (at most 10).
- A safe bodiless request whose connect failed (no request byte was sent) is retried on each
  other available server in turn; any other request fails as before.
- State is per worker process: each worker balances its own requests and sees its own failures.
- Every change of a server's state is logged once by the worker that saw it; changes from
  active checks are logged by worker 0 only (every worker runs the same checks).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from typing import TYPE_CHECKING, Final

from strangler.proxy.failures import FailureKind
from strangler.proxy.health import check_forever, resolve_forever
from strangler.proxy.resolve import is_address
from strangler.proxy.tasks import TaskSet
from strangler.proxy.upstream_pool import PoolClient, UpstreamConnection, UpstreamPool
from strangler.runtime.snapshot import BackendTarget, BalancePlan, ServerSpec

if TYPE_CHECKING:
    from strangler.observe.counters import Counters

log = logging.getLogger("strangler.backends")

# An ejection lasts eject_s times the ejections in a row, up to this many times.
_MAX_EJECT_FACTOR: Final = 10
_ROUND_ROBIN: Final = "round_robin"


class ServerPool(UpstreamPool):
    """The pool of one server of a balanced backend, and that server's health."""

    def __init__(
        self,
        target: BackendTarget,
        balancer: BalancedPool,
        spec: ServerSpec,
        label: str,
    ) -> None:
        super().__init__(target, balancer.loop, balancer.tasks, balancer.counters)
        self.balancer = balancer
        self.spec = spec
        # host:port as shown in logs, metrics and reports (the address a name resolved to).
        self.label = label
        self.weight = spec.weight
        # Active checks: the verdict, and the results in a row that lead to the next one.
        self.is_up = True
        self.passes = 0
        self.fails = 0
        # Passive: failures in a row, ejected until (loop time; 0: not ejected), ejections in
        # a row.
        self.failures = 0
        self.ejected_until = 0.0
        self.ejections = 0
        # Smooth weighted round robin's running score.
        self.score = 0

    def __repr__(self) -> str:
        return f"<ServerPool {self.target.name} {self.label} {self.state()}: {self.active} active>"

    @property
    def active(self) -> int:
        """Requests in flight or waiting on this server (this worker's)."""
        return len(self.busy) + self.connecting + len(self.waiters)

    def state(self) -> str:
        if self.ejected_until:
            return "ejected"
        return "up" if self.is_up else "down"

    def is_available(self, now: float) -> bool:
        return self.is_up and self.ejected_until <= now

    def release(self, conn: UpstreamConnection, *, is_reusable: bool) -> None:
        # The status of the answer just completed (HEAD included). Observed here and
        # in forget(), not by a subclass of UpstreamConnection: a native class with subclasses
        # costs every plain connection a subtype check per callback.
        status = conn.response_status()
        if status >= 200:
            self.balancer.note_status(self, status)
        super().release(conn, is_reusable=is_reusable)

    def forget(self, conn: UpstreamConnection) -> None:
        # Closed while an exchange waited on it. A reused connection the server closed before
        # any byte of the answer is a stale keep-alive one (the exchange retries it): no fault
        # of the server. Only the first forget of a busy connection counts.
        if (
            conn in self.busy
            and conn.sink is not None
            and (conn.has_response_bytes or not conn.is_reused)
        ):
            self.balancer.note_failure(self, "reset")
        super().forget(conn)

    def _fail_or_next(self, client: PoolClient, kind: FailureKind) -> None:
        self.balancer.note_failure(self, kind.value)
        self.balancer.retry_or_fail(client, self, kind)
        self._serve_waiter()

    def sweep(self, now: float) -> None:
        for conn in self.busy:
            if conn.deadline and conn.deadline <= now and conn.sink is not None:
                self.balancer.note_failure(self, "read_timeout")
        super().sweep(now)


class NextServer:
    """A safe request whose connect failed, on its way to the other servers in turn."""

    is_replayable = True

    def __init__(self, client: PoolClient, tried: list[ServerPool]) -> None:
        self.client = client
        self.tried = tried

    @property
    def is_cancelled(self) -> bool:
        return self.client.is_cancelled

    @property
    def wait_deadline(self) -> float:
        return self.client.wait_deadline

    @wait_deadline.setter
    def wait_deadline(self, value: float) -> None:
        self.client.wait_deadline = value

    def attach(self, conn: UpstreamConnection) -> None:
        self.client.attach(conn)

    def fail(self, kind: FailureKind) -> None:
        self.client.fail(kind)


class BalancedPool(UpstreamPool):
    """Per-worker pools to the servers of one backend, chosen per request."""

    def __init__(
        self,
        target: BackendTarget,
        loop: asyncio.AbstractEventLoop,
        tasks: TaskSet,
        counters: Counters,
        *,
        logs_checks: bool = True,
        leader: BalancedPool | None = None,
    ) -> None:
        super().__init__(target, loop, tasks, counters)
        assert target.balance is not None  # only balanced targets are built here
        self.plan: BalancePlan = target.balance
        self.tasks = tasks
        self.counters = counters
        self.logs_checks = logs_checks
        # A shadow pool follows the client path's balancer: its servers and their active
        # verdicts (it runs no checks and no resolver of its own).
        self.leader = leader
        self.servers: list[ServerPool] = []
        self._jobs: list[asyncio.Task[None]] = []
        for spec in self.plan.servers:
            self.servers.append(self._server(spec, spec.host))

    def __repr__(self) -> str:
        available = sum(1 for s in self.servers if s.is_available(self.loop.time()))
        return (
            f"<BalancedPool {self.target.name}: {available}/{len(self.servers)} servers "
            f"available, {sum(s.active for s in self.servers)} active>"
        )

    @property
    def size(self) -> int:
        return sum(server.size for server in self.servers)

    def _server(self, spec: ServerSpec, address: str) -> ServerPool:
        target = dataclasses.replace(self.target, host=address, port=spec.port, balance=None)
        shown = f"[{address}]" if ":" in address else address
        return ServerPool(target, self, spec, f"{shown}:{spec.port}")

    # -- the pool interface the exchange uses ---------------------------------------------------

    def acquire(self, client: PoolClient, *, is_fresh: bool = False) -> None:
        self.pick(self.loop.time()).acquire(client, is_fresh=is_fresh)

    def update_target(self, target: BackendTarget) -> None:
        self.target = target
        for server in self.servers:
            server.update_target(
                dataclasses.replace(
                    target, host=server.target.host, port=server.target.port, balance=None
                )
            )

    def sweep(self, now: float) -> None:
        leader = self.leader
        if leader is not None:
            self._follow(leader)
        for server in self.servers:
            if server.ejected_until and server.ejected_until <= now:
                server.ejected_until = 0.0
                log.info(
                    "backend %s server %s: ejection over, back in rotation",
                    self.target.name,
                    server.label,
                )
            server.sweep(now)

    def close_idle(self) -> None:
        for server in self.servers:
            server.close_idle()

    def retire(self) -> None:
        self.is_retired = True
        for job in self._jobs:
            job.cancel()
        self._jobs.clear()
        for server in self.servers:
            server.retire()

    # -- choosing ----------------------------------------------------------------------------

    def pick(self, now: float, tried: list[ServerPool] | None = None) -> ServerPool:
        """The server for the next request (see the module's rules)."""
        servers = self.servers
        candidates = [s for s in servers if s.is_available(now)]
        if not candidates:
            candidates = servers
        if len(candidates) == 1:
            return candidates[0]
        if self.plan.policy == _ROUND_ROBIN:
            return _smooth_round_robin(candidates)
        first, second = random.sample(candidates, 2)
        # Fewer requests in flight per unit of weight wins (cross-multiplied: no division).
        if (second.active + 1) * first.weight < (first.active + 1) * second.weight:
            return second
        return first

    def retry_or_fail(self, client: PoolClient, failed: ServerPool, kind: FailureKind) -> None:
        """`failed` could not connect for `client`: try the next available server for a safe
        bodiless request, else fail it as before."""
        nxt = client if isinstance(client, NextServer) else NextServer(client, [])
        original = nxt.client
        if original.is_cancelled:
            return
        nxt.tried.append(failed)
        if original.is_replayable and not self.is_retired:
            now = self.loop.time()
            untried = [s for s in self.servers if s not in nxt.tried and s.is_available(now)]
            if untried:
                self.counters.inc("upstream_retries_total", self.target.name)
                self.tls_failure = failed.tls_failure
                _pick_least_loaded(untried).acquire(nxt)
                return
        self.tls_failure = failed.tls_failure
        original.fail(kind)

    # -- health --------------------------------------------------------------------------------

    def note_status(self, server: ServerPool, status: int) -> None:
        """An answer's head came from `server`: 5xx is a failure, anything else a success."""
        if status >= 500:
            self.note_failure(server, "5xx")
        else:
            server.failures = 0
            if not server.ejected_until:
                server.ejections = 0

    def note_failure(self, server: ServerPool, why: str) -> None:
        """A connect failure, reset, read timeout or 5xx of `server`; may eject it."""
        outlier = self.plan.outlier
        if outlier is None:
            return
        server.failures += 1
        if server.failures < outlier.consecutive_failures or server.ejected_until:
            return
        now = self.loop.time()
        ejected = sum(1 for s in self.servers if s.ejected_until > now)
        if (ejected + 1) * 100 > outlier.max_ejected_percent * len(self.servers):
            return
        server.failures = 0
        server.ejections += 1
        eject_s = outlier.eject_s * min(server.ejections, _MAX_EJECT_FACTOR)
        server.ejected_until = now + eject_s
        self.counters.inc("backend_ejections_total", self.target.name, server.label)
        log.warning(
            "backend %s server %s: ejected for %g s after %d failures in a row (last: %s)",
            self.target.name,
            server.label,
            eject_s,
            outlier.consecutive_failures,
            why,
        )

    def note_probe(self, server: ServerPool, is_ok: bool) -> None:
        """The result of one active check of `server`."""
        health = self.plan.health
        if health is None:
            return
        if is_ok:
            server.passes += 1
            server.fails = 0
            if not server.is_up and server.passes >= health.healthy_after:
                server.is_up = True
                self._log_check(server, f"up after {server.passes} passed checks")
            return
        server.fails += 1
        server.passes = 0
        if server.is_up and server.fails >= health.unhealthy_after:
            server.is_up = False
            self._log_check(server, f"down after {server.fails} failed checks")

    def _log_check(self, server: ServerPool, what: str) -> None:
        self.counters.inc(
            "backend_health_changes_total",
            self.target.name,
            server.label,
            "up" if server.is_up else "down",
        )
        if self.logs_checks:
            health = self.plan.health
            path = health.path if health is not None else ""
            level = logging.INFO if server.is_up else logging.WARNING
            log.log(
                level, "backend %s server %s: %s of %s", self.target.name, server.label, what, path
            )

    def has_healthy_server(self) -> bool:
        now = self.loop.time()
        return any(server.is_available(now) for server in self.servers)

    def report(self) -> dict[str, object]:
        """This worker's view of the backend, for /readyz and `strangler status`."""
        now, wall = self.loop.time(), time.time()
        servers: list[dict[str, object]] = []
        for server in self.servers:
            until = server.ejected_until
            servers.append(
                {
                    "server": server.label,
                    "state": server.state(),
                    "weight": server.weight,
                    "ejected_until": round(wall + until - now, 3) if until > now else None,
                    "active_requests": server.active,
                }
            )
        return {
            "balance": self.plan.policy,
            "healthy": sum(1 for server in self.servers if server.is_available(now)),
            "servers": servers,
        }

    # -- servers that change: DNS and the leader -------------------------------------------------

    def start(self) -> None:
        """Start the active checks and the resolver (client-path balancers only)."""
        if self.leader is not None:
            return
        if self.plan.health is not None:
            for server in self.servers:
                self._check(server)
        if self.plan.dns_ttl_s is not None:
            for spec in self.plan.servers:
                if is_address(spec.host):
                    continue
                job = self.tasks.spawn(
                    resolve_forever(self, spec), name=f"resolve-{self.target.name}-{spec.host}"
                )
                self._jobs.append(job)

    def _check(self, server: ServerPool) -> None:
        job = self.tasks.spawn(
            check_forever(self, server), name=f"check-{self.target.name}-{server.label}"
        )
        self._jobs.append(job)

    def set_addresses(self, spec: ServerSpec, addresses: list[str]) -> None:
        """`spec`'s host name now resolves to `addresses`: servers for new ones, and the ones
        gone retired (their requests in flight finish)."""
        mine = [s for s in self.servers if s.spec == spec]
        known = {s.target.host: s for s in mine}
        if set(known) == set(addresses):
            return
        kept = [s for s in self.servers if s.spec != spec]
        fresh: list[ServerPool] = []
        for address in addresses:
            server = known.pop(address, None)
            if server is None:
                server = self._server(spec, address)
                if self.plan.health is not None and self.leader is None and not self.is_retired:
                    self._check(server)
            fresh.append(server)
        for gone in known.values():
            gone.retire()
        self.servers = kept + fresh
        log.info(
            "backend %s: %s resolves to %s",
            self.target.name,
            spec.host,
            ", ".join(addresses) or "nothing",
        )

    def _follow(self, leader: BalancedPool) -> None:
        by_label = {s.label: s for s in leader.servers}
        if [s.label for s in self.servers] != list(by_label):
            mine = {s.label: s for s in self.servers}
            fresh = []
            for label, leading in by_label.items():
                found = mine.pop(label, None)
                fresh.append(found or self._server(leading.spec, leading.target.host))
            for gone in mine.values():
                gone.retire()
            self.servers = fresh
        for server in self.servers:
            theirs = by_label.get(server.label)
            if theirs is not None:
                server.is_up = theirs.is_up


def _smooth_round_robin(servers: list[ServerPool]) -> ServerPool:
    total = 0
    best = servers[0]
    for server in servers:
        server.score += server.weight
        total += server.weight
        if server.score > best.score:
            best = server
    best.score -= total
    return best


def _pick_least_loaded(servers: list[ServerPool]) -> ServerPool:
    best = servers[0]
    for server in servers[1:]:
        if (server.active + 1) * best.weight < (best.active + 1) * server.weight:
            best = server
    return best
