"""Active health checks and DNS re-resolution for balanced backends (proxy/balance.py).

Rules:
- Every worker checks every server of its balanced backends itself: workers are separate
  processes, and a worker's own view of a server is what its requests meet. The first check
  of each server waits a random part of an interval, and each interval varies by ±10 %, so
  workers (and servers) do not probe in step.
- A check is one GET of `health.path` on a new connection (`Connection: close`), with the
  server's Host; 2xx within `timeout_s` passes, anything else (refused, reset, timeout, other
  status, TLS failure) fails. Rails 7.1's `/up` answers 200 or 500.
- A name is looked up again every `dns_ttl_s`; a failed lookup keeps the addresses it had
  (counted and logged once per outage), so a DNS outage never empties a backend.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from typing import TYPE_CHECKING

from strangler.proxy.resolve import resolve

if TYPE_CHECKING:
    from strangler.proxy.balance import BalancedPool, ServerPool
    from strangler.runtime.snapshot import ServerSpec

log = logging.getLogger("strangler.backends")

# The status line and a little more: the rest of the answer is never read.
_MAX_STATUS_LINE = 1024


async def check_forever(balancer: BalancedPool, server: ServerPool) -> None:
    """Check `server` every interval until it or its balancer is retired."""
    health = balancer.plan.health
    if health is None:
        return
    await asyncio.sleep(random.uniform(0.0, health.interval_s))
    while not (balancer.is_retired or server.is_retired):
        health = balancer.plan.health
        if health is None:
            return
        is_ok = await check_once(server, health.path, health.timeout_s)
        if balancer.is_retired or server.is_retired:
            return
        balancer.note_probe(server, is_ok)
        await asyncio.sleep(health.interval_s * random.uniform(0.9, 1.1))


async def check_once(server: ServerPool, path: str, timeout_s: float) -> bool:
    """One active check of `server`: True when it answered `path` with a 2xx in time."""
    target = server.target
    host = target.authority
    request = b"GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: strangler-health-check\r\n" % (
        path.encode("ascii"),
        host,
    )
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=target.ssl_context,
                server_hostname=target.server_name,
            )
            try:
                writer.write(request + b"Connection: close\r\n\r\n")
                line = await reader.readline()
            finally:
                writer.close()
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError, ValueError):
        return False
    parts = line[:_MAX_STATUS_LINE].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return False
    return 200 <= int(parts[1]) < 300


async def resolve_forever(balancer: BalancedPool, spec: ServerSpec) -> None:
    """Look `spec`'s host up every `dns_ttl_s` and hand its addresses to the balancer."""
    is_failing = False
    while not balancer.is_retired:
        ttl_s = balancer.plan.dns_ttl_s or 30.0
        try:
            addresses = await resolve(spec.host, spec.port)
        except (OSError, UnicodeError) as exc:
            balancer.counters.inc("backend_dns_failures_total", balancer.target.name)
            if not is_failing:
                reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
                log.warning(
                    "backend %s: looking up %s failed (%s); keeping its last addresses",
                    balancer.target.name,
                    spec.host,
                    reason,
                )
            is_failing = True
        else:
            if is_failing:
                log.info("backend %s: %s resolves again", balancer.target.name, spec.host)
            is_failing = False
            if addresses and not balancer.is_retired:
                balancer.set_addresses(spec, addresses)
        await asyncio.sleep(ttl_s)
