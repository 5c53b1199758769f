"""The admin API's authentication on a real gateway process, with tokens made by the real
`strangler token` commands: what an operator does, over real sockets.

The in-process cases (scopes, CSRF, sessions, the login limit) are in
tests/unit/test_admin_auth.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.upstreams import EchoUpstream


def _strangler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strangler", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _admin(
    gw: GatewayProcess, path: str, method: str = "GET", token: str | None = None
) -> httpx.Response:
    assert gw.admin_url is not None
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.request(method, gw.admin_url + path, headers=headers, timeout=10, trust_env=False)


MINIMAL_CONFIG = (
    'backends:\n  legacy: {url: "http://127.0.0.1:3000"}\n  new: {url: "http://127.0.0.1:8080"}\n'
)


def _create(config: Path, *args: str) -> dict[str, str]:
    result = _strangler("token", "create", "--config", str(config), "--json", *args)
    assert result.returncode == 0, result.stderr
    created: dict[str, str] = orjson.loads(result.stdout)
    return created


@pytest.mark.parametrize("workers", [1, 2])
def test_a_token_from_the_cli_opens_the_admin_api_until_it_is_revoked(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, workers: int
) -> None:
    gw = start_gateway(workers=workers, legacy=legacy_upstream.url)
    config = gw.config_path

    anonymous = _admin(gw, "/api/v1/session")
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="strangler"'

    # Made while the gateway runs: it looks tokens up in the store, no reload needed.
    created = _create(config, "--name", "ci", "--scope", "write")
    assert set(created) == {"id", "name", "scope", "token"}
    whoami = _admin(gw, "/api/v1/session", token=created["token"])
    assert whoami.status_code == 200, whoami.text
    assert whoami.json() == {
        "subject": "token:ci",
        "scope": "write",
        "via": "token",
        "expires_at": None,
    }

    listed = _strangler("token", "list", "--config", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = orjson.loads(listed.stdout)
    assert (row["id"], row["name"], row["scope"]) == (created["id"], "ci", "write")
    assert row["last_used_at"] is not None and row["revoked_at"] is None
    assert created["token"] not in listed.stdout

    revoked = _strangler("token", "revoke", created["id"], "--config", str(config))
    assert (revoked.returncode, revoked.stdout) == (0, f"revoked {created['id']}\n")
    assert _admin(gw, "/api/v1/session", token=created["token"]).status_code == 401


def test_token_create_prints_the_token_once_with_a_warning(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(MINIMAL_CONFIG)
    result = _strangler("token", "create", "--config", str(config), "--name", "ci")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("created token tok_") and lines[0].endswith("(ci, scope read):")
    assert lines[1].startswith("stk_") and len(lines[1]) == 47
    assert "shown only once" in lines[2]
    assert lines[1] not in _strangler("token", "list", "--config", str(config)).stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("create", "--name", "ci", "--scope", "admin"), 2, "--scope must be read or write"),
        (("create", "--name", "c i"), 2, "--name must be"),
        (("revoke", "tok_00000000"), 2, "no token with id 'tok_00000000'"),
    ],
)
def test_bad_token_arguments_exit_2(
    tmp_path: Path, args: tuple[str, ...], code: int, message: str
) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(MINIMAL_CONFIG)
    result = _strangler("token", *args, "--config", str(config))
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_hash_password_prints_a_hash_the_config_accepts(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "strangler", "token", "hash-password"],
        input="s3cret pass\ns3cret pass\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    password_hash = result.stdout.strip()
    assert password_hash.startswith("scrypt$16384$8$1$")
    assert "s3cret" not in result.stdout
    config = tmp_path / "strangler.yaml"
    config.write_text(
        MINIMAL_CONFIG
        + f'admin:\n  users:\n    - {{name: ana, password_hash: "{password_hash}"}}\n'
    )
    checked = _strangler("check-config", str(config))
    assert checked.returncode == 0, checked.stderr


# --- trailing slashes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/routes/"),
        ("GET", "/api/v1/routes/checkout/"),
        ("POST", "/api/v1/routes/checkout/promote/"),
        ("GET", "/healthz/"),
    ],
)
def test_a_trailing_slash_is_a_404_problem_that_never_names_the_hosts_header(
    gateway: GatewayProcess, method: str, path: str
) -> None:
    assert gateway.admin_url is not None
    response = httpx.request(
        method,
        gateway.admin_url + path,
        headers={"Host": "evil.example"},
        timeout=10,
        trust_env=False,
        follow_redirects=False,
    )
    assert "evil.example" not in response.headers.get("location", "")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == (
        f"no admin endpoint at {path}; without the trailing slash, {path.rstrip('/')} is one. "
        "The endpoints are in /openapi.json"
    )
