"""The metrics of several workers added up without sockets: WorkerMetrics deltas, the hub's
totals across workers that come and go, and the exposition parsed by Prometheus' own parser."""

from __future__ import annotations

import marshal
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from strangler.observe.exposition import FAMILIES, MetricsHub
from strangler.observe.metrics import (
    BUCKETS,
    SIDE_GATEWAY,
    SIDE_LEGACY,
    SIDE_NEW,
    Histogram,
    WorkerMetrics,
    bucket_of,
)


def _message(pid: int, worker: str, metrics: WorkerMetrics, **extra: Any) -> dict[str, Any]:
    requests, upstream, shadow = metrics.take_delta()
    message = {
        "pid": pid,
        "worker": worker,
        "requests": requests,
        "upstream": upstream,
        "shadow": shadow,
        **extra,
    }
    # What crosses the pipe: marshal must take it whole.
    loaded: dict[str, Any] = marshal.loads(marshal.dumps(message))
    return loaded


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _requests(samples: dict[Any, float], **labels: str) -> float:
    key = ("strangler_requests_total", tuple(sorted(labels.items())))
    return samples.get(key, 0.0)


def test_histogram_puts_each_value_in_the_first_bucket_that_holds_it() -> None:
    histogram = Histogram()
    for value in (0.0, 0.0005, 0.00051, 0.003, 10.0, 11.0):
        histogram.observe(value)
    counts, total = histogram.delta()
    assert counts[0] == 2  # le 0.0005 (inclusive, as Prometheus' `le`)
    assert counts[1] == 1  # le 0.001
    assert counts[BUCKETS.index(0.005)] == 1
    assert counts[BUCKETS.index(10.0)] == 1
    assert counts[len(BUCKETS)] == 1  # +Inf
    assert total == pytest.approx(21.00401)


def test_two_workers_add_up_exactly_and_a_delta_is_never_counted_twice() -> None:
    hub = MetricsHub(version="1.2.3", compiled=True)
    first, second = WorkerMetrics(), WorkerMetrics()
    for _ in range(30):
        first.request("projects", "shadow", SIDE_LEGACY, 200, 0.002)
    for _ in range(12):
        second.request("projects", "shadow", SIDE_LEGACY, 200, 0.004)
    second.request("projects", "shadow", SIDE_LEGACY, 503, 0.5)
    second.request("_default", "none", SIDE_GATEWAY, 400, 0.0)
    hub.add("0", _message(10, "0", first))
    hub.add("1", _message(11, "1", second))
    # Nothing new since: the next messages carry nothing more.
    hub.add("0", _message(10, "0", first))
    hub.add("1", _message(11, "1", second))
    samples = _samples(hub.render().decode())
    route = {"route": "projects", "stage": "shadow", "side": "legacy"}
    assert _requests(samples, **route, code_class="2xx") == 42
    assert _requests(samples, **route, code_class="5xx") == 1
    assert _requests(samples, route="_default", stage="none", side="gateway", code_class="4xx") == 1
    count = samples[
        ("strangler_request_duration_seconds_count", (("route", "projects"), ("side", "legacy")))
    ]
    assert count == 43
    bucket = samples[
        (
            "strangler_request_duration_seconds_bucket",
            (("le", "0.0025"), ("route", "projects"), ("side", "legacy")),
        )
    ]
    assert bucket == 30  # cumulative: the 2 ms answers only


def test_a_route_that_changes_stage_keeps_both_series() -> None:
    hub = MetricsHub(version="1", compiled=False)
    metrics = WorkerMetrics()
    metrics.request("r", "canary", SIDE_NEW, 200, 0.01)
    metrics.request("r", "new", SIDE_NEW, 200, 0.01)
    metrics.request("r", "new", SIDE_NEW, 201, 0.01)
    hub.add("0", _message(1, "0", metrics))
    samples = _samples(hub.render().decode())
    assert _requests(samples, route="r", stage="canary", side="new", code_class="2xx") == 1
    assert _requests(samples, route="r", stage="new", side="new", code_class="2xx") == 2


def test_counters_of_a_worker_that_went_stay_in_the_totals_and_its_gauges_go() -> None:
    hub = MetricsHub(version="1", compiled=False)
    metrics = WorkerMetrics()
    hub.add(
        "0",
        _message(
            100,
            "0",
            metrics,
            totals=[(("upstream_retries_total", "legacy"), 5.0)],
            gauges=[(("connections", "open"), 7.0)],
        ),
    )
    hub.add(
        "1",
        _message(
            101,
            "1",
            metrics,
            totals=[(("upstream_retries_total", "legacy"), 2.0)],
            gauges=[(("connections", "open"), 1.0)],
        ),
    )
    samples = _samples(hub.render().decode())
    retries = ("strangler_upstream_retries_total", (("backend", "legacy"),))
    assert samples[retries] == 7
    assert samples[("strangler_connections", (("state", "open"),))] == 8
    # Worker 0 died and a new process took its place (new pid, counting from zero).
    hub.add(
        "0",
        _message(
            200,
            "0",
            metrics,
            totals=[(("upstream_retries_total", "legacy"), 1.0)],
            gauges=[(("connections", "open"), 0.0)],
        ),
    )
    samples = _samples(hub.render().decode())
    assert samples[retries] == 8  # 5 of the dead one + 2 + 1: never goes down
    assert samples[("strangler_connections", (("state", "open"),))] == 1
    hub.retire("1")
    samples = _samples(hub.render().decode())
    assert samples[retries] == 8


def test_stage_gauges_come_from_the_worker_with_the_newest_state() -> None:
    hub = MetricsHub(version="1", compiled=False)
    metrics = WorkerMetrics()
    old = [(("state_version",), 3.0), (("route_stage", "r", "canary"), 1.0)]
    new = [(("state_version",), 4.0), (("route_stage", "r", "legacy"), 1.0)]
    hub.add("0", _message(1, "0", metrics, gauges=old))
    hub.add("1", _message(2, "1", metrics, gauges=new))
    samples = _samples(hub.render().decode())
    assert samples[("strangler_route_stage", (("route", "r"), ("stage", "legacy")))] == 1
    assert ("strangler_route_stage", (("route", "r"), ("stage", "canary"))) not in samples
    assert samples[("strangler_state_version", ())] == 4


def test_label_values_are_escaped() -> None:
    hub = MetricsHub(version="1", compiled=False)
    metrics = WorkerMetrics()
    name = 'odd "name" \\ with\nnewline'
    metrics.request(name, "legacy", SIDE_LEGACY, 200, 0.001)
    hub.add("0", _message(1, "0", metrics))
    samples = _samples(hub.render().decode())
    assert _requests(samples, route=name, stage="legacy", side="legacy", code_class="2xx") == 1


def test_openmetrics_document_parses_and_ends_with_eof() -> None:
    hub = MetricsHub(version="1", compiled=True)
    metrics = WorkerMetrics()
    metrics.request("r", "legacy", SIDE_LEGACY, 200, 0.001)
    metrics.upstream("legacy", 0.0009)
    hub.add("0", _message(1, "0", metrics, totals=[(("config_reloads_total", "applied"), 1.0)]))
    text = hub.render(openmetrics=True).decode()
    assert text.endswith("# EOF\n")
    families = {family.name: family for family in openmetrics_families(text)}
    assert families["strangler_requests"].type == "counter"
    assert families["strangler_upstream_duration_seconds"].type == "histogram"
    assert families["strangler_build_info"].samples[0].labels["compiled"] == "true"


def test_only_series_that_saw_traffic_are_rendered() -> None:
    hub = MetricsHub(version="1", compiled=False)
    text = hub.render().decode()
    assert "strangler_requests_total" not in text
    assert "strangler_build_info" in text


def test_every_counter_the_code_increments_has_a_family() -> None:
    """A counter incremented in the code but missing from FAMILIES would never be exported."""
    source = Path(__file__).resolve().parents[2] / "src" / "strangler"
    used = set()
    for path in source.rglob("*.py"):
        used.update(re.findall(r'\.inc\(\s*"([a-z_]+)"', path.read_text()))
    assert used, "no counters found: the pattern is out of date"
    assert sorted(used - set(FAMILIES)) == []


def test_every_family_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    missing = [name for name in FAMILIES if f"`strangler_{name}`" not in readme]
    assert missing == []


def test_bucket_of_agrees_with_the_bounds_at_and_around_each_of_them() -> None:
    def by_loop(value: float) -> int:
        return next((i for i, bound in enumerate(BUCKETS) if value <= bound), len(BUCKETS))

    for bound in BUCKETS:
        for value in (bound * 0.999, bound, bound * 1.001):
            assert bucket_of(value) == by_loop(value), value
    for value in (-1.0, 0.0, 1e-9, 11.0, 1e9, float("inf")):
        assert bucket_of(value) == by_loop(value), value
