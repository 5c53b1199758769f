"""Per-second metric windows of canary routes, by side: answers, status classes, errors and a
latency histogram; what the canary analyzer judges, merged across workers by the store.

Rules: recording is a dict lookup and a histogram record on the request path, for canary routes
only; the second comes from the worker's sweeper (`tick`), never from a clock read per request.
Pending windows are bounded by canary routes x 2 sides x the seconds between two flushes, and
by MAX_PENDING_SLOTS while a flush is stuck (the oldest go first, counted in `dropped_slots`,
which the worker reports as `canary_windows_dropped_total` when it stops). A flush that fails
loses its windows with the rest of it (`store_failures_total{what="flush"}`).
"""

from __future__ import annotations

from strangler.control.state import WindowDelta
from strangler.rollout import LatencyHistogram

# Seconds kept while flushes fail: the analyzer judges intervals that ended seconds ago, so
# older windows would only arrive too late to matter.
MAX_PENDING_SLOTS = 300


class _Side:
    __slots__ = ("errors", "latency", "requests", "statuses")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.statuses = [0, 0, 0, 0, 0, 0]  # by status // 100; index 0 unused
        self.latency = LatencyHistogram()


class WindowRecorder:
    """Windows since the last `take_deltas`, keyed by (route, is_new) within the second."""

    def __init__(self, now: float) -> None:
        self.slot = int(now)
        self._open: dict[tuple[str, bool], _Side] = {}
        self._closed: list[tuple[int, dict[tuple[str, bool], _Side]]] = []
        self.dropped_slots = 0

    def tick(self, now: float) -> None:
        slot = int(now)
        if slot != self.slot:
            self._close()
            self.slot = slot

    def _close(self) -> None:
        if self._open:
            self._closed.append((self.slot, self._open))
            self._open = {}
            if len(self._closed) > MAX_PENDING_SLOTS:
                del self._closed[0]
                self.dropped_slots += 1

    def record(self, route: str, is_new: bool, status: int, latency_s: float) -> None:
        """Called once per answered request of a canary route (an upstream's answer or the
        gateway's error), with the time from its head to its last byte."""
        key = (route, is_new)
        side = self._open.get(key)
        if side is None:
            side = self._open[key] = _Side()
        side.requests += 1
        klass = status // 100
        if 1 <= klass <= 5:
            side.statuses[klass] += 1
        if status >= 500:
            side.errors += 1
        side.latency.record(latency_s)

    @property
    def has_closed(self) -> bool:
        return bool(self._closed)

    def take_deltas(self) -> list[WindowDelta]:
        """The windows of the seconds that ended; the current one keeps filling."""
        closed, self._closed = self._closed, []
        return [
            WindowDelta(
                route=route,
                side="new" if is_new else "legacy",
                slot=slot,
                requests=side.requests,
                errors=side.errors,
                statuses={str(k): n for k, n in enumerate(side.statuses) if n},
                latency=side.latency.to_json(),
            )
            for slot, sides in closed
            for (route, is_new), side in sides.items()
        ]
