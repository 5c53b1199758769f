"""The Rails bridge through the real gateway: a Rails session cookie becomes a signed identity
token for the new backend, the cookie itself stays home, identity headers can't be forged, and
state changes to the new backend need a valid authenticity token, as Rails would require."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import httpx
import pytest

from strangler.identity import (
    KeyDigest,
    RailsSessionEncoder,
    SessionSecret,
    mint_masked_token,
    new_session_token,
)
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess
from tests.integration.identity_tokens import verified_claims
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

SECRET = "f" * 32 + "0123456789abcdef" * 6
COOKIE = "_app_session"
ROUTES = """\
  - name: echo.new
    match: "ANY /echo/*rest"
    stage: new
  - name: api.new
    match: "ANY /api/*rest"
    stage: new
    csrf: false
  - name: cookie.new
    match: "ANY /keeps-cookie/*rest"
    stage: new
    pass_session_cookie: true
  - name: shadowed
    match: "GET /shadow/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
"""


def _extra(tmp_path: Path) -> str:
    return (
        "rails:\n"
        f"  cookie: {COOKIE}\n"
        "  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE\n"
        "identity:\n"
        f"  keys_path: {tmp_path / 'keys.json'}\n"
        "  issuer: strangler-test\n"
    )


def _session(user_id: int = 42) -> tuple[str, bytes]:
    """A Rails cookie for a signed-in user, and the session's raw CSRF token."""
    csrf = new_session_token()
    encoder = RailsSessionEncoder(COOKIE, SessionSecret(SECRET.encode(), KeyDigest.SHA1))
    cookie = encoder.encode(
        {"session_id": f"sess-{user_id}", "user_id": user_id, "_csrf_token": csrf}
    )
    raw = base64.urlsafe_b64decode(csrf + "=" * (-len(csrf) % 4))
    return cookie, raw


def _headers(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def _verify(token: str, tmp_path: Path) -> dict[str, Any]:
    return verified_claims(tmp_path / "keys.json", token, issuer="strangler-test", audience="new")


@pytest.fixture
def gateway(
    start_gateway: GatewayFactory,
    upstreams: tuple[EchoUpstream, EchoUpstream],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> GatewayProcess:
    monkeypatch.setenv("STRANGLER_TEST_SECRET_KEY_BASE", SECRET)
    legacy, new = upstreams
    return start_gateway(legacy=legacy.url, new=new.url, routes=ROUTES, extra=_extra(tmp_path))


def test_a_signed_in_user_reaches_the_new_backend_with_a_verifiable_identity(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    cookie, _ = _session(42)
    response = httpx.get(
        f"{gateway.url}/echo/me", headers={"Cookie": f"theme=dark; {COOKIE}={cookie}; lang=en"}
    )
    assert response.json()["name"] == "new"
    seen = _headers(response)
    # The Rails cookie stays home; the others pass.
    assert seen["cookie"] == "theme=dark; lang=en"
    scheme, _, token = seen["authorization"].partition(" ")
    assert scheme == "Bearer"
    claims = _verify(token, tmp_path)
    assert claims["sub"] == "42"
    assert claims["route"] == "echo.new"
    assert claims["exp"] - claims["iat"] == 60
    assert len(claims["sid"]) == 64 and "sess-42" not in token


def test_the_client_keeps_its_own_authorization_and_cannot_forge_identity(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    cookie, _ = _session(7)
    response = httpx.get(
        f"{gateway.url}/echo/x",
        headers={
            "Cookie": f"{COOKIE}={cookie}",
            "Authorization": "Bearer client-own",
            "X-Strangler-Identity": "forged",
        },
    )
    seen = _headers(response)
    assert seen["authorization"] == "Bearer client-own"
    assert _verify(seen["x-strangler-identity"], tmp_path)["sub"] == "7"
    # Anonymous, with a forged identity header: it never arrives, to either backend.
    for path in ("/echo/anon", "/elsewhere"):
        seen = _headers(httpx.get(gateway.url + path, headers={"X-Strangler-Identity": "forged"}))
        assert "x-strangler-identity" not in seen
        assert "authorization" not in seen


@pytest.mark.parametrize(
    "cookie_value",
    ["garbage", _session(3)[0][:-6] + "AAAAAA", RailsSessionEncoder(
        COOKIE, SessionSecret(b"another-secret" * 8, KeyDigest.SHA1)).encode({"user_id": 3})],
    ids=["garbage", "tampered", "wrong-secret"],
)  # fmt: skip
def test_an_unusable_session_is_anonymous_not_an_error(
    gateway: GatewayProcess, cookie_value: str
) -> None:
    response = httpx.get(f"{gateway.url}/echo/x", headers={"Cookie": f"{COOKIE}={cookie_value}"})
    assert response.status_code == 200
    seen = _headers(response)
    assert "authorization" not in seen
    assert "cookie" not in seen


def test_session_outcomes_are_counted_by_reason(gateway: GatewayProcess) -> None:
    cookie, _ = _session(5)
    for value in (cookie, cookie, "garbage"):
        httpx.get(f"{gateway.url}/echo/x", headers={"Cookie": f"{COOKIE}={value}"})
    httpx.get(f"{gateway.url}/echo/x")
    assert gateway.stop() == 0
    (line,) = [x for x in gateway.stderr_lines if "identity sessions by outcome" in x]
    assert "'authenticated': 2" in line
    assert "'missing': 1" in line
    assert "'malformed': 1" in line or "'tampered': 1" in line


def test_legacy_gets_the_request_as_sent(gateway: GatewayProcess) -> None:
    cookie, _ = _session(42)
    seen = _headers(httpx.get(f"{gateway.url}/elsewhere", headers={"Cookie": f"{COOKIE}={cookie}"}))
    assert seen["cookie"] == f"{COOKIE}={cookie}"
    assert "authorization" not in seen


def test_a_route_can_pass_the_session_cookie(gateway: GatewayProcess) -> None:
    cookie, _ = _session(42)
    seen = _headers(
        httpx.get(f"{gateway.url}/keeps-cookie/x", headers={"Cookie": f"{COOKIE}={cookie}"})
    )
    assert seen["cookie"] == f"{COOKIE}={cookie}"
    assert seen["authorization"].startswith("Bearer ")


def _post(gateway: GatewayProcess, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.post(gateway.url + path, **kwargs)


def test_state_changes_need_a_valid_authenticity_token(
    gateway: GatewayProcess, upstreams: tuple[EchoUpstream, EchoUpstream]
) -> None:
    _, new = upstreams
    cookie, raw = _session(42)
    other_cookie, other_raw = _session(43)
    session = {"Cookie": f"{COOKIE}={cookie}"}
    good = _post(gateway, "/echo/save", headers={**session, "X-CSRF-Token": mint_masked_token(raw)})
    assert good.status_code == 200
    assert good.json()["method"] == "POST"
    per_form = mint_masked_token(raw, form_action="/echo/save", form_method="post", urlsafe=False)
    assert (
        _post(gateway, "/echo/save", headers={**session, "X-CSRF-Token": per_form}).status_code
        == 200
    )
    before = len(new.requests)
    refused = {
        "missing": session,
        "another session's": {**session, "X-CSRF-Token": mint_masked_token(other_raw)},
        "unmasked raw": {**session, "X-CSRF-Token": base64.b64encode(raw).decode()},
        "garbage": {**session, "X-CSRF-Token": "not a token"},
        "per-form for another path": {**session, "X-CSRF-Token": mint_masked_token(
            raw, form_action="/echo/other", form_method="post")},
    }  # fmt: skip
    for what, headers in refused.items():
        response = _post(gateway, "/echo/save", headers=headers, content=b"x=1")
        assert response.status_code == 403, what
        assert response.headers["content-type"] == "application/problem+json", what
    # Refused requests never reached the new backend.
    assert len(new.requests) == before
    assert other_cookie  # the other session exists; only its token was borrowed


def test_the_token_in_a_form_body_is_checked_and_the_body_forwarded_intact(
    gateway: GatewayProcess,
) -> None:
    cookie, raw = _session(42)
    session = {"Cookie": f"{COOKIE}={cookie}"}
    form = {"authenticity_token": mint_masked_token(raw), "project[name]": "Röntgen & co"}
    ok = _post(gateway, "/echo/projects", headers=session, data=form)
    assert ok.status_code == 200
    sent = httpx.Request("POST", "http://x/", data=form).read()
    assert ok.json()["body_bytes"] == len(sent)
    token = {"authenticity_token": mint_masked_token(raw)}
    files = {"file": ("a.txt", b"hello")}
    multipart = _post(gateway, "/echo/upload", headers=session, data=token, files=files)
    assert multipart.status_code == 200
    bad = _post(gateway, "/echo/projects", headers=session, data={"authenticity_token": "x" * 88})
    assert bad.status_code == 403


def test_origin_must_be_the_apps_own(gateway: GatewayProcess) -> None:
    cookie, raw = _session(42)
    headers = {"Cookie": f"{COOKIE}={cookie}", "X-CSRF-Token": mint_masked_token(raw)}
    base = f"http://127.0.0.1:{gateway.port}"
    assert _post(gateway, "/echo/s", headers={**headers, "Origin": base}).status_code == 200
    evil = _post(gateway, "/echo/s", headers={**headers, "Origin": "https://evil.example"})
    assert evil.status_code == 403
    assert "bad_origin" in evil.json()["detail"]


def test_requests_without_the_session_and_exempt_routes_need_no_token(
    gateway: GatewayProcess,
) -> None:
    assert _post(gateway, "/echo/webhook", content=b"{}").status_code == 200
    # A cookie whose name only ends like the Rails cookie's is not the session.
    lookalike = {"Cookie": f"my{COOKIE}=x"}
    assert _post(gateway, "/echo/webhook", headers=lookalike, content=b"{}").status_code == 200
    cookie, _ = _session(42)
    # An exempt route's callers are not the user's browser: the cookie gives them no identity,
    # and stays home.
    api = _post(gateway, "/api/things", headers={"Cookie": f"{COOKIE}={cookie}"}, content=b"{}")
    assert api.status_code == 200
    assert "authorization" not in _headers(api)
    assert "cookie" not in _headers(api)


def test_a_shadow_copy_to_the_new_backend_carries_the_identity(
    gateway: GatewayProcess, upstreams: tuple[EchoUpstream, EchoUpstream], tmp_path: Path
) -> None:
    legacy, new = upstreams
    cookie, _ = _session(42)
    response = httpx.get(f"{gateway.url}/shadow/x", headers={"Cookie": f"a=1; {COOKIE}={cookie}"})
    assert response.json()["name"] == "legacy"
    assert "authorization" not in _headers(response)
    wait_until(lambda: len(new.requests) == 1, "the shadow copy")
    copy = {k.lower(): v for k, v in new.requests[0]["headers"].items()}
    assert copy["x-strangler-shadow"] == "1"
    assert copy["cookie"] == "a=1"
    assert _verify(copy["authorization"].removeprefix("Bearer "), tmp_path)["route"] == "shadowed"
    assert legacy.requests[-1]["headers"]["cookie"] == f"a=1; {COOKIE}={cookie}"


def test_a_missing_secret_is_a_config_error_naming_the_field(
    tmp_path: Path, upstreams: tuple[EchoUpstream, EchoUpstream], monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from tests.integration.gateway_process import write_config

    monkeypatch.delenv("STRANGLER_TEST_SECRET_KEY_BASE", raising=False)
    legacy, _ = upstreams
    path = write_config(
        tmp_path / "s.yaml", legacy=legacy.url, routes=ROUTES, extra=_extra(tmp_path)
    )
    result = subprocess.run(
        [sys.executable, "-m", "strangler", "check-config", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    line = (
        path.read_text().splitlines().index("  secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE")
        + 1
    )
    assert f"s.yaml:{line}: rails.secret_key_base_env: environment variable" in result.stderr
    assert SECRET not in result.stderr
