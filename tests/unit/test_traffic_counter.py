"""TrafficCounter: a worker's answers per route, minute and side, with their latencies, and the
new backend's answers to shadow copies kept apart from the client's."""

from __future__ import annotations

from strangler.control.store import DEFAULT_ROUTE, TrafficDelta
from strangler.observe.traffic import TrafficCounter
from strangler.rollout import LatencyHistogram


def _histogram(*seconds: float) -> dict[str, int]:
    histogram = LatencyHistogram()
    for value in seconds:
        histogram.record(value)
    return histogram.to_json()


def test_answers_and_copies_are_counted_per_minute_and_side_with_their_latencies() -> None:
    counter = TrafficCounter(now=600.0)  # minute 10
    counter.count("r", False, 200, 0.010)
    counter.count("r", False, 503, 0.020)
    counter.count("r", True, 200, 0.005)
    counter.count_shadow("r", 500, 0.030)
    counter.count(None, False, 404, 0.001)
    counter.tick(660.0)  # minute 11
    counter.count("r", True, 200, 0.004)
    deltas = sorted(counter.take_deltas(), key=lambda d: (d.route, d.minute))
    assert deltas == [
        TrafficDelta(DEFAULT_ROUTE, 10, 1, 0, legacy_latency=_histogram(0.001)),
        TrafficDelta(
            "r", 10, legacy=2, new=1, legacy_errors=1,
            legacy_latency=_histogram(0.010, 0.020), new_latency=_histogram(0.005),
            shadow=1, shadow_errors=1, shadow_latency=_histogram(0.030),
        ),
        TrafficDelta("r", 11, 0, 1, new_latency=_histogram(0.004)),
    ]  # fmt: skip
    assert counter.take_deltas() == ()
