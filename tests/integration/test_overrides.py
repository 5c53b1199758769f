"""One source of truth between the YAML and runtime changes, end to end: a real gateway (two
workers where a reload is involved), real upstreams on 127.0.0.1, its SQLite store, and the CLI
and admin API a user drives it with.

- A rollback is an override: a reload of a file that says otherwise warns once, naming both,
  and the override keeps routing; `routes` and `status` agree on the stage in force and star it.
- `strangler reset` (or the API's reset) drops the override: the next requests land on the
  YAML's stage, in every worker, and the audit log has the entry on the route's row.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli, write_config
from tests.integration.probes import wait_for_log_count, wait_until
from tests.integration.upstreams import EchoUpstream

NEW = '  - name: moving\n    match: "GET /api/moving"\n    stage: new\n'
CANARY_ALL = (
    '  - name: moving\n    match: "GET /api/moving"\n    stage: canary\n    canary: {weight: 100}\n'
)


def _sides(gateway: GatewayProcess, count: int = 12) -> set[str]:
    """Who answered `count` requests, each on a fresh connection so every worker is asked."""
    return {
        httpx.get(f"{gateway.url}/api/moving", timeout=10).headers["x-upstream"]
        for _ in range(count)
    }


def _cli(gateway: GatewayProcess, *args: str) -> tuple[int, str, str]:
    done = run_cli(*args, "--config", str(gateway.config_path))
    return done.returncode, done.stdout, done.stderr


def _token(gateway: GatewayProcess, scope: str) -> str:
    code, out, err = _cli(gateway, "token", "create", "--scope", scope, "--name", scope, "--json")
    assert code == 0, err
    return str(json.loads(out)["token"])


def test_a_reload_warns_that_an_override_holds_the_route_and_reset_lets_the_file_stand(
    upstreams: tuple[EchoUpstream, EchoUpstream], start_gateway: GatewayFactory
) -> None:
    legacy, new = upstreams
    urls = {"legacy": legacy.url, "new": new.url}
    gateway = start_gateway(workers=2, routes=NEW, **urls)
    assert _sides(gateway) == {"new"}

    code, out, err = _cli(gateway, "rollback", "moving", "-r", "500s on checkout")
    assert code == 0, err
    assert out.startswith("rolled back moving: new → legacy (by cli:")
    wait_until(lambda: _sides(gateway) == {"legacy"}, "the rollback in both workers")

    # The user fixes the new app and edits the file, expecting the canary to start.
    staging = gateway.config_path.with_suffix(".next")
    write_config(staging, routes=CANARY_ALL, **urls)
    staging.replace(gateway.config_path)
    gateway.signal(signal.SIGHUP)
    warning = gateway.wait_for_log("the file now says stage canary")
    wait_for_log_count(gateway, "config reloaded", 2)
    assert " WARNING " in warning
    assert (
        "route moving: the file now says stage canary, but a runtime override (by cli:"
    ) in warning
    assert (
        "'500s on checkout') keeps it in legacy; `strangler reset moving -r why` lets the file "
        "stand"
    ) in warning
    # Two workers reloaded; the warning is said once.
    assert len([line for line in gateway.stderr_lines if "now says stage" in line]) == 1
    assert _sides(gateway) == {"legacy"}

    # Both views show the stage in force, starred, with the way out.
    code, routes, err = _cli(gateway, "routes")
    assert code == 0 and err == ""
    code, status, _ = _cli(gateway, "status")
    assert code == 0
    for shown in (routes, status):
        # The route's own row: `1  moving  GET ...` in routes, `moving  legacy* ...` in status.
        (row,) = [line for line in shown.splitlines() if "moving" in line.split()[:2]]
        assert " legacy* " in row, shown
        assert "* moving: runtime override by cli:" in shown
        assert "the YAML says canary: `strangler reset moving -r why` lets the YAML stand" in shown
    code, as_json, _ = _cli(gateway, "routes", "--json")
    (item,) = json.loads(as_json)
    assert (item["stage"], item["yaml_stage"], item["backend"]) == ("legacy", "canary", "legacy")
    assert item["override"]["reason"] == "500s on checkout"

    code, out, err = _cli(gateway, "reset", "moving", "-r", "fixed, the file says canary")
    assert code == 0, err
    assert "reset moving: dropped the runtime override (legacy, set by cli:" in out
    assert "the YAML (canary 100 %) is in force again" in out
    wait_until(lambda: _sides(gateway) == {"new"}, "the YAML's canary at 100 % in both workers")
    code, routes, _ = _cli(gateway, "routes")
    assert "legacy*" not in routes and "runtime override" not in routes
    code, audit, _ = _cli(gateway, "audit", "moving")
    assert audit.splitlines()[0].split()[:5] == ["VERSION", "AT", "ROUTE", "ACTOR", "ACTION"]
    newest = audit.splitlines()[1]
    assert " moving " in newest and " reset " in newest and "fixed, the file says canary" in newest

    # Nothing left to reset: a refusal that says why, not a silent success.
    code, _, err = _cli(gateway, "reset", "moving", "-r", "again")
    assert code == 2
    assert "moving has no runtime override: the YAML (stage canary) is in force already" in err


def test_reset_through_the_admin_api_needs_a_write_token_and_an_override(
    upstreams: tuple[EchoUpstream, EchoUpstream], start_gateway: GatewayFactory
) -> None:
    legacy, new = upstreams
    gateway = start_gateway(legacy=legacy.url, new=new.url, routes=NEW)
    url = f"{gateway.admin_url}/api/v1/routes/moving/reset"
    writer = {"Authorization": f"Bearer {_token(gateway, 'write')}"}
    reader = {"Authorization": f"Bearer {_token(gateway, 'read')}"}

    nothing = httpx.post(url, json={"reason": "tidy"}, headers=writer)
    assert nothing.status_code == 409
    assert nothing.headers["content-type"] == "application/problem+json"
    assert "no runtime override" in nothing.json()["detail"]

    back = httpx.post(
        f"{gateway.admin_url}/api/v1/routes/moving/rollback", json={"reason": "x"}, headers=writer
    )
    assert back.status_code == 200, back.text
    wait_until(lambda: _sides(gateway) == {"legacy"}, "the rollback")
    # `routes --match` explains a request against the same table in force.
    code, matched, err = _cli(gateway, "routes", "--match", "GET /api/moving")
    assert code == 0, err
    assert "stage legacy: backend `legacy` answers" in matched
    assert "* moving: runtime override by token:write" in matched
    assert httpx.post(url, json={"reason": "x"}, headers=reader).status_code == 403
    assert httpx.post(url, json={"reason": "x"}).status_code == 401

    done = httpx.post(url, json={"reason": "new is fixed"}, headers=writer)
    assert done.status_code == 200, done.text
    change = done.json()
    assert (change["action"], change["unit"], change["actor"]) == ("reset", "moving", "token:write")
    assert change["before"]["stage"] == "legacy" and change["after"]["stage"] == "new"
    assert change["evidence"]["dropped"]["actor"] == "token:write"
    wait_until(lambda: _sides(gateway) == {"new"}, "the YAML's stage new")

    listed = httpx.get(f"{gateway.admin_url}/api/v1/audit?unit=moving", headers=reader).json()
    assert [entry["action"] for entry in listed] == ["reset", "rollback"]
    unknown = httpx.get(f"{gateway.admin_url}/api/v1/audit?unit=nope", headers=reader)
    assert unknown.status_code == 404 and "'nope'" in unknown.json()["detail"]


def test_routes_and_export_read_a_running_gateways_overrides_with_admin(
    upstreams: tuple[EchoUpstream, EchoUpstream], start_gateway: GatewayFactory
) -> None:
    legacy, new = upstreams
    gateway = start_gateway(legacy=legacy.url, new=new.url, routes=CANARY_ALL)
    assert gateway.admin_url is not None
    env = {"STRANGLER_ADMIN_TOKEN": _token(gateway, "read")}
    code, _, err = _cli(gateway, "rollout", "weight", "moving", "25", "-r", "slower")
    assert code == 0, err

    def remote(*args: str) -> tuple[int, str, str]:
        done = run_cli(
            *args, "--config", str(gateway.config_path), "--admin", gateway.admin_url, env=env
        )
        return done.returncode, done.stdout, done.stderr

    code, out, err = remote("routes")
    assert code == 0 and err == "", err
    assert "canary*" in out and "25% to new" in out
    code, out, err = remote("export")
    assert code == 0, err
    assert "weight: 25" in out and "stage: canary" in out


def test_audit_of_an_unknown_route_exits_2_naming_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "strangler.yaml", legacy="http://127.0.0.1:9", routes=NEW)
    done = run_cli("audit", "nope", "--config", str(config))
    assert done.returncode == 2
    assert "no route or rollout group named 'nope'" in done.stderr


@pytest.mark.parametrize(
    ("store_file", "warned"),
    [
        # Before the first run there is no store, so no override: nothing to warn about, and
        # nothing is created.
        (None, False),
        (b"this is not a database", True),
    ],
)
def test_routes_prints_the_yaml_when_the_store_cannot_be_read(
    tmp_path: Path, store_file: bytes | None, warned: bool
) -> None:
    config = write_config(tmp_path / "strangler.yaml", legacy="http://127.0.0.1:9", routes=NEW)
    database = tmp_path / "strangler.db"
    if store_file is not None:
        database.write_bytes(store_file)
    done = run_cli("routes", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert " moving " in done.stdout and " new " in done.stdout
    lines = done.stderr.splitlines()
    if warned:
        assert len(lines) == 1 and lines[0].startswith("warning: runtime overrides not read (")
        assert lines[0].endswith(
            "the stages shown are the YAML's, and a running gateway may route otherwise"
        ), lines
    else:
        assert lines == [] and not database.exists()
