"""Moves a worker's shadow result, traffic and canary window deltas into the shared store,
off the event loop.

Rules:
- Store I/O (SQLite or PostgreSQL, blocking) runs on one thread of its own, never on the event
  loop; the store is opened there too, on the first flush that has something to write.
- One flush at a time. While one runs, new results keep aggregating in memory (bounded by the
  number of routes and paths), so a slow disk never queues work.
- A failed write loses that flush's deltas: they are counted (`shadow_store_failures_total`)
  and logged once per failure, and the gateway keeps serving.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Sequence

from strangler.control.state import SloDelta, Store, WindowDelta
from strangler.control.store import RouteDelta, TrafficDelta
from strangler.observe.counters import Counters

log = logging.getLogger("strangler.shadow")

StoreFactory = Callable[[], Store]


class ResultsPublisher:
    """Flushes deltas to a ShadowStore from a single background thread."""

    def __init__(
        self,
        open_store: StoreFactory,
        loop: asyncio.AbstractEventLoop,
        counters: Counters,
        *,
        retention_s: float,
        max_paths_per_route: int,
        on_reviews: Callable[[dict[str, frozenset[str]]], None],
    ) -> None:
        self._open_store = open_store
        self._on_reviews = on_reviews
        self._loop = loop
        self._counters = counters
        self._retention_s = retention_s
        self._max_paths = max_paths_per_route
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="shadow-store"
        )
        self._store: Store | None = None
        self._flushing: asyncio.Future[dict[str, frozenset[str]]] | None = None
        self._last_prune = 0.0

    @property
    def is_busy(self) -> bool:
        return self._flushing is not None and not self._flushing.done()

    def publish(
        self,
        deltas: Sequence[RouteDelta],
        traffic: Sequence[TrafficDelta] = (),
        windows: Sequence[WindowDelta] = (),
        slo_counts: Sequence[SloDelta] = (),
    ) -> None:
        """Start writing `deltas`, `traffic`, canary `windows` and `slo_counts` (possibly none:
        the reviews are read back either way)."""
        future = self._loop.run_in_executor(
            self._executor,
            self._write,
            tuple(deltas),
            tuple(traffic),
            tuple(windows),
            tuple(slo_counts),
        )
        future.add_done_callback(self._done)
        self._flushing = future

    def _write(
        self,
        deltas: tuple[RouteDelta, ...],
        traffic: tuple[TrafficDelta, ...],
        windows: tuple[WindowDelta, ...],
        slo_counts: tuple[SloDelta, ...] = (),
    ) -> dict[str, frozenset[str]]:
        if self._store is None:
            self._store = self._open_store()
        now = time.time()
        self._store.apply(deltas, now, traffic)
        self._store.add_windows(windows)
        self._store.add_slo_counts(slo_counts)
        if now - self._last_prune > 60.0:
            self._last_prune = now
            self._store.prune(now, max_age_s=self._retention_s, max_paths_per_route=self._max_paths)
        # Reviews made with `strangler diffs accept|noise` reach the workers this way.
        return self._store.reviewed()

    def _done(self, future: asyncio.Future[dict[str, frozenset[str]]]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            self._counters.inc("store_failures_total", "flush")
            log.error("shadow results not stored (this flush is lost): %s", exc)
            return
        self._on_reviews(future.result())

    async def wait(self) -> None:
        """Wait for the write in flight, if any (the publisher stays usable)."""
        if self._flushing is not None:
            await asyncio.wait([self._flushing])

    async def close(self) -> None:
        """Wait for the write in flight and stop the thread. The store is not closed here: it
        is shared (SharedStore), and its owner closes it."""
        await self.wait()
        self._executor.shutdown(wait=True)
