"""The admin listener of a real gateway: health, readiness, the identity JWKS, problem answers.

Every gateway here is a real process on 127.0.0.1:0 with its admin listener on a port of its
own; the JWKS is checked the way the new backend will use it: a token minted from the same key
ring file verifies with PyJWT's PyJWKClient pointed at the admin URL.
"""

from __future__ import annotations

import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import jwt
import pytest

from strangler.identity.tokens import IdentityMinter, KeyRingFile
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import ADMIN_PREFIX, GatewayProcess, write_config
from tests.integration.probes import AnnouncingUpstream, wait_until
from tests.integration.upstreams import EchoUpstream

SECRET_ENV = {"STRANGLER_TEST_SECRET_KEY_BASE": "ab" * 64}
TTL_S = 30
PUBLIC_MEMBERS = {"kty", "crv", "x", "kid", "use", "alg"}


def _rails(keys_path: str = "keys.json") -> str:
    return (
        "rails:\n"
        "  cookie: _app_session\n"
        "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
        "identity:\n"
        f"  keys_path: {keys_path}\n"
        f"  ttl_s: {TTL_S}\n"
        "  audience: new-app\n"
    )


def _admin(gw: GatewayProcess, path: str, method: str = "GET") -> httpx.Response:
    assert gw.admin_url is not None
    return httpx.request(method, gw.admin_url + path, timeout=10, trust_env=False)


def _kids(gw: GatewayProcess) -> set[str]:
    response = _admin(gw, "/.well-known/jwks.json")
    assert response.status_code == 200, response.text
    return {key["kid"] for key in response.json()["keys"]}


def _verify(gw: GatewayProcess, token: str) -> dict[str, object]:
    """What the new backend does: fetch the JWKS, pick the token's kid, check the signature."""
    client = jwt.PyJWKClient(f"{gw.admin_url}/.well-known/jwks.json", cache_jwk_set=False)
    key = client.get_signing_key_from_jwt(token)
    claims: dict[str, object] = jwt.decode(
        token, key.key, algorithms=["EdDSA"], audience="new-app", issuer="strangler"
    )
    return claims


def _mint(keys_path: Path) -> str:
    minter = IdentityMinter(
        KeyRingFile(keys_path, max_token_ttl_s=TTL_S),
        issuer="strangler",
        ttl_s=TTL_S,
        audience="new-app",
    )
    return minter.mint(sub="42", session_id_hash="s1", route="projects.show")


def _refuses(url: str) -> bool:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def _strangler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strangler", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_healthz_and_readyz_answer_with_the_config_version(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, workers: int
) -> None:
    gw = start_gateway(workers=workers, legacy=legacy_upstream.url)
    assert gw.admin_url is not None
    assert gw.admin_url != gw.url

    health = _admin(gw, "/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert health.headers["content-type"] == "application/json"
    ready = _admin(gw, "/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ready", "config_version": 1, "reason": None, "backends_down": []},
    )


@pytest.mark.parametrize("workers", [1, 2])
def test_a_token_minted_from_the_key_ring_verifies_against_the_served_jwks(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, tmp_path: Path, workers: int
) -> None:
    gw = start_gateway(workers=workers, legacy=legacy_upstream.url, extra=_rails(), env=SECRET_ENV)
    keys_path = tmp_path / "keys.json"  # relative to the config's folder
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600

    response = _admin(gw, "/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    # Half the ring's publish-ahead time (2 x the 30 s ttl): verifiers see a next key in time.
    assert response.headers["cache-control"] == "public, max-age=30"
    keys = response.json()["keys"]
    assert len(keys) == 2  # the active key and the next one
    assert all(set(key) == PUBLIC_MEMBERS for key in keys), keys  # never "d"

    token = _mint(keys_path)
    claims = _verify(gw, token)
    assert (claims["sub"], claims["route"]) == ("42", "projects.show")


def test_a_rotation_by_the_cli_is_served_without_a_reload(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, tmp_path: Path
) -> None:
    keys_path = tmp_path / "keys.json"
    # A ring whose next key was published long ago, and which publishes the next ones with no
    # delay: rotations may follow each other at once, so the test needs no clock of its own.
    ring = KeyRingFile(
        keys_path, now=time.time() - 1000, max_token_ttl_s=TTL_S, publish_ahead_s=0
    ).ring
    old_active = ring.signing_key(time.time()).kid
    old_next = ring.next_key()
    assert old_next is not None
    gw = start_gateway(legacy=legacy_upstream.url, extra=_rails(), env=SECRET_ENV)
    assert _kids(gw) == {old_active, old_next.kid}

    result = _strangler("keys", "rotate", "--config", str(gw.config_path))
    assert result.returncode == 0, result.stderr
    rotated = KeyRingFile(keys_path, max_token_ttl_s=TTL_S).ring
    new_next = rotated.next_key()
    assert new_next is not None
    assert rotated.signing_key(time.time()).kid == old_next.kid

    # The admin re-reads the file by itself (it looks at most once a second).
    wait_until(lambda: new_next.kid in _kids(gw), "the JWKS to publish the new next key")
    # The retired key stays published: tokens it signed are still valid for their ttl.
    assert _kids(gw) == {old_active, old_next.kid, new_next.kid}
    response = _admin(gw, "/.well-known/jwks.json")
    assert response.headers["cache-control"] == "public, max-age=0"  # publish_ahead_s 0

    token = _mint(keys_path)
    assert jwt.get_unverified_header(token)["kid"] == old_next.kid
    assert _verify(gw, token)["sub"] == "42"


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reload_points_the_jwks_at_the_new_key_ring(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, tmp_path: Path, workers: int
) -> None:
    gw = start_gateway(
        workers=workers, legacy=legacy_upstream.url, extra=_rails("a.json"), env=SECRET_ENV
    )
    kids_a = _kids(gw)
    staging = tmp_path / "next.yaml"
    write_config(staging, legacy=legacy_upstream.url, extra=_rails("b.json"))
    staging.replace(gw.config_path)
    gw.signal(signal.SIGHUP)

    wait_until(
        lambda: _admin(gw, "/readyz").json().get("config_version") == 2,
        "the admin app to see the reloaded config",
    )
    kids_b = _kids(gw)
    ring_b = KeyRingFile(tmp_path / "b.json", max_token_ttl_s=TTL_S).ring
    assert kids_b == {key.kid for key in ring_b.keys}
    assert kids_b.isdisjoint(kids_a)


@pytest.mark.parametrize(
    ("method", "path", "status", "detail"),
    [
        ("GET", "/.well-known/jwks.json", 404, "no identity keys: the gateway's config has no"),
        ("GET", "/nope", 404, "no admin endpoint at /nope"),
        ("GET", "/readyz/extra", 404, "no admin endpoint at /readyz/extra"),
        ("POST", "/healthz", 405, None),
        ("DELETE", "/.well-known/jwks.json", 405, None),
    ],
)
def test_errors_are_problem_details(
    gateway: GatewayProcess, method: str, path: str, status: int, detail: str | None
) -> None:
    response = _admin(gateway, path, method)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert body["title"] == {404: "Not Found", 405: "Method Not Allowed"}[status]
    if detail is None:
        assert "detail" not in body
        assert response.headers["allow"] == "GET"
    else:
        assert body["detail"].startswith(detail), body


def test_the_openapi_document_lists_the_endpoints(gateway: GatewayProcess) -> None:
    response = _admin(gateway, "/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "strangler admin"
    assert set(document["paths"]) == {
        "/healthz",
        "/readyz",
        "/.well-known/jwks.json",
        "/metrics",
        "/api/v1/session",
        "/api/v1/routes",
        "/api/v1/routes/{name}",
        "/api/v1/routes/{name}/promote",
        "/api/v1/routes/{name}/rollback",
        "/api/v1/routes/{name}/pause",
        "/api/v1/routes/{name}/resume",
        "/api/v1/routes/{name}/reset",
        "/api/v1/routes/{name}/weight",
        "/api/v1/routes/{name}/drill",
        "/api/v1/routes/{name}/series",
        "/api/v1/audit",
        "/api/v1/diffs",
        "/api/v1/diffs/{route}",
        "/api/v1/diffs/{route}/reviews",
        "/api/v1/progress",
        "/api/v1/progress/series",
        "/api/v1/identity",
        "/api/v1/slos",
        "/api/v1/slos/{name}",
        "/api/v1/alerts",
        "/api/v1/data",
        "/api/v1/events",
    }
    jwks_answers = document["paths"]["/.well-known/jwks.json"]["get"]["responses"]
    assert "application/problem+json" in jwks_answers["404"]["content"]


@pytest.mark.parametrize("workers", [1, 2])
def test_a_taken_admin_port_exits_1_naming_the_address(
    tmp_path: Path, legacy_upstream: EchoUpstream, workers: int
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_config(
            tmp_path / "strangler.yaml",
            legacy=legacy_upstream.url,
            extra=f'admin: {{listen: "127.0.0.1:{port}"}}\n',
        )
        result = _strangler("run", "--config", str(path), "--workers", str(workers))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: admin.listen: cannot listen on 127.0.0.1:{port}: "), last
    assert "strangler listening" not in result.stdout
    assert "Traceback" not in result.stderr


def test_a_second_gateway_on_the_default_admin_port_is_told_which_key_to_set(
    tmp_path: Path, legacy_upstream: EchoUpstream
) -> None:
    # The user never wrote `admin:`; the first gateway on this machine holds the default port.
    path = tmp_path / "strangler.yaml"
    path.write_text(
        f'listen: 127.0.0.1:0\nbackends: {{legacy: {{url: "{legacy_upstream.url}"}}}}\n'
    )
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", 9900))
            holder.listen()
        except OSError:
            pass  # already taken by another process: the same situation for this test
        result = _strangler("run", "--config", str(path))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: admin.listen: cannot listen on 127.0.0.1:9900: "), last
    assert last.endswith(
        "`admin.listen` is not set, so its default was used; set `admin.listen:` to a free "
        "address, e.g. 127.0.0.1:9901, or null to turn it off"
    ), last


def test_a_taken_listen_port_names_the_key(tmp_path: Path, legacy_upstream: EchoUpstream) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = write_config(
            tmp_path / "strangler.yaml", legacy=legacy_upstream.url, listen=f"127.0.0.1:{port}"
        )
        result = _strangler("run", "--config", str(path))
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: listen: cannot listen on 127.0.0.1:{port}: "), last
    assert last.endswith(f"set `listen:` to a free address, e.g. 127.0.0.1:{port + 1}"), last


@pytest.mark.parametrize("workers", [1, 2])
def test_admin_listen_null_turns_the_admin_listener_off(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, workers: int
) -> None:
    gw = start_gateway(workers=workers, legacy=legacy_upstream.url, extra="admin: {listen: null}\n")
    assert gw.admin_url is None
    assert httpx.get(gw.url + "/x", timeout=10).status_code == 200
    assert not any(line.startswith(ADMIN_PREFIX) for line in gw.stdout_lines)


@pytest.mark.parametrize("workers", [1, 2])
def test_readyz_turns_503_while_draining_and_the_admin_port_closes_on_exit(
    start_gateway: GatewayFactory, workers: int
) -> None:
    upstream = AnnouncingUpstream("slow").start()
    try:
        gw = start_gateway(workers=workers, legacy=upstream.url)
        admin_url = gw.admin_url
        assert admin_url is not None
        answers: list[httpx.Response] = []
        in_flight = threading.Thread(
            target=lambda: answers.append(httpx.get(gw.url + "/slow/1500", timeout=20)),
            daemon=True,
        )
        in_flight.start()
        assert upstream.wait_arrival() == "/slow/1500"

        gw.signal(signal.SIGTERM)
        wait_until(lambda: _admin(gw, "/readyz").status_code == 503, "/readyz to report the drain")
        draining = _admin(gw, "/readyz")
        assert draining.headers["content-type"] == "application/problem+json"
        assert draining.json()["detail"] == "the gateway is draining: it is stopping"
        assert _admin(gw, "/healthz").status_code == 200

        in_flight.join(timeout=20)
        assert [answer.status_code for answer in answers] == [200]
        assert gw.proc is not None
        assert gw.proc.wait(timeout=10) == 0
        assert _refuses(admin_url)
    finally:
        upstream.stop()
