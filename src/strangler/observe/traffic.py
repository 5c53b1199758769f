"""Answers per route and minute, by side (legacy or new), counted in one worker.

Rules: counting is one dict update on the request path (errors, rare, a second one); the
minute comes from the worker's sweeper (`tick`), never from a clock read per request. What is
pending is bounded by the number of routes times the minutes between two flushes;
`take_deltas` hands it to the store.
"""

from __future__ import annotations

from strangler.control.store import DEFAULT_ROUTE, TrafficDelta


class TrafficCounter:
    """Counts since the last `take_deltas`, keyed by (route, is_new) within the minute."""

    def __init__(self, now: float) -> None:
        self.minute = int(now // 60)
        self._answers: dict[tuple[str | None, bool], int] = {}
        self._errors: dict[tuple[str | None, bool], int] = {}
        # Minutes that ended before the last flush: (minute, answers, errors).
        self._closed: list[
            tuple[int, dict[tuple[str | None, bool], int], dict[tuple[str | None, bool], int]]
        ] = []

    def tick(self, now: float) -> None:
        minute = int(now // 60)
        if minute != self.minute:
            self._close_minute()
            self.minute = minute

    def _close_minute(self) -> None:
        if self._answers:
            self._closed.append((self.minute, self._answers, self._errors))
            self._answers, self._errors = {}, {}

    def count(self, route: str | None, is_new: bool, status: int) -> None:
        """Called once per answered request (an upstream's answer or the gateway's error)."""
        key = (route, is_new)
        answers = self._answers
        answers[key] = answers.get(key, 0) + 1
        if status >= 500:
            self._errors[key] = self._errors.get(key, 0) + 1

    def take_deltas(self) -> tuple[TrafficDelta, ...]:
        self._close_minute()
        closed, self._closed = self._closed, []
        rows: dict[tuple[str, int], list[int]] = {}
        for minute, answers, errors in closed:
            for (route, is_new), count in answers.items():
                row = rows.setdefault((route or DEFAULT_ROUTE, minute), [0, 0, 0, 0])
                side = 2 if is_new else 0
                row[side] += count
                row[side + 1] += errors.get((route, is_new), 0)
        return tuple(
            TrafficDelta(route, minute, legacy=r[0], new=r[2], legacy_errors=r[1], new_errors=r[3])
            for (route, minute), r in rows.items()
        )
