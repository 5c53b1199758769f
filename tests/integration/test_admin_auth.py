"""The admin API's authentication on a real gateway process, with tokens made by the real
`strangler token` commands: what an operator does, over real sockets. Also the login throttle
(backoff per user and client, X-Forwarded-For from a trusted proxy) and the trailing-slash
answer, as a client on the network sees them.

The in-process cases (scopes, CSRF, sessions, the throttle's rules on a fake clock) are in
tests/unit/test_admin_auth.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest

from strangler.admin.auth import hash_password
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

PASSWORD = "correct horse battery staple"
# How much later than its Retry-After the server may let an attempt through (a loaded machine).
RETRY_SLACK_S = 5.0


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
        "csrf_token": None,
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


# --- the login throttle ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


def _users_admin(password_hash: str, *, attempts: int, trusted: str | None = None) -> str:
    """An `admin:` section with users ana and bo (same password), and `forwarding:` if trusted."""
    text = (
        "admin:\n"
        '  listen: "127.0.0.1:0"\n'
        f"  login_attempts_per_minute: {attempts}\n"
        "  users:\n"
        f'    - {{name: ana, password_hash: "{password_hash}"}}\n'
        f'    - {{name: bo, password_hash: "{password_hash}"}}\n'
    )
    if trusted is not None:
        text += f"forwarding:\n  trusted_proxies: [{trusted}]\n"
    return text


def _login(
    gw: GatewayProcess, user: str, password: str, forwarded_for: str | None = None
) -> httpx.Response:
    assert gw.admin_url is not None
    headers = {} if forwarded_for is None else {"X-Forwarded-For": forwarded_for}
    return httpx.post(
        gw.admin_url + "/api/v1/session",
        json={"user": user, "password": password},
        headers=headers,
        timeout=10,
        trust_env=False,
    )


def _refused_for(response: httpx.Response) -> int:
    """The Retry-After of a 429 login answer, in seconds."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return int(response.headers["retry-after"])


def _login_once_let_through(
    gw: GatewayProcess, refused: httpx.Response, user: str, password: str
) -> httpx.Response:
    """Try the login until the throttle judges it (not 429); it must within `refused`'s
    Retry-After (plus slack). Each try while refused is itself refused, unjudged."""
    answers: list[httpx.Response] = []

    def is_judged() -> bool:
        answers.append(_login(gw, user, password))
        return answers[-1].status_code != 429

    wait_until(
        is_judged,
        f"a login of {user} to be judged after Retry-After {refused.headers['retry-after']}",
        timeout_s=_refused_for(refused) + RETRY_SLACK_S,
    )
    return answers[-1]


def test_the_right_password_waits_out_the_backoff_then_logs_in(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, password_hash: str
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, extra=_users_admin(password_hash, attempts=10))

    assert _login(gw, "ana", "wrong").status_code == 401
    during = _login(gw, "ana", PASSWORD)
    assert _refused_for(during) == 1  # 1 s after the first failure
    assert during.json()["detail"].startswith("too many failed logins for this user from")
    assert "set-cookie" not in during.headers
    # A guess during the backoff is refused unjudged: it is not a second failure.
    _refused_for(_login(gw, "ana", "wrong again"))
    second = _login_once_let_through(gw, during, "ana", "wrong again")
    assert second.status_code == 401
    line = gw.wait_for_log("admin login failed for user 'ana' from 127.0.0.1: 2 in a row")
    assert "next attempt in 2 s" in line

    during = _login(gw, "ana", PASSWORD)
    assert 1 <= _refused_for(during) <= 2  # doubled: 2 s from the failure (the log says so)
    after = _login_once_let_through(gw, during, "ana", PASSWORD)
    assert after.status_code == 200, after.text
    assert after.json()["subject"] == "user:ana"
    # The success cleared ana's failures: one more typo waits 1 s again, not 4.
    assert _login(gw, "ana", "typo").status_code == 401
    assert _refused_for(_login(gw, "ana", PASSWORD)) == 1


def test_another_user_from_the_same_address_is_not_held_back(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, password_hash: str
) -> None:
    # One failure a minute: before, the first failure emptied the address's one bucket.
    gw = start_gateway(legacy=legacy_upstream.url, extra=_users_admin(password_hash, attempts=1))

    assert _login(gw, "ana", "wrong").status_code == 401
    _refused_for(_login(gw, "ana", PASSWORD))
    bo = _login(gw, "bo", PASSWORD)
    assert bo.status_code == 200, bo.text
    assert bo.json()["subject"] == "user:bo"


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_backoff(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, password_hash: str
) -> None:
    behind_proxy = start_gateway(
        legacy=legacy_upstream.url,
        extra=_users_admin(password_hash, attempts=1, trusted="127.0.0.1/32"),
    )
    attacker, colleague = "203.0.113.7", "198.51.100.20"
    assert _login(behind_proxy, "ana", "wrong", forwarded_for=attacker).status_code == 401
    _refused_for(_login(behind_proxy, "ana", PASSWORD, forwarded_for=attacker))
    # The right-most entry a trusted proxy added is the client; the left one is a claim.
    _refused_for(_login(behind_proxy, "ana", PASSWORD, forwarded_for=f"{colleague}, {attacker}"))
    elsewhere = _login(behind_proxy, "ana", PASSWORD, forwarded_for=colleague)
    assert elsewhere.status_code == 200, elsewhere.text
    behind_proxy.wait_for_log(f"admin login failed for user 'ana' from {attacker}: 1 in a row")

    # Same traffic from a peer that is not a trusted proxy: its X-Forwarded-For is ignored,
    # so both "clients" are the peer, 127.0.0.1, and share its backoff.
    direct = start_gateway(
        legacy=legacy_upstream.url, extra=_users_admin(password_hash, attempts=1)
    )
    assert _login(direct, "ana", "wrong", forwarded_for=attacker).status_code == 401
    _refused_for(_login(direct, "ana", PASSWORD, forwarded_for=colleague))
    direct.wait_for_log("admin login failed for user 'ana' from 127.0.0.1: 1 in a row")
