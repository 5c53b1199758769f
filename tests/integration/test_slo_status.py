"""`strangler slo status` and the admin API's /api/v1/slos and /api/v1/alerts against a real
gateway whose SLO windows are seconds: the CLI reads the same numbers from the store as through
`--admin`, an alert fires once the new backend fails and shows in both, an unknown SLO is a 404
(exit 2 in the CLI), and a read-only token reads it all.

One gateway for the module; each test adds its requests to `Setup.answered`, so any test waits
for the counts it expects whatever ran before it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.probes import steady_traffic, wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: chaos
    match: "GET /chaos/*rest"
    stage: new
"""
# The ticket alert comes first in the config, so the page-first order of /alerts is visible.
# Short windows of 4 s, not 2: the workers flush their counts every second, and while two CLI
# processes start on a busy machine a flush can lag enough to empty a 2 s window and resolve the
# alert between the API's answer and the CLI's.
SLOS = """\
slos:
  - name: chaos-api
    routes: [chaos]
    objective: 99
    window_days: 1
    alerts:
      - {severity: ticket, burn: 2, long: 10s, short: 4s}
      - {severity: page, burn: 10, long: 10s, short: 4s}
    min_requests: 20
"""
# What both doors must agree on once the counts are settled (the rest moves with the clock).
SETTLED = (
    "name", "objective", "window_s", "good", "bad", "budget_left_pct", "budget_exhausted",
    "routes", "window_days", "min_requests", "side", "latency_ms",
)  # fmt: skip


@dataclass
class Setup:
    gateway: GatewayProcess
    new: EchoUpstream
    read_token: str
    nowhere: Path  # a folder with no config in it
    answered: int = 0  # requests the gateway has answered on the SLO's route

    def cli(self, *args: str, admin: bool = False) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
        if admin:
            assert self.gateway.admin_url is not None
            env |= {
                "STRANGLER_ADMIN_URL": self.gateway.admin_url,
                "STRANGLER_ADMIN_TOKEN": self.read_token,
            }
        else:
            args = (*args, "--config", str(self.gateway.config_path))
        return subprocess.run(
            [sys.executable, "-m", "strangler", "slo", "status", *args],
            capture_output=True, text=True, timeout=60, check=False, cwd=self.nowhere, env=env,
        )  # fmt: skip

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.read_token}"}
        return httpx.get(f"{self.gateway.admin_url}{path}", headers=headers)

    def slo(self) -> dict[str, Any]:
        response = self.get("/api/v1/slos/chaos-api")
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def wait_counted(self) -> None:
        """Until the monitor's evaluation holds every request answered so far."""

        def counted() -> bool:
            slo = self.slo()
            return slo["source"] == "monitor" and slo["good"] + slo["bad"] == self.answered

        wait_until(counted, f"the SLO monitor to count {self.answered} answers", timeout_s=15)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    legacy, new = EchoUpstream("legacy").start(), EchoUpstream("new").start()
    path = write_config(
        tmp_path_factory.mktemp("gw") / "strangler.yaml",
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
        extra=SLOS,
    )
    gateway = GatewayProcess(path).start()
    try:
        made = subprocess.run(
            [sys.executable, "-m", "strangler", "token", "create", "--name", "viewer",
             "--scope", "read", "--json", "--config", str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        token = orjson.loads(made.stdout)["token"]
        yield Setup(gateway, new, token, tmp_path_factory.mktemp("cwd"))
    finally:
        gateway.stop()
        legacy.stop()
        new.stop()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_cli_reads_the_same_numbers_locally_and_through_the_admin_api(setup: Setup) -> None:
    with httpx.Client() as client:
        for index in range(30):
            assert client.get(f"{setup.gateway.url}/chaos/{index}").status_code == 200
    setup.answered += 30
    setup.wait_counted()

    local = orjson.loads(_ok(setup.cli("--json")))
    remote = orjson.loads(_ok(setup.cli("--json", admin=True)))
    assert [slo["name"] for slo in local["slos"]] == ["chaos-api"]
    (mine,), (theirs,) = local["slos"], remote["slos"]
    assert set(mine) == set(theirs)
    assert {key: mine[key] for key in SETTLED} == {key: theirs[key] for key in SETTLED}
    assert mine["good"] + mine["bad"] == setup.answered
    # Both read the running gateway's evaluation, not one of their own.
    assert (mine["source"], theirs["source"]) == ("monitor", "monitor")
    assert [(a["severity"], a["burn"]) for a in mine["alerts"]] == [("ticket", 2), ("page", 10)]

    one = orjson.loads(_ok(setup.cli("chaos-api", "--json", admin=True)))
    assert {key: one[key] for key in SETTLED} == {key: mine[key] for key in SETTLED}
    text = _ok(setup.cli("chaos-api"))
    assert text.startswith("chaos-api: 99 % over 1d\n")
    assert f"good {mine['good']}, bad {mine['bad']}" in text
    assert "no gateway has evaluated" not in text


def test_an_alert_fires_in_the_status_and_in_alerts_once_new_fails(setup: Setup) -> None:
    assert setup.get("/api/v1/alerts").json() == {"alerts": []}
    setup.new.app.state.chaos = {"status": 500, "delay_ms": 0}
    try:
        with steady_traffic(f"{setup.gateway.url}/chaos/x", per_second=50) as sides:

            def both_firing() -> bool:
                rows = setup.get("/api/v1/alerts").json()["alerts"]
                return [row["state"] for row in rows] == ["firing", "firing"]

            wait_until(both_firing, "the page and ticket alerts to fire", timeout_s=20)
            alerts = setup.get("/api/v1/alerts").json()["alerts"]
            # Pages before tickets, whatever the config's order.
            assert [(a["slo"], a["severity"]) for a in alerts] == [
                ("chaos-api", "page"),
                ("chaos-api", "ticket"),
            ]
            page = alerts[0]
            assert page["fired_with"]["long"]["burn_rate"] >= 10
            assert page["fired_at"] is not None and page["low_traffic"] is False
            remote_text = _ok(setup.cli(admin=True))
            local_text = _ok(setup.cli())
    finally:
        setup.new.app.state.chaos = {"status": 200, "delay_ms": 0}
    setup.answered += sum(1 for side in sides if side in {"new", "error:500"})
    for text in (remote_text, local_text):
        lines = text.splitlines()
        page_line = next(line for line in lines if line.strip().startswith("page"))
        assert "firing since" in page_line and "10s/4s" in page_line
        assert "budget left: exhausted" in text
    every = setup.get("/api/v1/alerts?all=true").json()["alerts"]
    assert {a["severity"] for a in every} == {"page", "ticket"}
    assert len(every) == 2


def test_an_unknown_slo_is_a_404_and_exit_2(setup: Setup) -> None:
    response = setup.get("/api/v1/slos/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "no SLO named nope (configured: chaos-api)"
    for admin in (False, True):
        result = setup.cli("nope", admin=admin)
        assert result.returncode == 2
        assert "no SLO named nope (configured: chaos-api)" in result.stderr
        assert result.stdout == ""


def test_a_read_only_token_reads_them_and_no_token_does_not(setup: Setup) -> None:
    for path in ("/api/v1/slos", "/api/v1/slos/chaos-api", "/api/v1/alerts"):
        assert setup.get(path).status_code == 200
        assert httpx.get(f"{setup.gateway.admin_url}{path}").status_code == 401
    # The token really is read-only: a change is refused.
    promote = httpx.post(
        f"{setup.gateway.admin_url}/api/v1/routes/chaos/pause",
        json={"reason": "test"},
        headers={"Authorization": f"Bearer {setup.read_token}"},
    )
    assert promote.status_code == 403
