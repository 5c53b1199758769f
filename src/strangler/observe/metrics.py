"""What one worker measures for Prometheus: client requests by route, stage, side and status
class, and fixed-bucket latency histograms, recorded on the request path.

Rules:
- Recording is a dict lookup by a name from the config, one list increment and a walk over 14
  bucket bounds; no clock is read here (the caller measured the duration) and nothing is
  allocated once a series exists.
- Labels are route and backend names, stages and fixed enums: never a raw path or header value.
  Requests that matched no route count under DEFAULT_ROUTE with stage "none".
- `take_delta` hands over everything counted since its last call and starts over: the
  supervisor adds the deltas of all workers up, so a scrape sums the whole process.
"""

from __future__ import annotations

from typing import Final

# Seconds. Fine enough for a 1 ms-class backend and a 10 s one; the same bounds for every
# histogram so a dashboard can put any two side by side.
BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
SLOTS: Final = 15  # len(BUCKETS) + the +Inf bucket

SIDE_LEGACY: Final = 0
SIDE_NEW: Final = 1
# Answered by the gateway itself: refusals, CSRF 403s, problems when no backend was tried.
SIDE_GATEWAY: Final = 2
SIDES: Final = ("legacy", "new", "gateway")

DEFAULT_ROUTE: Final = "_default"
NO_STAGE: Final = "none"

# One histogram as it travels: (non-cumulative counts per slot, sum of the observed values).
HistogramDelta = tuple[list[int], float]
# (route, stage, [count per side * 5 + status class - 1], {side: histogram})
RequestsDelta = tuple[str, str, list[int], dict[int, HistogramDelta]]


class Histogram:
    """Observations counted per bucket (not cumulative: the renderer adds up)."""

    def __init__(self) -> None:
        self.counts = [0] * SLOTS
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bucket_of(value)] += 1
        self.total += value

    def delta(self) -> HistogramDelta:
        return (self.counts, self.total)


def bucket_of(value: float) -> int:
    """The slot of the first bucket whose bound holds `value` (BUCKETS, then +Inf).

    A binary search spelled out with literal bounds: compiled, each test is one comparison of
    two doubles, where a loop over the BUCKETS tuple unboxed a float object per step (2,000
    instructions an observation, measured with bench/instructions_per_request.py)."""
    if value <= 0.05:
        if value <= 0.0025:
            if value <= 0.0005:
                return 0
            return 1 if value <= 0.001 else 2
        if value <= 0.01:
            return 3 if value <= 0.005 else 4
        return 5 if value <= 0.025 else 6
    if value <= 1.0:
        if value <= 0.25:
            return 7 if value <= 0.1 else 8
        return 9 if value <= 0.5 else 10
    if value <= 5.0:
        return 11 if value <= 2.5 else 12
    return 13 if value <= 10.0 else 14


class RouteSeries:
    """One route at one stage: answers by side and status class, and durations by side."""

    def __init__(self, route: str, stage: str) -> None:
        self.route = route
        self.stage = stage
        self.codes = [0] * 15
        self.durations: list[Histogram | None] = [None, None, None]


class WorkerMetrics:
    """The request-path series of one worker since the last `take_delta`."""

    def __init__(self) -> None:
        # By route name: the series of the stage the route had when last counted.
        self._routes: dict[str, RouteSeries] = {}
        # Series of a stage the route left since the last delta (a rollout moved it).
        self._left: list[RouteSeries] = []
        self._upstream: dict[str, Histogram] = {}
        self._shadow: dict[str, Histogram] = {}

    def request(self, route: str, stage: str, side: int, status: int, seconds: float) -> None:
        """One client request answered with `status`, `seconds` after its head was read."""
        series = self._routes.get(route)
        if series is None or series.stage != stage:
            series = self._new_series(route, stage, series)
        klass = status // 100
        if klass < 1 or klass > 5:
            klass = 5
        series.codes[side * 5 + klass - 1] += 1
        histogram = series.durations[side]
        if histogram is None:
            histogram = Histogram()
            series.durations[side] = histogram
        histogram.observe(seconds)

    def _new_series(self, route: str, stage: str, before: RouteSeries | None) -> RouteSeries:
        if before is not None:
            self._left.append(before)
        series = RouteSeries(route, stage)
        self._routes[route] = series
        return series

    def upstream(self, backend: str, seconds: float) -> None:
        """One upstream attempt answered its head `seconds` after it was sent."""
        histogram = self._upstream.get(backend)
        if histogram is None:
            histogram = self._upstream[backend] = Histogram()
        histogram.observe(seconds)

    def shadow(self, route: str, seconds: float) -> None:
        """The new side answered a shadow copy of `route`, `seconds` after the request's head."""
        histogram = self._shadow.get(route)
        if histogram is None:
            histogram = self._shadow[route] = Histogram()
        histogram.observe(seconds)

    def take_delta(
        self,
    ) -> tuple[list[RequestsDelta], dict[str, HistogramDelta], dict[str, HistogramDelta]]:
        """(requests, upstream durations by backend, shadow durations by route) counted since
        the last call, as plain lists, dicts and tuples (they cross a pipe with marshal)."""
        requests: list[RequestsDelta] = []
        for series in [*self._left, *self._routes.values()]:
            durations = {
                side: histogram.delta()
                for side, histogram in enumerate(series.durations)
                if histogram is not None
            }
            requests.append((series.route, series.stage, series.codes, durations))
        upstream = {name: h.delta() for name, h in self._upstream.items()}
        shadow = {name: h.delta() for name, h in self._shadow.items()}
        self._routes, self._left, self._upstream, self._shadow = {}, [], {}, {}
        return requests, upstream, shadow
