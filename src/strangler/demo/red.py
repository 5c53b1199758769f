"""The demo's live RED line per route (rate, errors, duration), read from the gateway's own
`/metrics`: the same counters Prometheus would scrape, differenced between two reads.

Percentiles are interpolated inside the histogram's buckets the way PromQL's
histogram_quantile does (linearly, the first bucket starting at 0), so the demo and a Grafana
panel on the same counters say the same thing.
"""

from __future__ import annotations

import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field

import httpx

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

# (route, side) -> answers, 5xx answers, and the cumulative bucket counts by upper bound.
Key = tuple[str, str]
SHADOW_COPIES = "new (shadow copies)"


@dataclass(slots=True)
class Reading:
    at: float
    answers: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    errors: dict[Key, float] = field(default_factory=lambda: defaultdict(float))
    buckets: dict[Key, dict[float, float]] = field(default_factory=lambda: defaultdict(dict))
    stages: dict[str, str] = field(default_factory=dict)


def parse(text: str, at: float) -> Reading:
    """The request counters and duration buckets of one /metrics document."""
    reading = Reading(at)
    for line in text.splitlines():
        if not line.startswith(("strangler_re", "strangler_shadow_duration")):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        name, labels_text, value_text = match.groups()
        labels = dict(_LABEL.findall(labels_text))
        value = float(value_text)
        if name == "strangler_requests_total":
            key = (labels["route"], labels["side"])
            reading.answers[key] += value
            if labels["code_class"] == "5xx":
                reading.errors[key] += value
            reading.stages[labels["route"]] = labels["stage"]
        elif name == "strangler_request_duration_seconds_bucket":
            key = (labels["route"], labels["side"])
            reading.buckets[key][float(labels["le"])] = value
        elif name == "strangler_shadow_duration_seconds_bucket":
            # The new side's answers to the copies of a shadowed route: counted as answers of
            # the side `copies` (their status is in the comparisons, not here).
            key = (labels["route"], SHADOW_COPIES)
            reading.buckets[key][float(labels["le"])] = value
    return reading


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative (upper bound, count) pairs sorted by bound."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower  # the highest finite bound, as PromQL answers
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


def red_lines(before: Reading, after: Reading) -> list[str]:
    """One line per route that answered between the two readings, legacy and new side by side."""
    seconds = max(after.at - before.at, 1e-9)
    routes: dict[str, list[str]] = {}
    for key in sorted(after.buckets):
        old = before.buckets.get(key, {})
        delta = sorted(
            (bound, count - old.get(bound, 0.0)) for bound, count in after.buckets[key].items()
        )
        answered = delta[-1][1] if delta else 0.0
        if answered <= 0:
            continue
        route, side = key
        p50, p99 = quantile(0.5, delta), quantile(0.99, delta)
        errors = ""
        if side != SHADOW_COPIES:
            failed = after.errors.get(key, 0.0) - before.errors.get(key, 0.0)
            errors = f" {100 * failed / answered:.1f}% 5xx"
        routes.setdefault(route, []).append(
            f"{side} {answered / seconds:.1f}/s{errors} p50 {_ms(p50)} p99 {_ms(p99)}"
        )
    return [
        f"{route} ({after.stages.get(route, '?')}): " + " · ".join(sides)
        for route, sides in routes.items()
    ]


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


class RedReader:
    """Reads `metrics_url` each time `lines` is called; the first call only takes a reading."""

    def __init__(self, metrics_url: str) -> None:
        self.metrics_url = metrics_url
        self._last: Reading | None = None

    async def lines(self, client: httpx.AsyncClient) -> list[str]:
        try:
            answer = await client.get(self.metrics_url, timeout=5.0)
            answer.raise_for_status()
        except httpx.HTTPError as exc:
            return [f"/metrics unreadable: {exc}"]
        reading = parse(answer.text, time.monotonic())
        before, self._last = self._last, reading
        return [] if before is None else red_lines(before, reading)
