"""The gateway with `store: {url: postgresql://...}`: every worker flushes its shadow results and
traffic counts to PostgreSQL, `strangler diffs` and `strangler progress` read them back from
there, and no SQLite file is written. A store that can't be reached costs the clients nothing.

Needs a PostgreSQL server (see tests/postgres.py); skipped, saying why, without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import run_cli
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: echo.shadow
    match: "GET /echo/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
    diff:
      ignore: ["$.name", "$.headers"]
  - name: writes.sandbox
    match: "GET /sandbox/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
    diff:
      ignore: ["$.headers"]
  - name: api
    match: "GET /api/*rest"
    stage: new
"""


_cli = run_cli


def _json(*args: str) -> Any:
    result = _cli(*args, "--json")
    assert result.returncode == 0, result.stderr
    return orjson.loads(result.stdout)


def test_two_workers_results_are_read_back_from_postgres(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    legacy, new = upstreams
    gw = start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        workers=2,
        extra=f"store:\n  url: {postgres_url}\n  flush_interval_s: 0.2\n",
    )
    with httpx.Client() as client:
        for index in range(6):
            assert client.get(f"{gw.url}/sandbox/diff/{index}").json()["name"] == "legacy"
        for index in range(4):
            client.get(f"{gw.url}/echo/same/{index}")
        for index in range(2):
            client.get(f"{gw.url}/api/{index}")
    wait_until(lambda: len(new.requests) == 12, "all copies and the answers from new")
    assert gw.stop() == 0  # each worker flushes what it holds when it stops
    config = str(gw.config_path)

    routes = {row["route"]: row for row in _json("diffs", "--config", config)}
    assert (routes["writes.sandbox"]["compared"], routes["writes.sandbox"]["different"]) == (6, 6)
    assert (routes["echo.shadow"]["compared"], routes["echo.shadow"]["equal"]) == (4, 4)
    paths = _json("diffs", "writes.sandbox", "--config", config)
    assert [(p["rule_path"], p["count"]) for p in paths] == [("$.name", 6)]
    examples = _json("diffs", "writes.sandbox", "--examples", "--config", config)
    assert 0 < len(examples) <= 5

    accepted = _cli(
        "diffs", "accept", "writes.sandbox", "$.name", "--reason", "renamed on purpose",
        "--config", config,
    )  # fmt: skip
    assert accepted.returncode == 0, accepted.stderr
    (row,) = [r for r in _json("diffs", "--config", config) if r["route"] == "writes.sandbox"]
    assert (row["equal_but_noise"], row["parity"]) == (6, 1.0)

    report = _json("progress", "--config", config)
    assert report["routes_by_stage"] == {"shadow": 2, "new": 1}
    progress = {r["route"]: r for r in report["routes"]}
    assert progress["api"]["last_hour"]["new"] == 2
    assert progress["writes.sandbox"]["last_hour"]["legacy"] == 6
    assert progress["writes.sandbox"]["compared"] == 6
    share = report["share_on_new"]["hour"]
    assert (share["new"], share["total"]) == (2, 12)

    # Nothing went to a SQLite file next to the config; everything is in PostgreSQL.
    assert not (tmp_path / "strangler.db").exists()
    with psycopg.connect(postgres_url) as conn:
        (compared,) = conn.execute("SELECT sum(compared) FROM shadow_routes").fetchone() or (0,)
    assert compared == 10


def test_an_unreachable_store_costs_the_clients_nothing(
    start_gateway: GatewayFactory, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    # Port 1: nothing listens there; this runs without any PostgreSQL.
    legacy, new = upstreams
    gw = start_gateway(
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        extra="store:\n  url: postgresql://ann:hunter2@127.0.0.1:1/strangler\n"
        "  flush_interval_s: 0.1\n",
    )
    for index in range(3):
        response = httpx.get(f"{gw.url}/sandbox/diff/{index}")
        assert (response.status_code, response.json()["name"]) == (200, "legacy")
    line = gw.wait_for_log("shadow results not stored")
    assert "127.0.0.1" in line and "hunter2" not in line
    assert gw.stop() == 0
    assert "hunter2" not in gw.stderr_text()

    refused = _cli("diffs", "--config", str(gw.config_path))
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: shadow store postgresql+psycopg://ann:***@127.0.0.1:1")
    assert "hunter2" not in refused.stderr
