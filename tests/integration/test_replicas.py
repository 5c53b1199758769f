"""Three gateway processes sharing one PostgreSQL store: a rollback through one replica's admin
API is in force on all three within a second, measured by their answers."""

from __future__ import annotations

import json
import threading
import time

import httpx

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import run_cli
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: chaos
    match: "GET /chaos/*rest"
    stage: canary
    canary: {weight: 100}
"""


def test_a_rollback_through_one_replica_is_in_force_on_all_three_within_a_second(
    postgres_url: str,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    start_gateway: GatewayFactory,
) -> None:
    legacy, new = upstreams
    replicas = [
        start_gateway(
            legacy=legacy.url,
            new=new.url,
            routes=ROUTES,
            extra=f'store: {{url: "{postgres_url}"}}\n',
        )
        for _ in range(3)
    ]
    created = run_cli(
        "token", "create", "--scope", "write", "--name", "ops", "--json",
        "--config", str(replicas[0].config_path),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token = json.loads(created.stdout)["token"]
    for replica in replicas:
        assert httpx.get(f"{replica.url}/chaos/x").headers["x-upstream"] == "new"

    # Answers are watched from before the change to after it, on the wall clock the audit
    # entry uses: each replica's lag is from the commit to its last answer from new.
    answers: list[tuple[int, float, str]] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for index, replica in enumerate(replicas):
                side = httpx.get(f"{replica.url}/chaos/x").headers["x-upstream"]
                answers.append((index, time.time(), side))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    time.sleep(0.3)
    answer = httpx.post(
        f"{replicas[1].admin_url}/api/v1/routes/chaos/rollback",
        json={"reason": "checkout errors"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    change = answer.json()
    assert (change["action"], change["actor"]) == ("rollback", "token:ops")
    assert change["before"]["stage"] == "canary" and change["after"]["stage"] == "legacy"
    time.sleep(2.0)
    stop.set()
    watcher.join(5)
    lags = []
    for index in range(3):
        seen = [(at, side) for i, at, side in answers if i == index]
        assert any(at > change["at"] for at, _ in seen) and seen[-1][1] == "legacy"
        last_new = max((at for at, side in seen if side == "new"), default=0.0)
        lags.append(max(0.0, last_new - change["at"]))
    print(f"rollback lag per replica (s): {[round(lag, 3) for lag in lags]}")
    assert max(lags) < 1.0, lags

    # Every replica's API shows the change and its audit entry.
    for replica in replicas:
        listed = httpx.get(
            f"{replica.admin_url}/api/v1/routes", headers={"Authorization": f"Bearer {token}"}
        ).json()
        [route] = [r for r in listed["routes"] if r["route"] == "chaos"]
        assert (route["stage"], route["overridden"]) == ("legacy", True)
    audit = httpx.get(
        f"{replicas[2].admin_url}/api/v1/audit", headers={"Authorization": f"Bearer {token}"}
    ).json()
    assert [(a["action"], a["reason"]) for a in audit] == [("rollback", "checkout errors")]


def test_the_admin_api_refuses_without_a_token_and_with_a_read_token(
    upstreams: tuple[EchoUpstream, EchoUpstream], start_gateway: GatewayFactory
) -> None:
    legacy, new = upstreams
    gateway = start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES)
    created = run_cli(
        "token", "create", "--scope", "read", "--name", "viewer", "--json",
        "--config", str(gateway.config_path),
    )  # fmt: skip
    token = json.loads(created.stdout)["token"]
    url = f"{gateway.admin_url}/api/v1/routes/chaos/rollback"
    anonymous = httpx.post(url, json={"reason": "x"})
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    reader = httpx.post(url, json={"reason": "x"}, headers={"Authorization": f"Bearer {token}"})
    assert reader.status_code == 403
    listed = httpx.get(
        f"{gateway.admin_url}/api/v1/routes/chaos", headers={"Authorization": f"Bearer {token}"}
    )
    assert listed.status_code == 200 and listed.json()["stage"] == "canary"
    # The CLI goes through the same API with --admin and the token in the environment.
    shown = run_cli(
        "rollout", "status", "chaos", "--admin", gateway.admin_url,
        env={"STRANGLER_ADMIN_TOKEN": token},
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "chaos: stage canary at 100 %" in shown.stdout
    refused = run_cli(
        "rollback", "chaos", "-r", "x", "--admin", gateway.admin_url,
        env={"STRANGLER_ADMIN_TOKEN": token},
    )  # fmt: skip
    assert refused.returncode == 1 and "403" in refused.stderr
