"""Answers per route and minute, by side (legacy or new), counted in one worker.

Rules: counting is a dict update on the request path; the minute comes from the worker's
sweeper (`tick`), not a clock read per request. The pending counts are bounded by the number of
routes times the minutes between two flushes; `take_deltas` hands them to the store.
"""

from __future__ import annotations

from strangler.control.store import DEFAULT_ROUTE, TrafficDelta


class TrafficCounter:
    """Counts since the last `take_deltas`, keyed by (route, minute)."""

    def __init__(self, now: float) -> None:
        self.minute = int(now // 60)
        # [legacy, legacy_errors, new, new_errors]
        self._pending: dict[tuple[str, int], list[int]] = {}

    def tick(self, now: float) -> None:
        self.minute = int(now // 60)

    def count(self, route: str | None, *, is_new: bool, status: int) -> None:
        """Called once per answered request (an upstream's answer or the gateway's error)."""
        key = (route or DEFAULT_ROUTE, self.minute)
        row = self._pending.get(key)
        if row is None:
            row = self._pending[key] = [0, 0, 0, 0]
        side = 2 if is_new else 0
        row[side] += 1
        if status >= 500:
            row[side + 1] += 1

    def take_deltas(self) -> tuple[TrafficDelta, ...]:
        pending, self._pending = self._pending, {}
        return tuple(
            TrafficDelta(
                route, minute, legacy=row[0], new=row[2], legacy_errors=row[1], new_errors=row[3]
            )
            for (route, minute), row in pending.items()
        )
