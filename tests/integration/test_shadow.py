"""Stage `shadow` through the real gateway: the client gets legacy's answer, untouched and on
time; a copy goes to the new backend; both answers are compared; unsafe methods stay home."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli
from tests.integration.probes import shadow_results, wait_until
from tests.integration.upstreams import EchoUpstream, RawUpstream

# The echo bodies name their upstream and repeat the request's headers, which differ on the copy
# (X-Strangler-Shadow, span id) by design: the rules ignore those, so parity measures the rest.
SHADOW_ROUTES = """\
  - name: echo.shadow
    match: "ANY /echo/*rest"
    stage: shadow
    shadow: {timeout_s: 0.5, noise_sample_rate: 0}
    diff:
      ignore: ["$.name", "$.headers"]
  - name: writes.sandbox
    match: "ANY /sandbox/*rest"
    stage: shadow
    shadow: {writes: sandbox, noise_sample_rate: 0}
    diff:
      ignore: ["$.headers"]
"""


def test_client_gets_legacy_answer_and_new_backend_gets_a_marked_copy(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=SHADOW_ROUTES)
    response = httpx.get(gw.url + "/echo/a?x=1")
    assert response.status_code == 200
    assert response.json()["name"] == "legacy"
    assert response.headers["x-upstream"] == "legacy"
    wait_until(lambda: new.requests, "the copy to reach the new backend")
    (copy,) = new.requests
    (primary,) = legacy.requests
    assert copy["path"] == "/echo/a"
    assert copy["headers"]["x-strangler-shadow"] == "1"
    assert "x-strangler-shadow" not in primary["headers"]
    primary_trace = primary["headers"]["traceparent"].split("-")
    copy_trace = copy["headers"]["traceparent"].split("-")
    assert copy_trace[1] == primary_trace[1]  # same trace
    assert copy_trace[2] != primary_trace[2]  # its own span


def test_a_client_cannot_mark_its_own_request_as_a_shadow_copy(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url)
    httpx.get(gw.url + "/plain", headers={"X-Strangler-Shadow": "1"})
    assert "x-strangler-shadow" not in legacy.requests[0]["headers"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_unsafe_methods_are_not_mirrored_by_default(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream], method: str
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=SHADOW_ROUTES)
    assert httpx.request(method, gw.url + "/echo/w", content=b"data").status_code == 200
    # A GET after it is mirrored, so once that copy arrived the write would have too.
    httpx.get(gw.url + "/echo/after")
    wait_until(lambda: new.requests, "the GET's copy")
    assert [r["path"] for r in new.requests] == ["/echo/after"]
    stats = shadow_results(gw)["echo.shadow"]
    assert stats["dropped"] == {"not_mirrored_unsafe": 1}
    assert stats["mirrored"] == 1


def test_sandbox_route_mirrors_writes_with_the_same_body(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=SHADOW_ROUTES)
    body = b"x" * 50_000
    chunked = (b"y" * 1000 for _ in range(20))
    assert httpx.post(gw.url + "/sandbox/one", content=body).status_code == 200
    assert httpx.post(gw.url + "/sandbox/two", content=chunked).status_code == 200
    wait_until(lambda: len(new.requests) == 2, "both copies")
    copies = {r["path"]: r for r in new.requests}
    assert copies["/sandbox/one"]["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert copies["/sandbox/two"]["body_sha256"] == hashlib.sha256(b"y" * 20_000).hexdigest()
    assert copies["/sandbox/two"]["method"] == "POST"


def test_answers_are_compared_and_counted(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=SHADOW_ROUTES)
    for index in range(5):
        httpx.get(f"{gw.url}/echo/same/{index}")
    # Without the ignore rule for $.name, "legacy" vs "new" is a real difference.
    for index in range(3):
        httpx.get(f"{gw.url}/sandbox/diff/{index}")
    wait_until(lambda: len(new.requests) == 8, "all copies")
    results = shadow_results(gw)
    same = results["echo.shadow"]
    assert (same["mirrored"], same["compared"], same["equal"], same["different"]) == (5, 5, 5, 0)
    diff = results["writes.sandbox"]
    assert (diff["compared"], diff["different"]) == (3, 3)
    (path,) = diff["paths"]
    assert path["path"] == "$.name"
    assert path["count"] == 3
    assert "examples" not in path  # the log has counts; examples are in the store only
    config = str(gw.config_path)
    examples = _cli("diffs", "writes.sandbox", "--examples", "--config", config, "--json")
    example = orjson.loads(examples.stdout)[0]
    assert (example["legacy"], example["new"]) == ("legacy", "new")
    assert example["request"].startswith("GET /sandbox/diff/")


def _hanging_upstream() -> RawUpstream:
    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(30)

    return RawUpstream(hang).start()


def test_slow_or_dead_shadow_costs_the_client_nothing(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, _ = upstreams
    hanging = _hanging_upstream()
    try:
        gw = start_gateway(legacy=legacy.url, new=hanging.url, routes=SHADOW_ROUTES)
        with httpx.Client() as client:
            for index in range(5):
                response = client.get(f"{gw.url}/echo/slow/{index}", timeout=2.0)
                assert response.json()["name"] == "legacy"
        # timeout_s is 0.5 s: the copies give up on their own; stopping waits for them.
        wait_until(lambda: hanging.connections >= 1, "copies to reach the hanging backend")
        results = shadow_results(gw)["echo.shadow"]
        assert results["compared"] == 0
        assert results["dropped"] == {"shadow_timeout": 5}
    finally:
        hanging.stop()


def test_refused_shadow_backend_is_counted_as_a_shadow_error(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, _ = upstreams
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    gw = start_gateway(legacy=legacy.url, new=dead, routes=SHADOW_ROUTES)
    assert httpx.get(gw.url + "/echo/dead").json()["name"] == "legacy"
    results = shadow_results(gw)["echo.shadow"]
    assert results["dropped"] == {"shadow_error": 1}


def test_copies_over_the_in_flight_bound_are_dropped_as_queue_full(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, _ = upstreams
    hanging = _hanging_upstream()
    try:
        gw = start_gateway(
            legacy=legacy.url,
            new=hanging.url,
            routes=SHADOW_ROUTES,
            extra="limits:\n  max_shadow_in_flight: 1\n",
        )
        with httpx.Client() as client:
            for index in range(4):
                assert client.get(f"{gw.url}/echo/q/{index}").json()["name"] == "legacy"
        results = shadow_results(gw)["echo.shadow"]
        assert results["mirrored"] == 1
        assert results["dropped"] == {"queue_full": 3, "shadow_timeout": 1}
    finally:
        hanging.stop()


def test_bodies_over_the_capture_limit_drop_the_comparison(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    routes = SHADOW_ROUTES.replace("{writes: sandbox,", "{writes: sandbox, max_body_bytes: 1000,")
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=routes)
    response = httpx.post(gw.url + "/sandbox/big", content=b"z" * 5000)
    assert response.json()["body_bytes"] == 5000  # the client's request is untouched
    assert httpx.get(gw.url + "/sandbox/bytes").status_code == 200
    results = shadow_results(gw)["writes.sandbox"]
    assert results["dropped"] == {"body_too_large": 1}
    assert results["compared"] == 1


def test_compressed_answers_are_inflated_and_compared_bounded(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    routes = """\
  - name: documents
    match: "GET /document/:n"
    stage: shadow
    shadow: {noise_sample_rate: 0, max_body_bytes: 20000}
"""
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=routes)
    with httpx.Client() as client:
        for n in (1, 50, 100):
            response = client.get(f"{gw.url}/document/{n}", headers={"Accept-Encoding": "gzip"})
            assert response.headers["content-encoding"] == "gzip"  # the client's answer as is
            assert len(response.json()["items"]) == n
        # 2,000 items inflate past the 20,000-byte bound, though legacy sends far less than that.
        big = client.get(f"{gw.url}/document/2000", headers={"Accept-Encoding": "gzip"})
        assert int(big.headers["content-length"]) < 20_000
    wait_until(lambda: len(new.hits) == 4, "all copies")
    stats = shadow_results(gw)["documents"]
    assert (stats["compared"], stats["equal"], stats["different"]) == (3, 3, 0)
    assert stats["dropped"] == {"body_too_large": 1}


def _nonce_gateway(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream], shadow: str
) -> GatewayProcess:
    """A gateway shadowing `GET /nonce/:id` (whose `$.nonce` differs on every answer)."""
    legacy, new = upstreams
    routes = f"""\
  - name: nonce
    match: "GET /nonce/:id"
    stage: shadow
    shadow: {{{shadow}}}
"""
    return start_gateway(legacy=legacy.url, new=new.url, routes=routes)


def test_noise_learning_finds_a_random_field_and_not_a_stable_one(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    gw = _nonce_gateway(start_gateway, upstreams, "noise_sample_rate: 1.0")
    with httpx.Client() as client:
        for index in range(20):
            assert client.get(f"{gw.url}/nonce/{index}").status_code == 200
    stats = shadow_results(gw)["nonce"]
    assert stats["noise_samples"] == 20
    assert stats["noise"] == [{"path": "$.nonce", "differed": 20, "learned": True}]
    # Every answer differs from the new backend's at $.nonce, and only there: shown, not hidden.
    assert stats["strict_parity"] == 0.0
    (path,) = stats["paths"]
    assert (path["path"], path["count"], path["is_noise"]) == ("$.nonce", 20, True)
    # Once learned (after 2 samples; copies and probes finish in any order), such differences
    # leave the parity figure.
    assert stats["equal_but_noise"] >= 15
    assert stats["parity"] == (stats["equal"] + stats["equal_but_noise"]) / 20


def test_noise_probes_are_capped_per_second(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    gw = _nonce_gateway(start_gateway, upstreams, "noise_sample_rate: 1.0, noise_max_per_s: 2")
    started = time.monotonic()
    with httpx.Client() as client:
        for index in range(40):
            assert client.get(f"{gw.url}/nonce/{index}").status_code == 200
    elapsed = time.monotonic() - started
    stats = shadow_results(gw)["nonce"]
    # A burst of 2, then 2 a second: every request was sampled, few became probes.
    assert 2 <= stats["noise_samples"] <= 2 + 2 * elapsed + 1
    assert stats["noise_samples"] < 40
    assert stats["compared"] == 40


_cli = run_cli


def test_results_reach_the_store_and_the_diffs_commands(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=SHADOW_ROUTES, workers=2)
    for index in range(6):
        httpx.get(f"{gw.url}/sandbox/diff/{index}", headers={"Cookie": "session=s3cr3t"})
    for index in range(4):
        httpx.get(f"{gw.url}/echo/same/{index}")
    wait_until(lambda: len(new.requests) == 10, "all copies")
    assert gw.stop() == 0  # each worker flushes what it holds when it stops
    config = str(gw.config_path)

    table = _cli("diffs", "--config", config, "--json")
    assert table.returncode == 0, table.stderr
    routes = {row["route"]: row for row in orjson.loads(table.stdout)}
    assert (routes["writes.sandbox"]["compared"], routes["writes.sandbox"]["different"]) == (6, 6)
    assert (routes["echo.shadow"]["compared"], routes["echo.shadow"]["equal"]) == (4, 4)

    paths = orjson.loads(_cli("diffs", "writes.sandbox", "--config", config, "--json").stdout)
    assert [(p["rule_path"], p["count"]) for p in paths] == [("$.name", 6)]
    examples = _cli("diffs", "writes.sandbox", "--examples", "--config", config, "--json")
    assert "s3cr3t" not in examples.stdout  # cookies never reach the store
    assert 0 < len(orjson.loads(examples.stdout)) <= 5

    refused = _cli("diffs", "accept", "writes.sandbox", "$.name", "--config", config)
    assert refused.returncode == 2 and "reason" in refused.stderr
    accepted = _cli(
        "diffs",
        "accept",
        "writes.sandbox",
        "$.name",
        "--reason",
        "renamed on purpose",
        "--config",
        config,
    )
    assert accepted.returncode == 0, accepted.stderr
    paths = orjson.loads(_cli("diffs", "writes.sandbox", "--config", config, "--json").stdout)
    assert (paths[0]["review"], paths[0]["review_reason"]) == ("accepted", "renamed on purpose")
    unknown = _cli("diffs", "noise", "writes.sandbox", "$.nope", "--config", config)
    assert unknown.returncode == 2


def test_stopping_while_a_flush_waits_for_the_store_loses_nothing(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    tmp_path: Path,
) -> None:
    legacy, new = upstreams
    # Another process holds the store's write lock: the worker's flushes wait for it.
    lock = sqlite3.connect(tmp_path / "strangler.db", isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")
    try:
        gw = start_gateway(
            legacy=legacy.url,
            new=new.url,
            routes=SHADOW_ROUTES,
            extra="store:\n  flush_interval_s: 0.1\n",
        )
        assert gw.proc is not None
        for index in range(3):
            httpx.get(f"{gw.url}/echo/same/{index}")
        wait_until(lambda: len(new.requests) == 3, "all copies")
        gw.proc.send_signal(signal.SIGTERM)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    # The drain waits for the blocked flush, then writes what is left, and exits cleanly.
    assert gw.proc.wait(timeout=30) == 0
    rows = orjson.loads(_cli("diffs", "--config", str(gw.config_path), "--json").stdout)
    (row,) = [r for r in rows if r["route"] == "echo.shadow"]
    assert (row["compared"], row["equal"]) == (3, 3)


def test_a_review_takes_earlier_comparisons_out_of_the_parity(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=SHADOW_ROUTES,
        extra="store:\n  flush_interval_s: 0.2\n",
    )
    config = str(gw.config_path)

    def totals() -> dict[str, object]:
        rows = orjson.loads(_cli("diffs", "--config", config, "--json").stdout or b"[]")
        return next((r for r in rows if r["route"] == "writes.sandbox"), {})

    for index in range(3):
        httpx.get(f"{gw.url}/sandbox/before/{index}")
    wait_until(lambda: totals().get("compared") == 3, "three comparisons in the store")
    assert (totals()["parity"], totals()["equal_but_noise"]) == (0.0, 0)
    reviewed = _cli("diffs", "noise", "writes.sandbox", "$.name", "--config", config)
    assert reviewed.returncode == 0, reviewed.stderr
    # No new traffic: the comparisons made before the review are cleared by it.
    row = totals()
    assert (row["compared"], row["equal_but_noise"], row["strict_parity"]) == (3, 3, 0.0)
    assert row["parity"] == 1.0


def test_garbage_from_the_shadow_backend_costs_the_client_nothing(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, _ = upstreams

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        writer.write(b"this is not HTTP at all\r\n\r\n")
        await writer.drain()

    bad = RawUpstream(garbage).start()
    try:
        gw = start_gateway(legacy=legacy.url, new=bad.url, routes=SHADOW_ROUTES)
        with httpx.Client() as client:
            for index in range(3):
                response = client.get(f"{gw.url}/echo/garbage/{index}")
                assert (response.status_code, response.json()["name"]) == (200, "legacy")
        results = shadow_results(gw)["echo.shadow"]
        assert results["dropped"] == {"shadow_error": 3}
        assert results["compared"] == 0
    finally:
        bad.stop()


def test_the_admin_api_shows_diffs_and_records_reviews_by_the_caller(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    legacy, new = upstreams
    gw = start_gateway(legacy=legacy.url, new=new.url, routes=SHADOW_ROUTES)
    token = orjson.loads(
        _cli(
            "token", "create", "--scope", "write", "--name", "reviewer", "--json",
            "--config", str(gw.config_path),
        ).stdout
    )["token"]  # fmt: skip
    auth = {"Authorization": f"Bearer {token}"}
    for index in range(3):
        httpx.get(f"{gw.url}/sandbox/diff/{index}", headers={"Cookie": "session=s3cr3t"})

    def compared() -> int:
        rows = httpx.get(f"{gw.admin_url}/api/v1/diffs", headers=auth).json()
        return sum(row["compared"] for row in rows if row["route"] == "writes.sandbox")

    wait_until(lambda: compared() == 3, "the results flushed", 10)
    detail = httpx.get(f"{gw.admin_url}/api/v1/diffs/writes.sandbox", headers=auth)
    assert detail.status_code == 200
    body = detail.json()
    assert [(p["rule_path"], p["count"]) for p in body["paths"]] == [("$.name", 3)]
    assert body["parity"] == 0.0 and "s3cr3t" not in detail.text
    assert httpx.get(f"{gw.admin_url}/api/v1/diffs/nope", headers=auth).status_code == 404
    url = f"{gw.admin_url}/api/v1/diffs/writes.sandbox/reviews"
    no_reason = httpx.post(url, json={"path": "$.name", "verdict": "accepted"}, headers=auth)
    assert no_reason.status_code == 400
    review = {"path": "$.name", "verdict": "accepted", "reason": "renamed on purpose"}
    assert httpx.post(url, json=review, headers=auth).status_code == 200
    [path] = httpx.get(f"{gw.admin_url}/api/v1/diffs/writes.sandbox", headers=auth).json()["paths"]
    assert (path["review"], path["reviewed_by"]) == ("accepted", "token:reviewer")
