"""Large and hostile pairs through the real gateway: a pair past the diff's node budget counts as
dropped (`diff_budget`), never silently; large pairs are compared in the worker's helper process
and recorded as they would be on the loop; the client's answer is legacy's, untouched, and the
gateway goes on answering other requests meanwhile."""

from __future__ import annotations

import concurrent.futures

import httpx
import orjson
import psutil

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.probes import shadow_results, wait_until
from tests.integration.upstreams import EchoUpstream

# Both upstreams answer /chaos/... with the body a test sets; the paths pick the route.
ROUTES = """\
  - name: big.off
    match: "GET /chaos/off/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0, timeout_s: 5}
  - name: big.on
    match: "GET /chaos/on/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0, timeout_s: 5, diff_off_loop_bytes: null}
  - name: echo.shadow
    match: "ANY /echo/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0, timeout_s: 5}
    diff:
      ignore: ["$.name", "$.headers"]
"""
# ~0.7 MB a side, shaped against the walk: 350,000 numbers of which only the last differs.
# Comparing them visits 700,000 nodes, past the default budget of 200,000.
HOSTILE_LEGACY = orjson.dumps([0] * 350_000)
HOSTILE_NEW = orjson.dumps([*([0] * 349_999), 1])


def _serve(upstream: EchoUpstream, body: bytes) -> None:
    upstream.app.state.chaos = {"status": 200, "delay_ms": 0, "body": body}


def _diff_helpers(gw: GatewayProcess) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(gw.pid).children(recursive=True)
        if "strangler.diff" in child.cmdline()
    ]


def test_a_hostile_pair_is_counted_over_budget_and_the_gateway_keeps_answering(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    _serve(legacy, HOSTILE_LEGACY)
    _serve(new, HOSTILE_NEW)
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES)
    with (
        httpx.Client(base_url=gw.url, timeout=10) as client,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        hostile = [
            pool.submit(client.get, f"/chaos/{side}/{i}")
            for i in range(3)
            for side in ("off", "on")
        ]
        echoes = [client.get(f"/echo/meanwhile/{i}") for i in range(20)]
        answers = [future.result() for future in hostile]
    assert all(a.status_code == 200 and a.content == HOSTILE_LEGACY for a in answers)
    assert [e.json()["path"] for e in echoes] == [f"/echo/meanwhile/{i}" for i in range(20)]
    assert all(e.json()["name"] == "legacy" for e in echoes)
    wait_until(lambda: len(new.requests) == 6 + 20, "every copy to reach the new backend")
    results = shadow_results(gw)
    for route in ("big.off", "big.on"):
        stats = results[route]
        assert (stats["mirrored"], stats["compared"], stats["dropped"]) == (
            3,
            0,
            {"diff_budget": 3},
        ), route
    echo = results["echo.shadow"]
    assert (echo["mirrored"], echo["compared"], echo["equal"]) == (20, 20, 20)
    assert "shadow_diffs_off_loop_total{big.off}" in gw.wait_for_log("drained; counters")
    assert "shadow_diffs_off_loop_total{big.on}" not in gw.wait_for_log("drained; counters")


def test_a_large_pair_compared_off_the_loop_is_recorded_as_on_the_loop(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    items = [{"id": i, "title": f"item {i}", "tags": ["a", "b"]} for i in range(3000)]
    changed = [dict(item) for item in items]
    changed[42]["title"] = "renamed"
    del changed[7]["tags"]
    _serve(legacy, orjson.dumps({"items": items, "total": 3000}))
    _serve(new, orjson.dumps({"items": changed, "total": 2999}))
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES)
    assert not _diff_helpers(gw)  # started with the first large pair, not before
    for i in range(4):
        assert httpx.get(f"{gw.url}/chaos/off/{i}").status_code == 200
    wait_until(lambda: len(new.requests) == 4, "the copies")
    wait_until(lambda: len(_diff_helpers(gw)) == 1, "the worker's diff helper")
    for i in range(4):
        assert httpx.get(f"{gw.url}/chaos/on/{i}").status_code == 200
    wait_until(lambda: len(new.requests) == 8, "the copies")
    (helper,) = _diff_helpers(gw)
    results = shadow_results(gw)
    assert not helper.is_running()  # the worker stops its helper as it stops
    off, on = results["big.off"], results["big.on"]
    for stats in (off, on):
        assert (stats["mirrored"], stats["compared"], stats["different"], stats["dropped"]) == (
            4,
            4,
            4,
            {},
        )
    assert (
        _paths(off)
        == _paths(on)
        == {
            ("$.items[*].tags", "missing", 4),
            ("$.items[*].title", "changed", 4),
            ("$.total", "changed", 4),
        }
    )


def _paths(stats: dict[str, object]) -> set[tuple[str, str, int]]:
    paths = stats["paths"]
    assert isinstance(paths, list)
    return {(path["path"], path["kind"], path["count"]) for path in paths}


def test_a_small_pair_whose_walk_needs_more_than_the_loop_allows_goes_to_the_helper(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    # 60 KB, under diff_off_loop_bytes, but 60,000 nodes: more than MAX_NODES_ON_LOOP.
    _serve(legacy, orjson.dumps([0] * 30_000))
    _serve(new, orjson.dumps([*([0] * 29_999), 1]))
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES)
    for i in range(2):
        assert httpx.get(f"{gw.url}/chaos/off/{i}").status_code == 200
        assert httpx.get(f"{gw.url}/chaos/on/{i}").status_code == 200
    wait_until(lambda: len(new.requests) == 4, "the copies")
    results = shadow_results(gw)
    for route in ("big.off", "big.on"):
        stats = results[route]
        assert (stats["compared"], stats["different"], stats["dropped"]) == (2, 2, {}), route
        assert _paths(stats) == {("$[*]", "changed", 2)}
    counters = gw.wait_for_log("drained; counters")
    assert "shadow_diffs_off_loop_total{big.off}" in counters
    assert "shadow_diffs_off_loop_total{big.on}" not in counters
