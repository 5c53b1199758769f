"""`/metrics` read by the tools that read it in production: Prometheus' own parsers (text 0.0.4
and OpenMetrics), promtool's linter, a real Prometheus scraping the admin listener and answering
PromQL, and the queries of `strangler observability grafana` run on that Prometheus.

One gateway (two workers, so every number is the supervisor's sum of two) and one Prometheus
serve the module. Every request goes through `Traffic`, which keeps what the gateway must count
per (route, stage, side, status class): whichever test runs first or alone, the totals asserted
are exactly what was sent. `prometheus` and `promtool` come from the Debian package
`prometheus` (`make test` installs it); without them those tests skip, or fail under
STRANGLER_REQUIRE_PROMETHEUS=1.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import pytest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.integration.gateway_process import GatewayProcess, run_cli, write_config
from tests.integration.rawhttp import exchange
from tests.integration.upstreams import EchoUpstream

SECRET = "f" * 32 + "0123456789abcdef" * 6
ROUTES = """\
  - name: projects
    match: "ANY /projects(/:id)"
    stage: shadow
  - name: pages
    match: "GET /pages/*rest"
    stage: legacy
  - name: beta
    match: "GET /beta/*rest"
    stage: canary
    canary:
      stickiness: ["header:X-User-Id"]
      # The analyzer starts it at 50 % and, short of evidence, never moves it again: its
      # verdicts are counted, and every request's stage stays what Traffic expects.
      plan: {steps: [50, 100], interval_s: 1, min_requests: 1000000}
  - name: account
    match: "ANY /account/*rest"
    stage: new
"""
STAGES = {"projects": "shadow", "pages": "legacy", "beta": "canary", "account": "new"}
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
# A control character in a header value: the gateway answers 400 itself, before any route.
MALFORMED = b"GET /pages/x HTTP/1.1\r\nHost: a\r\nX-Bad: \x01\r\n\r\n"

Labels = tuple[str, str, str, str]  # route, stage, side, code_class
T = TypeVar("T")


def _until(read: Callable[[], T], is_done: Callable[[T], bool], timeout_s: float) -> T:
    """Read until the value is done or the time is up (at least once); the last value read."""
    deadline = time.monotonic() + timeout_s
    value = read()
    while not is_done(value) and time.monotonic() < deadline:
        time.sleep(0.05)
        value = read()
    return value


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        reason = (
            f"`{name}` is not installed, so /metrics was NOT checked against Prometheus: "
            "install the Debian package `prometheus` (`make test` does)"
        )
        if os.environ.get("STRANGLER_REQUIRE_PROMETHEUS"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


class Traffic:
    """Sends requests to the gateway, each on a new connection (so the kernel spreads them
    over both workers), and counts what the gateway must count for each answer: the side is
    the upstream that answered (X-Upstream), or the gateway when no upstream did."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway
        self.expected: Counter[Labels] = Counter()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = httpx.request(method, self.gateway.url + path, **kwargs)
        route = path.split("/")[1]
        side = response.headers.get("x-upstream", "gateway")
        self.expected[(route, STAGES[route], side, f"{response.status_code // 100}xx")] += 1
        return response

    def malformed(self) -> None:
        (answer,), _ = exchange(self.gateway.port, MALFORMED)
        assert answer.status == 400
        self.expected[("_default", "none", "gateway", "4xx")] += 1

    def by_route(self) -> Counter[str]:
        routes: Counter[str] = Counter()
        for (route, *_), count in self.expected.items():
            routes[route] += count
        return routes


def _scrape(gateway: GatewayProcess, accept: str | None = None) -> httpx.Response:
    assert gateway.admin_url is not None
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(gateway.admin_url + "/metrics", headers=headers)
    assert response.status_code == 200, response.text
    return response


def _requests_total(families: Iterator[Any]) -> Counter[Labels]:
    counts: Counter[Labels] = Counter()
    for family in families:
        for sample in family.samples:
            if sample.name == "strangler_requests_total":
                labels = sample.labels
                key = (labels["route"], labels["stage"], labels["side"], labels["code_class"])
                counts[key] = int(sample.value)
    return counts


def _exported(body: str) -> set[str]:
    """The names of the families in a scrape that has samples (as PromQL names them)."""
    return {
        re.sub(r"_(bucket|sum|count)$", "", sample.name)
        for family in parse_text(body)
        for sample in family.samples
    }


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    legacy, new = EchoUpstream("legacy").start(), EchoUpstream("new").start()
    folder = tmp_path_factory.mktemp("gateway")
    extra = (
        "rails:\n"
        "  cookie: _app_session\n"
        "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
        f"identity: {{keys_path: {folder / 'keys.json'}, issuer: strangler-test}}\n"
    )
    path = write_config(
        folder / "strangler.yaml", legacy=legacy.url, new=new.url, routes=ROUTES, extra=extra
    )
    gw = GatewayProcess(path, workers=2, env={"STRANGLER_TEST_SECRET_KEY_BASE": SECRET})
    try:
        yield gw.start()
    finally:
        gw.stop()
        legacy.stop()
        new.stop()


@pytest.fixture(scope="module")
def traffic(gateway: GatewayProcess) -> Traffic:
    """Something in every family the dashboard reads: a shadow route compared and a copy not
    mirrored (a POST), a canary route on both sides, a CSRF refusal on a route served by new,
    and a request the gateway refuses itself."""
    traffic = Traffic(gateway)
    for n in range(6):
        traffic.send("GET", f"/projects/{n}")
    traffic.send("POST", "/projects", content=b"{}")
    for user in range(16):
        traffic.send("GET", f"/beta/{user}", headers={"X-User-Id": f"user-{user}"})
    traffic.send("GET", "/account/settings")
    refused = traffic.send("POST", "/account/settings", headers={"Cookie": "_app_session=x"})
    assert refused.status_code == 403
    traffic.malformed()
    return traffic


class Prometheus:
    """A real Prometheus on 127.0.0.1:<free port>, its storage in a temporary folder."""

    def __init__(self, folder: Path, target: str) -> None:
        self.folder = folder
        self.log = folder / "prometheus.log"
        config = folder / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: strangler\n"
            "    metrics_path: /metrics\n"
            f"    static_configs: [{{targets: ['{target}']}}]\n"
        )
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    _tool("prometheus"),
                    f"--config.file={config}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    # Port 0: never the :9090 of a system service the package may have started.
                    "--web.listen-address=127.0.0.1:0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.url = ""

    def start(self, timeout_s: float = 20.0) -> Prometheus:
        # Its log names the port it got: `msg="Listening on" address=127.0.0.1:40123`.
        listening = re.compile(r'msg="Listening on" address=(\S+)')
        found = _until(
            lambda: listening.search(self.log.read_text()),
            lambda match: match is not None or self.proc.poll() is not None,
            timeout_s,
        )
        assert found is not None, f"prometheus did not listen:\n{self.log.read_text()}"
        self.url = f"http://{found.group(1)}"
        ready = _until(self._is_ready, bool, timeout_s)
        assert ready, f"prometheus not ready:\n{self.log.read_text()}"
        return self

    def _is_ready(self) -> bool:
        try:
            return httpx.get(self.url + "/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def query(self, expr: str) -> dict[str, Any]:
        """The API's whole answer to an instant query (status, data or error)."""
        response = httpx.get(self.url + "/api/v1/query", params={"query": expr})
        answer: dict[str, Any] = response.json()
        return answer

    def vector(self, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
        """An instant vector: each series' labels (sorted pairs) and value."""
        answer = self.query(expr)
        assert answer["status"] == "success", (expr, answer)
        return {
            tuple(sorted(item["metric"].items())): float(item["value"][1])
            for item in answer["data"]["result"]
        }

    def scalar(self, expr: str) -> float | None:
        """The value of a one-series vector, None while there is none."""
        values = list(self.vector(expr).values())
        return values[0] if len(values) == 1 else None


@pytest.fixture(scope="module")
def prometheus(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    assert gateway.admin_url is not None
    target = gateway.admin_url.removeprefix("http://")
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), target)
    try:
        server.start()
        scraped = _until(lambda: server.scalar('up{job="strangler"}'), lambda up: up == 1, 15)
        assert scraped == 1, f"prometheus never scraped {target}:\n{server.log.read_text()}"
        yield server
    finally:
        server.stop()


def test_a_scrape_within_a_second_counts_every_answer_exactly(
    gateway: GatewayProcess, traffic: Traffic
) -> None:
    for n in range(37):
        traffic.send("GET", f"/projects/{n}")
    for n in range(11):
        traffic.send("GET", f"/pages/{n}")
    traffic.malformed()
    counted = _until(
        lambda: _requests_total(parse_text(_scrape(gateway).text)),
        lambda counts: counts == traffic.expected,
        timeout_s=1.0,
    )
    assert counted == traffic.expected, {
        "missing": traffic.expected - counted,
        "extra": counted - traffic.expected,
    }


def test_promtool_finds_nothing_to_lint(gateway: GatewayProcess, traffic: Traffic) -> None:
    body = _scrape(gateway).text
    assert "strangler_request_duration_seconds_bucket" in body
    checked = subprocess.run(
        [_tool("promtool"), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


def test_openmetrics_is_served_when_asked_for(gateway: GatewayProcess, traffic: Traffic) -> None:
    response = _scrape(gateway, accept=OPENMETRICS)
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
    families = {family.name: family for family in parse_openmetrics(response.text)}
    # OpenMetrics names a counter's family without `_total`, and its samples with it.
    assert families["strangler_requests"].type == "counter"
    assert families["strangler_request_duration_seconds"].type == "histogram"
    text = _requests_total(parse_text(_scrape(gateway).text))
    assert _requests_total(iter(families.values())) == text
    plain = _scrape(gateway)
    assert plain.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in plain.text


def test_prometheus_sums_what_was_sent(prometheus: Prometheus, traffic: Traffic) -> None:
    sent = sum(traffic.expected.values())
    total = _until(
        lambda: prometheus.scalar("sum(strangler_requests_total)"), lambda v: v == sent, 10
    )
    assert total == sent
    by_route = {
        dict(labels)["route"]: int(value)
        for labels, value in prometheus.vector("sum by (route) (strangler_requests_total)").items()
    }
    assert by_route == traffic.by_route()
    assert prometheus.scalar("count(strangler_route_stage == 1)") == len(STAGES)


def test_prometheus_computes_a_latency_quantile(
    gateway: GatewayProcess, prometheus: Prometheus, traffic: Traffic
) -> None:
    # rate() needs two samples of a series that grew between them: send once the series exist.
    expr = "count(strangler_request_duration_seconds_bucket)"
    assert _until(lambda: prometheus.scalar(expr), bool, 10)
    for n in range(20):
        traffic.send("GET", f"/pages/p99-{n}")
    p99 = (
        "histogram_quantile(0.99, "
        "sum by (le) (rate(strangler_request_duration_seconds_bucket[1m])))"
    )
    value = _until(
        lambda: prometheus.scalar(p99), lambda v: v is not None and math.isfinite(v) and v > 0, 10
    )
    assert value is not None and math.isfinite(value) and 0 < value <= 10


def _dashboard(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "dashboard.json"
    written = run_cli("observability", "grafana", "-o", str(out))
    assert written.returncode == 0, written.stderr
    printed = run_cli("observability", "grafana")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.encode() == out.read_bytes()
    model: dict[str, Any] = orjson.loads(out.read_bytes())
    return model


def _exprs(model: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in model["panels"] for target in panel["targets"]]


def _families_read(model: dict[str, Any]) -> set[str]:
    """Every family a panel's query or a variable reads, by its PromQL name."""
    queries = [*_exprs(model), *(v["query"] for v in model["templating"]["list"][1:])]
    return {
        re.sub(r"_(bucket|sum|count)$", "", name)
        for query in queries
        for name in re.findall(r"strangler_[a-z_]+", query)
    }


def test_the_grafana_dashboard_is_a_valid_model(tmp_path: Path) -> None:
    model = _dashboard(tmp_path)
    assert model["schemaVersion"] >= 36
    variables = {variable["name"]: variable for variable in model["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    assert variables["route"]["type"] == "query"
    assert variables["route"]["query"] == "label_values(strangler_route_stage, route)"
    datasource = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
    assert variables["route"]["datasource"] == datasource
    panels = model["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        assert panel["type"] in {"timeseries", "stat", "bargauge", "table"}, panel["title"]
        assert panel["datasource"] == datasource
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"{panel['title']} overlaps another panel"
        cells |= mine
        refs = [target["refId"] for target in panel["targets"]]
        assert refs and len(set(refs)) == len(refs)
        assert all(
            target["expr"] and target["datasource"] == datasource for target in panel["targets"]
        )
    assert _families_read(model) == {
        "strangler_route_stage",
        "strangler_requests_total",
        "strangler_request_duration_seconds",
        "strangler_shadow_duration_seconds",
        "strangler_shadow_comparisons_total",
        "strangler_shadow_dropped_total",
        "strangler_canary_weight",
        "strangler_rollout_verdicts_total",
        "strangler_upstream_duration_seconds",
        "strangler_client_requests_rejected_total",
        "strangler_csrf_refused_total",
    }


def test_every_dashboard_query_runs_on_families_the_gateway_exports(
    gateway: GatewayProcess, prometheus: Prometheus, traffic: Traffic, tmp_path: Path
) -> None:
    model = _dashboard(tmp_path)
    used = _families_read(model)
    # Rollout verdicts come from the analyzer's intervals (1 s, after the flush grace).
    body = _until(lambda: _scrape(gateway).text, lambda text: used <= _exported(text), 20)
    assert used <= _exported(body), f"not in a scrape: {sorted(used - _exported(body))}"
    for expr in _exprs(model):
        concrete = expr.replace("$route", "projects").replace("$__rate_interval", "1m")
        answer = prometheus.query(concrete)
        assert answer["status"] == "success", (concrete, answer)
