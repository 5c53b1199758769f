"""Secrets never reach the shadow store, the admin API or the log.

Requests carrying every kind of secret a browser or an API client sends (the Rails session
cookie, another session cookie, bearer JWTs, Basic credentials, secret query
parameters, a password in a JSON body, and a bearer token and a JWT under innocuous JSON keys)
go through a shadowed route whose two backends repeat all of it back, each value prefixed with
the backend's name: every secret is then part of a difference. The gateway's own identity JWTs
for the new backend are secrets too. None of them may be found in the SQLite file (and its WAL),
in the admin API's diffs answers, or in the gateway's log, while the differences themselves are
stored.
"""

from __future__ import annotations

import base64
import secrets
import stat
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from strangler.identity import KeyDigest, RailsSessionEncoder, SessionSecret
from strangler.shadow.redact import FILTERED
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

RAILS_SECRET = "e" * 32 + "0123456789abcdef" * 6
COOKIE = "_app_session"
ROUTES = """\
  - name: reflected
    match: "ANY /reflect/*rest"
    stage: shadow
    shadow: {writes: sandbox, noise_sample_rate: 0}
    diff: {max_differences: 200}
"""
REQUESTS = 3
DIFFS_PATHS = ("/api/v1/diffs", "/api/v1/diffs/reflected")


def _extra(tmp_path: Path) -> str:
    return (
        "rails:\n"
        f"  cookie: {COOKIE}\n"
        "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
        "identity:\n"
        f"  keys_path: {tmp_path / 'keys.json'}\n"
        "store:\n"
        "  flush_interval_s: 0.2\n"
    )


def _jwt(subject: str) -> str:
    claims = {"sub": subject, "nonce": secrets.token_hex(8)}
    return jwt.encode(claims, secrets.token_bytes(32), algorithm="HS256")


class Secrets:
    """One value of each kind, new for every run, and the requests that carry them."""

    def __init__(self) -> None:
        encoder = RailsSessionEncoder(COOKIE, SessionSecret(RAILS_SECRET.encode(), KeyDigest.SHA1))
        self.rails_cookie = encoder.encode(
            {"session_id": secrets.token_hex(16), "user_id": 42, "_csrf_token": "x" * 44}
        )
        self.session_id = secrets.token_hex(16)
        self.client_jwt = _jwt("client")
        self.basic = base64.b64encode(f"ann:{secrets.token_urlsafe(12)}".encode()).decode()
        self.api_key = secrets.token_hex(12)
        self.oauth_code = secrets.token_hex(10)
        self.password = secrets.token_urlsafe(12)
        self.note_token = secrets.token_urlsafe(24)
        self.remark_jwt = _jwt("remark")

    def cookie_header(self) -> str:
        return f"sessionid={self.session_id}; {COOKIE}={self.rails_cookie}; theme=dark"

    def send(self, base_url: str) -> None:
        with httpx.Client(base_url=base_url, timeout=10) as client:
            responses = [
                client.get(
                    "/reflect/page",
                    params={"api_key": self.api_key, "code": self.oauth_code, "page": "2"},
                    headers={
                        "Cookie": self.cookie_header(),
                        "Authorization": f"Bearer {self.client_jwt}",
                    },
                ),
                client.get(
                    "/reflect/basic",
                    headers={"Authorization": f"Basic {self.basic}"},
                ),
                # No Authorization of its own: the gateway's identity JWT takes that header.
                client.post(
                    "/reflect/form",
                    json={
                        "password": self.password,
                        "note": f"Bearer {self.note_token}",
                        "remark": self.remark_jwt,
                        "title": "hello",
                    },
                    headers={"Cookie": self.cookie_header()},
                ),
            ]
        for response in responses:
            assert (response.status_code, response.json()["name"]) == (200, "legacy"), response.text

    def values(self) -> dict[str, str]:
        return {
            "rails cookie": self.rails_cookie,
            "sessionid": self.session_id,
            "client JWT": self.client_jwt,
            "Basic credentials": self.basic,
            "api_key query": self.api_key,
            "code query": self.oauth_code,
            "password field": self.password,
            "bearer under note": self.note_token,
            "JWT under remark": self.remark_jwt,
        }


def _with_starts(values: dict[str, str]) -> dict[str, str]:
    """The values, and the first 24 characters of the long ones: a value cut at the store's
    200-character limit still leaks its beginning."""
    starts = {f"{kind} (start)": value[:24] for kind, value in values.items() if len(value) > 24}
    return {**values, **starts}


def _identity_tokens(new: EchoUpstream, sent: Secrets) -> dict[str, str]:
    """The identity JWTs the gateway gave the new backend (a secret of the gateway's own)."""
    found = {}
    for index, request in enumerate(new.requests):
        for name in ("x-strangler-identity", "authorization"):
            token = request["headers"].get(name, "").removeprefix("Bearer ")
            if token.startswith("eyJ") and token != sent.client_jwt:
                found[f"identity JWT {index} in {name}"] = token
    return found


def _read_token(gw: GatewayProcess) -> str:
    created = run_cli(
        "token", "create", "--scope", "read", "--name", "auditor", "--json",
        "--config", str(gw.config_path),
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    token: str = orjson.loads(created.stdout)["token"]
    return token


def _admin(gw: GatewayProcess, token: str, path: str) -> Any:
    assert gw.admin_url is not None
    auth = {"Authorization": f"Bearer {token}"}
    response = httpx.get(gw.admin_url + path, headers=auth, timeout=10, trust_env=False)
    assert response.status_code == 200, response.text
    return response.json()


def _compared(gw: GatewayProcess, token: str) -> int:
    rows = _admin(gw, token, "/api/v1/diffs")
    return sum(row["compared"] for row in rows if row["route"] == "reflected")


def _modes(database: Path) -> dict[str, int]:
    """The permission bits of the database and of its WAL and shared-memory files."""
    files = [Path(f"{database}{suffix}") for suffix in ("", "-wal", "-shm")]
    return {path.name: stat.S_IMODE(path.stat().st_mode) for path in files}


@pytest.fixture
def gateway(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> GatewayProcess:
    monkeypatch.setenv("STRANGLER_TEST_SECRET_KEY_BASE", RAILS_SECRET)
    legacy, new = upstreams
    return start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, extra=_extra(tmp_path))


def test_no_secret_reaches_the_store_the_admin_api_or_the_log(
    gateway: GatewayProcess, upstreams: tuple[EchoUpstream, EchoUpstream], tmp_path: Path
) -> None:
    _, new = upstreams
    sent = Secrets()
    sent.send(gateway.url)
    token = _read_token(gateway)
    wait_until(lambda: _compared(gateway, token) == REQUESTS, "the comparisons in the store")
    answers = {path: _admin(gateway, token, path) for path in DIFFS_PATHS}
    database = tmp_path / "strangler.db"
    # While the gateway runs, the WAL and its index exist: all three are the owner's alone.
    assert _modes(database) == {
        "strangler.db": 0o600,
        "strangler.db-wal": 0o600,
        "strangler.db-shm": 0o600,
    }
    assert gateway.stop() == 0

    # The differences are stored (so a secret in them would have been), filtered.
    detail = answers["/api/v1/diffs/reflected"]
    paths = {path["rule_path"] for path in detail["paths"]}
    for expected in (
        "$.name",
        "$.headers.cookie",
        "$.headers.authorization",
        "$.query.api_key",
        "$.query.code",
        "$.fields.password",
        "$.fields.note",
        "$.notes.note0",
    ):
        assert expected in paths
    examples = {(e["path"], e["request"]): e for e in detail["examples"]}
    cookie = examples[("$.headers.cookie", "GET /reflect/page")]
    assert (cookie["primary"], cookie["shadow"]) == (FILTERED, FILTERED)
    title = examples[("$.fields.title", "POST /reflect/form")]
    assert (title["primary"], title["shadow"]) == ("legacy hello", "new hello")
    note = examples[("$.fields.note", "POST /reflect/form")]
    assert note["primary"] == f"legacy Bearer {FILTERED}"

    files = {database.name: database.read_bytes()}
    wal = database.with_name(database.name + "-wal")
    if wal.exists():
        files[wal.name] = wal.read_bytes()
    places = {
        **{name: data.decode("latin-1") for name, data in files.items()},
        **{f"GET {path}": orjson.dumps(answer).decode() for path, answer in answers.items()},
        "the gateway's log": gateway.stderr_text(),
    }
    assert "shadow results" in places["the gateway's log"]
    identity = _identity_tokens(new, sent)
    assert len(identity) == 2, new.requests  # the GET with a cookie, and the POST
    leaks = [
        f"{kind} in {place}"
        for kind, value in _with_starts({**sent.values(), **identity}).items()
        for place, text in places.items()
        if value in text
    ]
    assert leaks == [], "\n".join(leaks)
