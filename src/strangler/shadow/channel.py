"""Pipelined connections to one shadow backend, for copies of GET and OPTIONS requests.

Why: on the benchmark machine a write to a loopback socket costs 9-16 µs of the sender's CPU
(the receiver's TCP processing runs in the sender's context), more than all of a copy's Python.
Copies made in one loop iteration are written as one batch per connection (HTTP/1.1
pipelining, RFC 9112 §9.3.2), so a worker pays a few writes per iteration instead of one per
copy (bench/proxy_bench.py --shadow).

Rules:
- Only copies without a body and not HEAD are pipelined (the caller checks `is_pipelinable`):
  safe to send ahead (RFC 9112 §9.3.2), and llhttp can't frame a pipelined answer to HEAD.
  Everything else takes the shadow pool, one exchange per connection.
- Answers arrive in request order; each goes to the oldest copy still waiting on its
  connection. A copy dropped meanwhile (primary failed) stays in line and ignores its answer.
- At most `max_connections` connections with at most `max_depth` copies each; a copy that finds
  every connection full is dropped as `queue_full`. The per-worker in-flight bound applies
  before this.
- A copy's answer must start and finish within its route's `shadow.timeout_s`; the oldest copy
  of a connection past its deadline is dropped (`shadow_timeout`) and the connection aborted.
- When a connection ends (closed, reset, garbage), the copy being answered is dropped
  (`shadow_error`); copies behind it, which got no byte of answer, are sent again on another
  connection, at most MAX_RESENDS times. A close the server announced (`Connection: close` on a
  complete answer) does not count toward that bound: servers close keep-alive connections
  after N requests, each such close comes with an answer, and that must not count against the
  new backend.
- Nothing here touches the client's exchange: only Mirrors.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import httptools

from strangler.proxy.headers import with_path_prefix
from strangler.shadow.drop import DropReason

if TYPE_CHECKING:
    from strangler.proxy.tasks import TaskSet
    from strangler.runtime.snapshot import BackendTarget
    from strangler.shadow.mirror import Mirror

log = logging.getLogger("strangler.shadow")

# Sent again at most this often after their connection ended before any answer byte (a server
# that closes keep-alive connections after a few requests must not cost comparisons).
MAX_RESENDS = 3
# Copies in line on one connection before the next copy looks for a less busy one: depth is what
# saves writes; more connections only bound head-of-line waits.
_SPREAD_AT = 8


class ShadowChannel:
    """Up to `max_connections` pipelined connections to one shadow backend."""

    def __init__(
        self,
        target: BackendTarget,
        loop: asyncio.AbstractEventLoop,
        tasks: TaskSet,
        *,
        max_connections: int = 4,
        max_depth: int = 64,
    ) -> None:
        self.target = target
        self.loop = loop
        self._tasks = tasks
        self.max_connections = max_connections
        self.max_depth = max_depth
        self.connections: list[_PipelinedConnection] = []
        self._is_flush_scheduled = False
        self.is_closed = False
        # The connection the last copy went to: it takes the next ones until _SPREAD_AT.
        self._last: _PipelinedConnection | None = None
        self._spread_at = min(_SPREAD_AT, max_depth)

    def __repr__(self) -> str:
        waiting = sum(len(c.in_line) for c in self.connections)
        return (
            f"<ShadowChannel {self.target.name}: {len(self.connections)} connections, "
            f"{waiting} copies waiting>"
        )

    def send(self, mirror: Mirror) -> None:
        """Queue one copy; it is written with the others of this loop iteration."""
        conn = self._last
        if conn is None or conn.is_lost or len(conn.in_line) >= self._spread_at:
            conn = self._pick()
            if conn is None:
                mirror.drop(DropReason.QUEUE_FULL)
                return
        conn.in_line.append(mirror)
        prefix = self.target.path_prefix
        conn.to_write.append(with_path_prefix(mirror.wire, prefix) if prefix else mirror.wire)
        if not self._is_flush_scheduled:
            self._is_flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _pick(self) -> _PipelinedConnection | None:
        spread_at = self._spread_at
        best: _PipelinedConnection | None = None
        for conn in self.connections:
            if not conn.is_lost and (best is None or len(conn.in_line) < len(best.in_line)):
                best = conn
        is_crowded = best is None or len(best.in_line) >= spread_at
        if is_crowded and len(self.connections) < self.max_connections:
            best = _PipelinedConnection(self)
            self.connections.append(best)
            self._tasks.spawn(best.connect(), name=f"shadow-connect-{self.target.name}")
        if best is None or len(best.in_line) >= self.max_depth:
            return None
        self._last = best
        return best

    def _flush(self) -> None:
        self._is_flush_scheduled = False
        for conn in self.connections:
            conn.flush()

    def forget(self, conn: _PipelinedConnection) -> None:
        if conn in self.connections:
            self.connections.remove(conn)

    def resend(self, mirrors: list[Mirror], *, is_announced: bool = False) -> None:
        """Send again copies that got no byte of answer on a connection that ended; an
        announced close (an answer said `Connection: close`) made progress, so it is free."""
        for mirror in mirrors:
            if mirror.is_finished:
                continue
            if mirror.wait_deadline and mirror.wait_deadline <= self.loop.time():
                mirror.drop(DropReason.SHADOW_TIMEOUT)
                continue
            if self.is_closed or (not is_announced and mirror.resends >= MAX_RESENDS):
                mirror.drop(DropReason.SHADOW_ERROR)
                continue
            if not is_announced:
                mirror.resends += 1
            self.send(mirror)

    def sweep(self, now: float) -> None:
        """Called by the worker's sweeper: drop copies whose answer is late."""
        for conn in list(self.connections):
            conn.check_deadline(now)

    def close(self) -> None:
        """Stop: copies still in line are dropped as they would be on a dead connection."""
        self.is_closed = True
        for conn in list(self.connections):
            conn.abort()


def reconcile_channels(
    channels: Mapping[str, ShadowChannel],
    targets: Mapping[str, BackendTarget],
    loop: asyncio.AbstractEventLoop,
    tasks: TaskSet,
) -> dict[str, ShadowChannel]:
    """The channels for a new snapshot: kept for a backend at the same address and depth, new
    otherwise; a channel no longer wanted is closed (its waiting copies are dropped)."""
    fresh: dict[str, ShadowChannel] = {}
    for name, target in targets.items():
        depth = target.shadow_pipeline_depth
        channel = channels.get(name)
        if depth <= 1:
            continue
        if (
            channel is not None
            and channel.target.address == target.address
            and channel.max_depth == depth
        ):
            channel.target = target
            fresh[name] = channel
            continue
        fresh[name] = ShadowChannel(
            target, loop, tasks, max_connections=max(1, target.pool_size // depth), max_depth=depth
        )
    for name, channel in channels.items():
        if fresh.get(name) is not channel:
            channel.close()
    return fresh


class _PipelinedConnection(asyncio.Protocol):
    """One connection: copies written in order, answers matched to them in order."""

    def __init__(self, channel: ShadowChannel) -> None:
        self.channel = channel
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        # Copies written or about to be, oldest first; in_line[0] gets the next answer.
        self.in_line: collections.deque[Mirror] = collections.deque()
        self.to_write: list[bytes] = []
        self.is_lost = False
        # The answer being parsed.
        self._names: list[bytes] = []
        self._values: list[bytes] = []
        self._chunks: list[bytes] = []
        self._size = 0
        self._has_answer_bytes = False

    async def connect(self) -> None:
        target = self.channel.target
        try:
            await asyncio.wait_for(
                self.channel.loop.create_connection(
                    lambda: self,
                    target.host,
                    target.port,
                    ssl=target.ssl_context,
                    server_hostname=target.server_name,
                ),
                timeout=target.connect_timeout_s,
            )
        except (OSError, TimeoutError) as exc:
            reason = (
                DropReason.SHADOW_TIMEOUT
                if isinstance(exc, TimeoutError)
                else DropReason.SHADOW_ERROR
            )
            self._lose(reason, resend_rest=False)

    def flush(self) -> None:
        if self.to_write and self.transport is not None and not self.is_lost:
            now = self.channel.loop.time()
            for mirror in self.in_line:
                if not mirror.wait_deadline:
                    mirror.wait_deadline = now + mirror.setup.settings.timeout_s
            self.transport.writelines(self.to_write)
            self.to_write = []

    def check_deadline(self, now: float) -> None:
        head = self.in_line[0] if self.in_line else None
        if head is None or not head.wait_deadline or head.wait_deadline > now:
            return
        # Each copy keeps the deadline of its first send: those behind the late one waited too.
        for mirror in [m for m in self.in_line if m.wait_deadline and m.wait_deadline <= now]:
            self.in_line.remove(mirror)
            mirror.drop(DropReason.SHADOW_TIMEOUT)
        self._has_answer_bytes = False
        self._lose(DropReason.SHADOW_ERROR, resend_rest=True)
        self.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        else:
            self._lose(DropReason.SHADOW_ERROR, resend_rest=False)

    def _lose(self, reason: DropReason, *, resend_rest: bool, is_announced: bool = False) -> None:
        """The connection is done for: the copy being answered is dropped; the rest go again."""
        if self.is_lost:
            return
        self.is_lost = True
        self.channel.forget(self)
        waiting = list(self.in_line)
        self.in_line.clear()
        self.to_write = []
        if not waiting:
            return
        first, rest = waiting[0], waiting[1:]
        if self._has_answer_bytes or not resend_rest:
            first.drop(reason)
        else:
            rest.insert(0, first)
        if resend_rest:
            self.channel.resend(rest, is_announced=is_announced)
        else:
            for mirror in rest:
                mirror.drop(reason)

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.is_lost:
            transport.abort()  # type: ignore[attr-defined]
            return
        self.flush()

    def data_received(self, data: bytes) -> None:
        if not self.in_line:
            # A backend talking out of turn can't be trusted with the next answer.
            self._lose(DropReason.SHADOW_ERROR, resend_rest=False)
            self.abort()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._lose(DropReason.SHADOW_ERROR, resend_rest=True)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self._lose(DropReason.SHADOW_ERROR, resend_rest=True)

    # -- httptools callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._names = []
        self._values = []
        self._chunks = []
        self._size = 0
        self._has_answer_bytes = True

    def on_header(self, name: bytes, value: bytes) -> None:
        self._names.append(name)
        self._values.append(value)

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self.in_line and self._size > self.in_line[0].setup.settings.max_body_bytes:
            # Kept in line (its answer must still be read past); bytes are no longer kept.
            self.in_line[0].drop(DropReason.BODY_TOO_LARGE)
            self._chunks = []
        else:
            self._chunks.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200 or not self.in_line:
            return
        mirror = self.in_line.popleft()
        self._has_answer_bytes = False
        mirror.shadow_answer(status, self._names, self._values, self._chunks or None)
        if not self.parser.should_keep_alive():
            # The server closes after this answer; those behind it go again elsewhere.
            self._lose(DropReason.SHADOW_ERROR, resend_rest=True, is_announced=True)
            if self.transport is not None:
                self.transport.close()
