"""The pure parts of the SLO rule export: windows in Prometheus' duration syntax, the histogram
bound a latency threshold is counted at, and a route regex that matches exactly the SLO's
routes whatever their names hold."""

from __future__ import annotations

import re
import textwrap

import pytest

from strangler.config import parse_config
from strangler.observe.slo.rules import (
    SliQueries,
    alert_windows,
    latency_bucket_s,
    prometheus_duration,
)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (300, "5m"),
        (1800, "30m"),
        (3600, "1h"),
        (86_400, "1d"),
        (3 * 86_400, "3d"),
        (28 * 86_400, "28d"),
        (90, "90s"),
        (10, "10s"),
        (5400, "90m"),
        (0.5, "500ms"),
    ],
)
def test_windows_render_in_the_largest_exact_unit(seconds: float, text: str) -> None:
    assert prometheus_duration(seconds) == text


@pytest.mark.parametrize(
    ("latency_ms", "bound_s"),
    [(300, 0.25), (250, 0.25), (249.9, 0.1), (0.5, 0.0005), (60_000, 10.0), (1000, 1.0)],
)
def test_latency_counts_at_the_largest_bucket_at_or_below_it(
    latency_ms: float, bound_s: float
) -> None:
    assert latency_bucket_s(latency_ms) == bound_s


def test_latency_below_every_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="smallest histogram bucket"):
        latency_bucket_s(0.4)


CONFIG = textwrap.dedent(
    """\
    backends:
      legacy: {url: "http://127.0.0.1:3000"}
      new: {url: "http://127.0.0.1:8080"}
    routes:
      - {name: "a.b+c", match: "GET /one"}
      - {name: "a(x)|y", match: "GET /two"}
      - {name: "axb+c", match: "GET /three"}
      - {name: "other", match: "GET /four"}
    slos:
      - name: odd-names
        routes: ["a.b+c", "a(x)|y"]
        objective: 99.5
        alerts:
          - {severity: page, burn: 10, long: 1h, short: 5m}
          - {severity: ticket, burn: 2, long: 6h, short: 1h}
    """
)


def test_route_regex_matches_exactly_the_selected_names() -> None:
    config = parse_config(CONFIG, "strangler.yaml")
    queries = SliQueries.of(config, config.slos[0])
    match = re.fullmatch(r'route=~"(.*)"', queries.selector)
    assert match is not None
    # Undo the PromQL string escaping; PromQL anchors the regex, as fullmatch does.
    pattern = match[1].replace("\\\\", "\\")
    names = [route.name for route in config.routes]
    assert [name for name in names if re.fullmatch(pattern, name)] == ["a.b+c", "a(x)|y"]


def test_alert_windows_are_those_the_alerts_read_once_each() -> None:
    config = parse_config(CONFIG, "strangler.yaml")
    assert [prometheus_duration(w) for w in alert_windows(config.slos[0])] == ["5m", "1h", "6h"]
