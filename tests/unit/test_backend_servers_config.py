"""`backends.X.urls`, `balance`, `health`, `outlier` and `dns_ttl_s`: what a file may say, the
errors it gets (file, line, field) otherwise, and which backends take the plain pool."""

from __future__ import annotations

import textwrap

import pytest

from strangler.config import parse_config
from strangler.errors import ConfigError
from strangler.runtime.snapshot_build import build_snapshot


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "s.yaml")
    return [(p.line, p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("backend", "field", "message"),
    [
        (
            '{url: "http://a:1", urls: ["http://b:1"]}',
            "backends.legacy.urls",
            "give `url` (one server) or `urls` (several), not both",
        ),
        (
            "{pool_size: 4}",
            "backends.legacy.url",
            "this field is required (or `urls` for several servers)",
        ),
        (
            '{urls: ["http://a:1", "https://b:1"]}',
            "backends.legacy.urls[1]",
            "every server of a backend has the same scheme and path prefix: 'https://b:1' differs "
            "from 'http://a:1'",
        ),
        (
            '{urls: ["http://a:1/v2", "http://b:1/v3"]}',
            "backends.legacy.urls[1]",
            "every server of a backend has the same scheme and path prefix: 'http://b:1/v3' "
            "differs from 'http://a:1/v2'",
        ),
        (
            '{urls: ["http://a:1", "http://a:1/"]}',
            "backends.legacy.urls[1]",
            "'http://a:1/' names the same server twice",
        ),
        (
            '{urls: ["a:1"]}',
            "backends.legacy.urls[0].url",
            "expected a URL with a scheme, e.g. http://a:1",
        ),
        (
            '{urls: [{url: "http://a:1", weight: 0}]}',
            "backends.legacy.urls[0].weight",
            "Input should be greater than or equal to 1 (got 0)",
        ),
        (
            "{urls: []}",
            "backends.legacy.urls",
            "List should have at least 1 item after validation, not 0 (got [])",
        ),
        (
            '{urls: ["http://a:1"], balance: random}',
            "backends.legacy.balance",
            "Input should be 'least_request' or 'round_robin' (got 'random')",
        ),
        (
            '{urls: ["http://a:1"], health: {interval: 5}}',
            "backends.legacy.health.interval",
            "unknown key; did you mean `interval_s`?",
        ),
        (
            '{urls: ["http://a:1"], outlier: {max_ejected_percent: 120}}',
            "backends.legacy.outlier.max_ejected_percent",
            "Input should be less than or equal to 100 (got 120)",
        ),
    ],
)
def test_a_bad_server_list_names_the_field(backend: str, field: str, message: str) -> None:
    problems = _problems(f"backends:\n  legacy: {backend}\n")
    assert problems == [(2, field, message)]


def test_only_a_backend_with_balancing_features_leaves_the_plain_pool() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            backends:
              legacy: {url: "http://10.0.0.1:3000"}
              new:
                urls: ["http://10.0.0.11:3000", {url: "http://10.0.0.12:3000", weight: 3}]
                balance: round_robin
                health: {path: /up, interval_s: 0.2}
                outlier: {consecutive_failures: 5, eject_s: 30, max_ejected_percent: 50}
              api: {url: "http://api.internal:80", dns_ttl_s: 30}
            """
        ),
        "s.yaml",
    )
    snapshot = build_snapshot(config, source="s.yaml")
    assert snapshot.backends["legacy"].balance is None
    plan = snapshot.backends["new"].balance
    assert plan is not None
    assert [(s.host, s.port, s.weight) for s in plan.servers] == [
        ("10.0.0.11", 3000, 1),
        ("10.0.0.12", 3000, 3),
    ]
    assert plan.policy == "round_robin"
    assert plan.health is not None and plan.health.interval_s == 0.2
    api = snapshot.backends["api"].balance
    assert api is not None and api.dns_ttl_s == 30 and api.health is None
    # Host header and timeouts of a backend with several servers come from its first URL.
    assert snapshot.backends["new"].authority == b"10.0.0.11:3000"
