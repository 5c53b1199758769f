"""The balancer's choices and its health bookkeeping, without sockets: smooth weighted round
robin's order, least_request's preference, skipping servers that are down or ejected (and
using all of them when none is left), and max_ejected_percent."""

from __future__ import annotations

import asyncio
import textwrap
from collections import Counter
from collections.abc import Iterator

import pytest

from strangler.config import parse_config
from strangler.observe.counters import Counters
from strangler.proxy.balance import BalancedPool
from strangler.proxy.tasks import TaskSet
from strangler.runtime.snapshot_build import build_snapshot


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _balancer(loop: asyncio.AbstractEventLoop, backend: str) -> BalancedPool:
    text = f"backends:\n  legacy:\n{textwrap.indent(textwrap.dedent(backend), '    ')}"
    snapshot = build_snapshot(parse_config(text, "s.yaml"), source="s.yaml")
    return BalancedPool(snapshot.backends["legacy"], loop, TaskSet(loop), Counters())


def _picks(balancer: BalancedPool, count: int) -> list[str]:
    now = balancer.loop.time()
    return [balancer.pick(now).target.host for _ in range(count)]


def test_smooth_weighted_round_robin_interleaves_by_weight(
    loop: asyncio.AbstractEventLoop,
) -> None:
    balancer = _balancer(
        loop,
        """\
        urls: [{url: "http://a:1", weight: 5}, "http://b:1", "http://c:1"]
        balance: round_robin
        """,
    )
    # nginx's smooth weighted round robin for weights 5, 1, 1.
    assert _picks(balancer, 14) == list("aabacaa" * 2)


def test_least_request_prefers_the_server_with_fewer_requests_in_flight(
    loop: asyncio.AbstractEventLoop,
) -> None:
    balancer = _balancer(loop, 'urls: ["http://a:1", "http://b:1"]\n')
    busy = balancer.servers[0]
    busy.connecting = 3  # three requests on their way to `a`
    assert set(_picks(balancer, 20)) == {"b"}
    busy.connecting = 0
    assert set(_picks(balancer, 200)) == {"a", "b"}


def test_servers_down_or_ejected_are_skipped_until_none_is_left(
    loop: asyncio.AbstractEventLoop,
) -> None:
    balancer = _balancer(loop, 'urls: ["http://a:1", "http://b:1", "http://c:1"]\n')
    a, b, c = balancer.servers
    a.is_up = False
    b.ejected_until = loop.time() + 60
    assert set(_picks(balancer, 30)) == {"c"}
    c.is_up = False
    # None available: every server is tried (a backend all down answers as an unreachable one).
    assert set(_picks(balancer, 200)) == {"a", "b", "c"}
    assert not balancer.has_healthy_server()


@pytest.mark.parametrize(
    ("percent", "servers", "most"), [(50, 3, 1), (50, 2, 1), (100, 2, 2), (0, 3, 0)]
)
def test_outlier_detection_never_ejects_past_max_ejected_percent(
    loop: asyncio.AbstractEventLoop, percent: int, servers: int, most: int
) -> None:
    urls = ", ".join(f'"http://s{i}:1"' for i in range(servers))
    balancer = _balancer(
        loop,
        f"urls: [{urls}]\noutlier: {{consecutive_failures: 2, max_ejected_percent: {percent}}}\n",
    )
    for server in balancer.servers:
        for _ in range(5):
            balancer.note_failure(server, "connect_refused")
    ejected = [s.target.host for s in balancer.servers if s.state() == "ejected"]
    assert len(ejected) == most
    counts = Counter(key[0] for key, _ in balancer.counters.items())
    assert counts["backend_ejections_total"] == most


def test_an_answer_below_500_resets_the_failures_in_a_row(
    loop: asyncio.AbstractEventLoop,
) -> None:
    balancer = _balancer(
        loop, 'urls: ["http://a:1", "http://b:1"]\noutlier: {consecutive_failures: 3}\n'
    )
    server = balancer.servers[0]
    for status in (500, 503, 404, 502, 500):
        balancer.note_status(server, status)
    assert server.state() == "up"
    balancer.note_status(server, 504)
    assert server.state() == "ejected"
    report = balancer.report()
    assert report["healthy"] == 1
    servers = report["servers"]
    assert isinstance(servers, list)
    assert [s["state"] for s in servers] == ["ejected", "up"]


def test_active_checks_mark_a_server_down_and_up_after_their_thresholds(
    loop: asyncio.AbstractEventLoop,
) -> None:
    balancer = _balancer(
        loop,
        'urls: ["http://a:1"]\nhealth: {unhealthy_after: 3, healthy_after: 2}\n',
    )
    server = balancer.servers[0]
    states = []
    for is_ok in (False, False, True, False, False, False, True, True):
        balancer.note_probe(server, is_ok)
        states.append(server.state())
    assert states == ["up", "up", "up", "up", "up", "down", "down", "up"]
