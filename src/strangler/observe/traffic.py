"""Answers per route and minute, by side (legacy or new), counted in one worker, with their
latency histogram (the route series the admin API charts); and the new backend's answers to
shadow copies, kept apart (the client never saw them, so they are no share of the traffic).

Rules: counting is one dict lookup and one histogram record on the request path (the latency
is the one the exchange already measured for metrics and windows: nothing new is timed); the
minute comes from the worker's sweeper (`tick`), never from a clock read per request. What is
pending is bounded by the number of routes times the minutes between two flushes;
`take_deltas` hands it to the store.
"""

from __future__ import annotations

from typing import Final

from strangler.control.store import DEFAULT_ROUTE, TrafficDelta
from strangler.rollout import LatencyHistogram

# The side key of shadow copies; the client's answers are keyed by is_new (False 0, True 1).
SHADOW: Final = 2


class _Side:
    __slots__ = ("answers", "errors", "latency")

    def __init__(self) -> None:
        self.answers = 0
        self.errors = 0
        self.latency = LatencyHistogram()


class TrafficCounter:
    """Counts since the last `take_deltas`, keyed by (route, is_new) within the minute."""

    def __init__(self, now: float) -> None:
        self.minute = int(now // 60)
        self._open: dict[tuple[str | None, int], _Side] = {}
        # Minutes that ended before the last flush: (minute, sides).
        self._closed: list[tuple[int, dict[tuple[str | None, int], _Side]]] = []

    def tick(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self.minute:
            self._close_minute()
            self.minute = minute

    def _close_minute(self) -> None:
        if self._open:
            self._closed.append((self.minute, self._open))
            self._open = {}

    def count(self, route: str | None, is_new: bool, status: int, latency_s: float) -> None:
        """Called once per answered request (an upstream's answer or the gateway's error),
        with the time from its head to its last byte."""
        key = (route, is_new)
        side = self._open.get(key)
        if side is None:
            side = self._open[key] = _Side()
        side.answers += 1
        if status >= 500:
            side.errors += 1
        side.latency.record(latency_s)

    def count_shadow(self, route: str, status: int, latency_s: float) -> None:
        """Called once per shadow copy whose answer completed, with its time from the client
        request's head (never for a dropped copy, nor for a noise probe sent to legacy)."""
        key = (route, SHADOW)
        side = self._open.get(key)
        if side is None:
            side = self._open[key] = _Side()
        side.answers += 1
        if status >= 500:
            side.errors += 1
        side.latency.record(latency_s)

    def take_deltas(self) -> tuple[TrafficDelta, ...]:
        self._close_minute()
        closed, self._closed = self._closed, []
        rows: dict[tuple[str, int], list[_Side]] = {}
        for minute, sides in closed:
            for (route, side_key), side in sides.items():
                trio = rows.get((route or DEFAULT_ROUTE, minute))
                if trio is None:
                    trio = rows[(route or DEFAULT_ROUTE, minute)] = [_Side(), _Side(), _Side()]
                merged = trio[int(side_key)]
                merged.answers += side.answers
                merged.errors += side.errors
                merged.latency.merge(side.latency)
        return tuple(
            TrafficDelta(
                route,
                minute,
                legacy=legacy.answers,
                new=new.answers,
                legacy_errors=legacy.errors,
                new_errors=new.errors,
                legacy_latency=legacy.latency.to_json(),
                new_latency=new.latency.to_json(),
                shadow=shadow.answers,
                shadow_errors=shadow.errors,
                shadow_latency=shadow.latency.to_json(),
            )
            for (route, minute), (legacy, new, shadow) in rows.items()
        )
