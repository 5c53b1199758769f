"""The admin API's series after real traffic: a route's answers, 5xx and latency quantiles per
side and bucket, and the share on new, read from the store (no Prometheus); and the identity
resource (the key ring's keys without their material, the bridge's counts).

The workers' counts reach the store when they flush (every 15 s, and when they stop), so the
traffic is sent through one gateway that is then stopped, and read through a second one started
on the same store, as a second replica would read it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli, write_config
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: pages
    match: "GET /pages/*rest"
    stage: legacy
  - name: status
    match: "GET /status/:code"
    stage: new
  - name: shadowed
    match: "GET /echo/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
"""
SECRET_ENV = {"STRANGLER_TEST_SECRET_KEY_BASE": "ab" * 64}
RAILS = (
    "rails:\n"
    "  cookie: _app_session\n"
    "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
    "identity:\n"
    "  keys_path: keys.json\n"
    "  ttl_s: 30\n"
    "  audience: new-app\n"
)


def _token(gw: GatewayProcess) -> str:
    created = run_cli(
        "token", "create", "--config", str(gw.config_path), "--json", "--name", "reader",
        "--scope", "read",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token: str = orjson.loads(created.stdout)["token"]
    return token


@pytest.fixture(scope="module")
def replica(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GatewayProcess, httpx.Client]]:
    """A gateway reading what another one (stopped) counted: 5 answers of `pages` (legacy),
    3 of `status` (new, one 503), 2 of `shadowed` (legacy, copied to new), and an answer to no
    route."""
    tmp = tmp_path_factory.mktemp("series")
    legacy, new = EchoUpstream("legacy").start(), EchoUpstream("new").start()
    config = write_config(tmp / "strangler.yaml", legacy=legacy.url, new=new.url, routes=ROUTES)
    first = GatewayProcess(config).start()
    with httpx.Client(trust_env=False) as client:
        for i in range(5):
            assert client.get(f"{first.url}/pages/{i}").status_code == 200
        for code in (200, 200, 503):
            assert client.get(f"{first.url}/status/{code}").status_code == code
        for i in range(2):
            assert client.get(f"{first.url}/echo/{i}").status_code == 200
        client.get(f"{first.url}/nowhere")
    wait_until(lambda: len(new.requests) >= 2, "the shadow copies")  # /status is not recorded
    assert first.stop() == 0
    second = GatewayProcess(config).start()
    assert second.admin_url is not None
    client = httpx.Client(
        base_url=second.admin_url,
        headers={"Authorization": f"Bearer {_token(second)}"},
        trust_env=False,
        timeout=10,
    )
    yield second, client
    client.close()
    second.stop()
    legacy.stop()
    new.stop()


@pytest.mark.parametrize(
    ("window", "bucket_s", "buckets"), [("1h", 60, 60), ("24h", 900, 96), ("7d", 7200, 84)]
)
def test_a_routes_series_has_every_bucket_of_the_window_by_side(
    replica: tuple[GatewayProcess, httpx.Client], window: str, bucket_s: int, buckets: int
) -> None:
    _, client = replica
    response = client.get("/api/v1/routes/pages/series", params={"window": window})
    assert response.status_code == 200, response.text
    series = response.json()
    assert (series["route"], series["window"], series["bucket_s"]) == ("pages", window, bucket_s)
    rows = series["buckets"]
    assert len(rows) == buckets
    starts = [row["start"] for row in rows]
    assert all(b - a == bucket_s for a, b in itertools.pairwise(starts))
    assert sum(row["legacy"]["requests"] for row in rows) == 5
    assert sum(row["new"]["requests"] for row in rows) == 0
    busy = [row for row in rows if row["legacy"]["requests"]]
    for row in busy:
        legacy = row["legacy"]
        # Loopback answers: well under a second, and the 99th percentile is not below the median.
        assert 0 < legacy["p50_ms"] <= legacy["p99_ms"] < 1000
        assert row["new"]["p50_ms"] is None
    assert 0 < rows[-1]["seconds"] <= bucket_s


def test_errors_are_counted_on_the_side_that_answered(
    replica: tuple[GatewayProcess, httpx.Client],
) -> None:
    _, client = replica
    rows = client.get("/api/v1/routes/status/series").json()["buckets"]
    assert sum(row["new"]["requests"] for row in rows) == 3
    assert sum(row["new"]["errors"] for row in rows) == 1
    assert sum(row["legacy"]["requests"] for row in rows) == 0


def test_a_shadowed_routes_new_side_is_its_copies_answers(
    replica: tuple[GatewayProcess, httpx.Client],
) -> None:
    _, client = replica
    rows = client.get("/api/v1/routes/shadowed/series").json()["buckets"]
    assert sum(row["legacy"]["requests"] for row in rows) == 2
    assert sum(row["new"]["requests"] for row in rows) == 0
    assert sum(row["shadow"]["requests"] for row in rows) == 2
    for row in rows:
        if row["shadow"]["requests"]:
            assert 0 < row["shadow"]["p50_ms"] <= row["shadow"]["p99_ms"] < 1000


def test_the_share_on_new_sums_every_route(replica: tuple[GatewayProcess, httpx.Client]) -> None:
    _, client = replica
    response = client.get("/api/v1/progress/series", params={"window": "7d"})
    assert response.status_code == 200, response.text
    rows = response.json()["buckets"]
    assert len(rows) == 84
    legacy = sum(row["legacy"] for row in rows)
    new = sum(row["new"] for row in rows)
    # Legacy answered the unmatched request and the shadowed ones too; copies are no answers.
    assert (legacy, new) == (8, 3)
    ratios = [row["ratio"] for row in rows if row["ratio"] is not None]
    assert ratios and all(0 <= ratio <= 1 for ratio in ratios)


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/routes/nope/series", 404),
        ("/api/v1/routes/pages/series?window=2h", 422),
        ("/api/v1/progress/series?window=1y", 422),
    ],
)
def test_unknown_routes_and_windows_are_refused(
    replica: tuple[GatewayProcess, httpx.Client], path: str, status: int
) -> None:
    _, client = replica
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"


def test_series_need_a_token(replica: tuple[GatewayProcess, httpx.Client]) -> None:
    gw, _ = replica
    assert gw.admin_url is not None
    response = httpx.get(gw.admin_url + "/api/v1/routes/pages/series", trust_env=False)
    assert response.status_code == 401


def test_the_identity_resource_lists_keys_without_their_material(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra=RAILS, env=SECRET_ENV)
    assert gw.admin_url is not None
    headers = {"Authorization": f"Bearer {_token(gw)}"}
    response = httpx.get(gw.admin_url + "/api/v1/identity", headers=headers, trust_env=False)
    assert response.status_code == 200, response.text
    identity = response.json()
    assert sorted(key["state"] for key in identity["keys"]) == ["active", "next"]
    fields = {"kid", "state", "published_at", "activated_at", "retired_at", "removed_at"}
    assert all(set(key) == fields for key in identity["keys"])  # never "x" nor "d"
    assert identity["token_ttl_s"] == 30
    assert identity["tokens_issued"] == 0
    assert isinstance(identity["sessions"], dict)
    assert isinstance(identity["csrf_refused"], dict)


def test_without_rails_there_is_no_identity_resource(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url)
    assert gw.admin_url is not None
    headers = {"Authorization": f"Bearer {_token(gw)}"}
    response = httpx.get(gw.admin_url + "/api/v1/identity", headers=headers, trust_env=False)
    assert response.status_code == 404
