"""The demo's RED line, from two real exposition documents rendered by the metrics hub."""

from __future__ import annotations

import pytest

from strangler.demo.red import parse, quantile, red_lines
from strangler.observe.exposition import MetricsHub
from strangler.observe.metrics import SIDE_LEGACY, SIDE_NEW, WorkerMetrics


def _scrape(hub: MetricsHub, metrics: WorkerMetrics) -> str:
    requests, upstream, shadow = metrics.take_delta()
    message = {"pid": 1, "worker": "0", "requests": requests, "upstream": upstream}
    hub.add("0", message | {"shadow": shadow})
    return hub.render().decode()


def test_quantile_interpolates_inside_a_bucket_like_promql() -> None:
    buckets = [(0.001, 0.0), (0.002, 10.0), (0.005, 10.0), (float("inf"), 10.0)]
    assert quantile(0.5, buckets) == pytest.approx(0.0015)
    assert quantile(0.99, buckets) == pytest.approx(0.00199)
    assert quantile(0.5, [(0.001, 0.0), (float("inf"), 0.0)]) is None
    # Everything above the last finite bound: PromQL answers that bound.
    assert quantile(0.5, [(0.001, 0.0), (float("inf"), 4.0)]) == 0.001


def test_red_lines_show_what_happened_between_two_reads_per_side() -> None:
    hub, metrics = MetricsHub(version="1", compiled=False), WorkerMetrics()
    metrics.request("projects", "canary", SIDE_LEGACY, 200, 0.003)
    first = parse(_scrape(hub, metrics), at=100.0)
    for _ in range(18):
        metrics.request("projects", "canary", SIDE_LEGACY, 200, 0.003)
    for _ in range(2):
        metrics.request("projects", "canary", SIDE_LEGACY, 503, 0.003)
    for _ in range(10):
        metrics.request("projects", "canary", SIDE_NEW, 200, 0.0015)
    for _ in range(5):
        metrics.request("tasks", "shadow", SIDE_LEGACY, 200, 0.002)
        metrics.shadow("tasks", 0.02)
    second = parse(_scrape(hub, metrics), at=110.0)
    line, shadowed = red_lines(first, second)  # routes in name order
    assert shadowed.startswith("tasks (shadow): legacy 0.5/s 0.0% 5xx p50 1.")
    assert shadowed.split(" · ")[1].startswith("new (shadow copies) 0.5/s p50 1")
    assert line.startswith("projects (canary): ")
    legacy, new = line.split(": ", 1)[1].split(" · ")
    assert legacy.startswith("legacy 2.0/s 10.0% 5xx p50 3.")
    assert new.startswith("new 1.0/s 0.0% 5xx p50 1.")
    # Nothing new since: no line.
    assert red_lines(second, parse(_scrape(hub, metrics), at=120.0)) == []
