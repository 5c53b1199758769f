"""The demo's Rails bridge end to end: a user logged in on legacy is known to the new app.

The real gateway runs the demo's own demo.yaml (ports rewritten as the runner does) in front of
the real legacy app (a Rails 6.1 cookie-store session with the demo secret) and the real new
app, which verifies the gateway's identity tokens against the admin listener's JWKS. The new
app is wrapped in a RequestLog, so tests see what reached it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strangler.demo.cookie_store import DEMO_SECRET_KEY_BASE, SECRET_KEY_BASE_ENV, SESSION_COOKIE
from strangler.demo.legacy_app import create_legacy_app
from strangler.demo.new_app import create_new_app
from strangler.demo.runner import JWKS_PATH, demo_config
from strangler.demo.traffic import Action, generate_traffic
from strangler.identity import (
    KeyDigest,
    RailsSessionDecoder,
    RailsSessionEncoder,
    RailsSessionSettings,
    SessionSecret,
)
from strangler.identity.tokens import KeyRingFile
from tests.integration.demo_servers import RequestLog, free_ports, serve
from tests.integration.gateway_process import GatewayProcess

_FORM_TOKEN = re.compile(r'name="authenticity_token" value="([^"]+)"')
_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_USER_ID = re.compile(r"\(user #(\d+)\)")
_JSON = {"accept": "application/json"}
_DEMO_SECRET = SessionSecret(DEMO_SECRET_KEY_BASE.encode(), KeyDigest.SHA1)


@dataclass(frozen=True, slots=True)
class DemoStack:
    gateway: GatewayProcess
    new_url: str
    new_app: RequestLog
    keys_path: Path
    issuer: str


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoStack]:
    # The new app needs the JWKS URL before the gateway exists, as in the runner: pick the port.
    (admin_port,) = free_ports(1)
    config_dir = tmp_path_factory.mktemp("demo")
    with contextlib.ExitStack() as running, pytest.MonkeyPatch.context() as env:
        # Read by the legacy app's factory and by the gateway's `rails.secret_key_base_env`.
        env.setenv(SECRET_KEY_BASE_ENV, DEMO_SECRET_KEY_BASE)
        issuer = str(demo_config(0, 0, 0, admin_port)["identity"]["issuer"])
        legacy_url = running.enter_context(serve(create_legacy_app(), "/up"))
        jwks_url = f"http://127.0.0.1:{admin_port}{JWKS_PATH}"
        new_app = RequestLog(create_new_app(jwks_url=jwks_url, issuer=issuer))
        new_url = running.enter_context(serve(new_app, "/healthz"))
        config = demo_config(0, _port(legacy_url), _port(new_url), admin_port)
        path = config_dir / "demo.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        gateway = GatewayProcess(path).start()
        running.callback(gateway.stop)
        keys_path = config_dir / config["identity"]["keys_path"]
        yield DemoStack(gateway, new_url, new_app, keys_path, issuer)


def _browser(stack: DemoStack) -> httpx.Client:
    return httpx.Client(base_url=stack.gateway.url, trust_env=False)


def _match(pattern: re.Pattern[str], response: httpx.Response) -> str:
    found = pattern.search(response.text)
    assert found is not None, response.text
    return found.group(1)


def _log_in(browser: httpx.Client, email: str) -> tuple[str, str]:
    """Log in on legacy through the gateway; the user id and the next page's CSRF meta token."""
    token = _match(_FORM_TOKEN, browser.get("/login"))
    form = {"email": email, "password": "secret", "authenticity_token": token}
    assert browser.post("/login", data=form).status_code == 302
    account = browser.get("/account")
    return _match(_USER_ID, account), _match(_META_TOKEN, account)


def test_a_user_logged_in_on_legacy_is_known_to_the_new_app(stack: DemoStack) -> None:
    with _browser(stack) as browser:
        user_id, _ = _log_in(browser, "ada@example.com")
        cookie = browser.cookies[SESSION_COOKIE]
        me = browser.get("/api/me", headers=_JSON)
    assert (me.status_code, me.headers["x-served-by"]) == (200, "new")
    body = me.json()
    assert body["user"] == {"id": user_id}
    identity = body["identity"]
    assert (identity["source"], identity["issuer"]) == ("authorization", stack.issuer)
    assert identity["route"] == "me.api"
    assert stack.gateway.admin_url is not None
    jwks = httpx.get(stack.gateway.admin_url + JWKS_PATH, trust_env=False).json()
    assert identity["kid"] in {key["kid"] for key in jwks["keys"]}
    # The token names legacy's own session: the hash of the session id in its Rails cookie.
    settings = RailsSessionSettings(SESSION_COOKIE, (_DEMO_SECRET,))
    session = RailsSessionDecoder(settings, clock=time.time).decode(cookie).session
    assert session is not None
    expected_sid = hashlib.sha256(str(session["session_id"]).encode()).hexdigest()
    assert identity["session_id_hash"] == expected_sid
    # What the new app received: a bearer token, and never the Rails session cookie.
    received = stack.new_app.to("/api/me")[-1]
    assert received["authorization"].startswith("Bearer ")
    assert SESSION_COOKIE not in received.get("cookie", "")


def test_the_clients_own_authorization_passes_and_the_identity_goes_beside_it(
    stack: DemoStack,
) -> None:
    with _browser(stack) as browser:
        user_id, _ = _log_in(browser, "basic@example.com")
        me = browser.get("/api/me", headers={**_JSON, "authorization": "Basic b3duOmNyZWRz"})
    assert me.status_code == 200
    assert me.json()["user"] == {"id": user_id}
    assert me.json()["identity"]["source"] == "x-strangler-identity"
    assert stack.new_app.to("/api/me")[-1]["authorization"] == "Basic b3duOmNyZWRz"


@pytest.mark.parametrize(
    "cookie",
    [
        None,
        "garbage",
        RailsSessionEncoder(
            SESSION_COOKIE, SessionSecret(b"not the demo secret" * 4, KeyDigest.SHA1)
        ).encode({"session_id": "e" * 32, "user_id": 1}),
    ],
    ids=["no-cookie", "garbage", "another-secret"],
)
def test_without_a_session_the_new_app_answers_401(stack: DemoStack, cookie: str | None) -> None:
    headers = {**_JSON, "cookie": f"{SESSION_COOKIE}={cookie}"} if cookie else _JSON
    me = httpx.get(stack.gateway.url + "/api/me", headers=headers, trust_env=False)
    assert (me.status_code, me.headers["content-type"]) == (401, "application/problem+json")
    assert me.headers["www-authenticate"].startswith("Bearer ")
    assert me.headers["x-served-by"] == "new"


def test_a_star_from_the_page_needs_its_csrf_token(stack: DemoStack) -> None:
    path = "/api/projects/2/star"
    with _browser(stack) as other:
        _, other_token = _log_in(other, "mallory@example.com")
    with _browser(stack) as browser:
        user_id, token = _log_in(browser, "grace@example.com")
        before = len(stack.new_app.to(path))
        refused = {
            "no token": {},
            "garbage token": {"x-csrf-token": "garbage"},
            "another session's token": {"x-csrf-token": other_token},
            "cross-site origin": {"x-csrf-token": token, "origin": "https://evil.example"},
        }
        answers = {what: browser.post(path, headers={**_JSON, **h}) for what, h in refused.items()}
        starred = browser.post(
            path, headers={**_JSON, "x-csrf-token": token, "origin": stack.gateway.url}
        )
    assert {what: answer.status_code for what, answer in answers.items()} == dict.fromkeys(
        refused, 403
    )
    assert all("forgery protection" in answer.json()["detail"] for answer in answers.values())
    # The gateway refused them: none reached the new app.
    assert len(stack.new_app.to(path)) == before + 1
    assert starred.status_code == 200
    assert starred.json()["user"] == {"id": user_id}
    assert starred.json()["stars_count"] >= 1


def _sign(private_key: Ed25519PrivateKey, kid: str, **claims: object) -> str:
    now = int(time.time())
    payload = {"iss": "strangler", "sub": "7", "aud": "new", "iat": now, "exp": now + 60, **claims}
    return jwt.encode(payload, private_key, algorithm="EdDSA", headers={"kid": kid})


@pytest.mark.parametrize(
    ("token_of", "status"),
    [
        ("valid", 200),
        ("foreign_key", 401),
        ("foreign_key_known_kid", 401),
        ("wrong_issuer", 401),
        ("for_another_backend", 401),
        ("expired", 401),
        ("not_a_jwt", 401),
    ],
)
def test_the_new_app_accepts_only_tokens_the_gateways_keys_signed(
    stack: DemoStack, token_of: str, status: int
) -> None:
    key = KeyRingFile(stack.keys_path).current().signing_key(time.time())
    foreign = Ed25519PrivateKey.generate()
    past = int(time.time()) - 600
    tokens = {
        "valid": lambda: _sign(key.private_key, key.kid, iss=stack.issuer),
        "foreign_key": lambda: _sign(foreign, "unknown-kid"),
        "foreign_key_known_kid": lambda: _sign(foreign, key.kid),
        "wrong_issuer": lambda: _sign(key.private_key, key.kid, iss="someone-else"),
        "for_another_backend": lambda: _sign(key.private_key, key.kid, aud="billing"),
        "expired": lambda: _sign(key.private_key, key.kid, iat=past, exp=past + 60),
        "not_a_jwt": lambda: "not-a-jwt",
    }
    response = httpx.get(
        stack.new_url + "/api/me",
        headers={**_JSON, "authorization": f"Bearer {tokens[token_of]()}"},
        trust_env=False,
    )
    assert response.status_code == status, response.text
    if status == 401:
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    else:
        assert response.json()["user"] == {"id": "7"}


def test_traffic_identity_sessions_pass_every_check(stack: DemoStack) -> None:
    mix = {Action.IDENTITY_SESSION: 1.0}
    stats = asyncio.run(generate_traffic(stack.gateway.url, 10, 1.0, mix=mix))
    sessions = stats.actions["identity_session"]
    assert sessions > 0
    assert stats.errors == {}
    assert stats.identity_ok == {"me": sessions, "star": sessions}
    assert stats.by_backend["new"] == 2 * sessions
    assert "failed x 0" in stats.render()
