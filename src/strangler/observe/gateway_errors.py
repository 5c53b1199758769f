"""The gateway's own error answers (502/503/504 it writes itself) as log lines a person reads.

Counting alone says how many; an operator at 3 am needs the why. Each (route, kind) logs at
most one line a second, saying how many answers of the same kind it stands for, so a dead
backend under load writes a line a second per route, not one per request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("strangler.gateway")

INTERVAL_S = 1.0
# Keys are (route, kind): bounded by the routes of the config times the failure kinds, but
# reloads can rename routes, so stale keys are swept once there are this many.
MAX_KEYS = 4096


class GatewayErrorLog:
    """One WARNING per (route, kind) per second for answers the gateway wrote itself."""

    def __init__(self, clock: Callable[[], float], logger: logging.Logger = log) -> None:
        self._clock = clock
        self._log = logger
        self._last: dict[tuple[str, str], float] = {}
        self._folded: dict[tuple[str, str], int] = {}

    def note(self, route: str, kind: str, status: int, detail: str, request_id: str | None) -> None:
        now = self._clock()
        key = (route, kind)
        last = self._last.get(key)
        if last is not None and now - last < INTERVAL_S:
            self._folded[key] = self._folded.get(key, 0) + 1
            return
        if len(self._last) >= MAX_KEYS:
            self._sweep(now)
        self._last[key] = now
        folded = self._folded.pop(key, 0)
        more = f"; {folded} more like it since the last line" if folded else ""
        request = f" (request {request_id})" if request_id else ""
        self._log.warning(
            "route %s: answered %d %s: %s%s%s", route, status, kind, detail, request, more
        )

    def _sweep(self, now: float) -> None:
        stale = [key for key, at in self._last.items() if now - at >= INTERVAL_S]
        for key in stale:
            del self._last[key]
            self._folded.pop(key, None)
        if len(self._last) >= MAX_KEYS:
            self._last.clear()
            self._folded.clear()
