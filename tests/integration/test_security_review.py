"""The security review's findings, replayed as attacks on a real gateway process.

Each test is an attack that worked before the fixes (commit 57848ef) and is refused now:
identity for csrf-exempt routes, route confusion through non-canonical paths, POST forms routed
by `_method`, cross-site WebSocket hijacking and h2c smuggling, the bridge keyed on a backend's
name rather than the side it serves, slow bodies holding the upstream pool, headers a backend
believes about the client, absolute-form targets, token audiences, and session outcome counters
lost on a new snapshot. A few rows beside them show that what must pass still does (canonical
paths, a WebSocket from the app's own page, a form no override can reroute).

Most tests share three module gateways with the Rails bridge on (`strict` path policy, the
same routes under `path_policy: normalize`, and one with Action Cable's allowed origins and an
identity audience configured) in front of three echo backends: legacy, new and new2. Tests of
limits, reloads and shutdown counters start their own gateway.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import signal
import socket
import struct
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest

from strangler.identity import KeyDigest, RailsSessionEncoder, SessionSecret, mint_masked_token
from tests.integration.abuse import (
    Reply,
    problem,
    read_head_bytes,
    read_until_closed,
    send_raw,
    trickle,
)
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, run_cli, write_config
from tests.integration.identity_tokens import verified_claims
from tests.integration.probes import wait_for_log_count, wait_until
from tests.integration.rawhttp import RawResponse, connect, read_responses
from tests.integration.test_rails_bridge import COOKIE, SECRET, _session
from tests.integration.upstreams import EchoUpstream

SECRET_ENV = "STRANGLER_TEST_SECRET_KEY_BASE"
ENV = {SECRET_ENV: SECRET}
EVIL = "https://evil.example"
APP_ORIGIN = "https://app.example"
FORM = "application/x-www-form-urlencoded"
AUDIENCE = "https://new.internal.example"
ROUTES = """\
  - name: projects.star
    match: "POST /api/projects/:id/star"
    stage: new
  - name: api.exempt
    match: "ANY /api/*rest"
    stage: new
    csrf: false
  - name: projects.show
    match: "GET /projects/:id"
    stage: legacy
  - name: projects.update
    match: "PATCH|PUT /projects/:id"
    stage: new
  - name: reports.show
    match: "GET /reports/:id"
    stage: new
  - name: reports.update
    match: "POST|PATCH /reports/:id"
    stage: new
  - name: echo.new
    match: "ANY /echo/*rest"
    stage: new
  - name: ws
    match: "GET /ws"
    stage: new
  - name: canary.new2
    match: "ANY /canary/*rest"
    stage: canary
    canary: {backend: new2, weight: 100}
  - name: own.new2
    match: "ANY /own/*rest"
    stage: new
    backend: new2
  - name: shadow.new2
    match: "GET /mirror/*rest"
    stage: shadow
    shadow: {backend: new2, noise_sample_rate: 0}
"""
H2C = {
    "Connection": "Upgrade, HTTP2-Settings",
    "Upgrade": "h2c",
    "HTTP2-Settings": "AAMAAABkAAQAAP__",
}
WEBSOCKET = {
    "Connection": "Upgrade",
    "Upgrade": "websocket",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}
# Headers a backend (Rack, Rails, IIS-style rewriters) believes about the client or the URL.
PEER_ONLY = {
    "X-Real-IP": "1.2.3.4",
    "X-Forwarded-Ssl": "on",
    "X-Forwarded-Scheme": "https",
    "X-Forwarded-Port": "443",
    "Client-IP": "1.2.3.5",
    "True-Client-IP": "1.2.3.6",
    "X-Original-URL": "/admin",
    "X-Rewrite-URL": "/admin",
}


# ------------------------------------------------------------------------------------- fixtures


def _bridge_config(
    folder: Path,
    upstreams: Mapping[str, EchoUpstream],
    *,
    top: str = "",
    rails: str = "",
    identity: str = "",
) -> Path:
    """A config with the Rails bridge on, ROUTES, and one backend per upstream (by its name)."""
    backends = "".join(f'  {name}: {{url: "{up.url}"}}\n' for name, up in upstreams.items())
    path = folder / "strangler.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        f"backends:\n{backends}"
        "default: legacy\n"
        f"{top}"
        f"routes:\n{ROUTES}"
        "rails:\n"
        f"  cookie: {COOKIE}\n"
        f"  secret_key_base_env: {SECRET_ENV}\n"
        f"{rails}"
        "identity:\n"
        f"  keys_path: {folder / 'keys.json'}\n"
        "  issuer: strangler-test\n"
        f"{identity}"
        'admin: {listen: "127.0.0.1:0"}\n'
    )
    return path


@pytest.fixture(scope="module")
def new2_upstream() -> Iterator[EchoUpstream]:
    upstream = EchoUpstream("new2").start()
    yield upstream
    upstream.stop()


@pytest.fixture(scope="module")
def backends(
    legacy_upstream: EchoUpstream, new_upstream: EchoUpstream, new2_upstream: EchoUpstream
) -> dict[str, EchoUpstream]:
    return {"legacy": legacy_upstream, "new": new_upstream, "new2": new2_upstream}


@contextlib.contextmanager
def _running(path: Path) -> Iterator[GatewayProcess]:
    gw = GatewayProcess(path, env=ENV).start()
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def bridge_gateway(
    backends: dict[str, EchoUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """The default path policy (strict), no allowed origins, no configured audience."""
    with _running(_bridge_config(tmp_path_factory.mktemp("bridge"), backends)) as gw:
        yield gw


@pytest.fixture(scope="module")
def normalize_gateway(
    backends: dict[str, EchoUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("normalize")
    with _running(_bridge_config(folder, backends, top="path_policy: normalize\n")) as gw:
        yield gw


@pytest.fixture(scope="module")
def origins_gateway(
    backends: dict[str, EchoUpstream], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    path = _bridge_config(
        tmp_path_factory.mktemp("origins"),
        backends,
        rails=f'  allowed_request_origins: ["{APP_ORIGIN}"]\n',
        identity=f'  audience: "{AUDIENCE}"\n',
    )
    with _running(path) as gw:
        yield gw


@pytest.fixture(scope="module")
def trusted_gateway(
    legacy_upstream: EchoUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    """127.0.0.1 is a trusted proxy: the headers it vouches for pass."""
    path = write_config(
        tmp_path_factory.mktemp("trusted") / "strangler.yaml",
        legacy=legacy_upstream.url,
        extra="forwarding:\n  trusted_proxies: [127.0.0.1/32]\n",
    )
    with _running(path) as gw:
        yield gw


# -------------------------------------------------------------------------------------- helpers


def _session_cookie(user_id: int = 42) -> tuple[str, bytes]:
    """`Cookie` header value with the Rails session among other cookies, and its raw CSRF
    token."""
    cookie, raw = _session(user_id)
    return f"theme=dark; {COOKIE}={cookie}", raw


def _seen(body: Mapping[str, Any]) -> dict[str, str]:
    """The headers an echo backend received, by lower-case name."""
    return {name.lower(): value for name, value in body["headers"]}


def _claims(gw: GatewayProcess, token: str, *, audience: str | None = "new") -> dict[str, Any]:
    """The verified claims of an identity token minted by `gw`: signature, issuer, and `aud`
    unless `audience` is None."""
    keys_path = gw.config_path.parent / "keys.json"
    return verified_claims(keys_path, token, issuer="strangler-test", audience=audience)


def _bearer(seen: Mapping[str, str]) -> str:
    scheme, _, token = seen["authorization"].partition(" ")
    assert scheme == "Bearer", seen
    return token


def _raw(
    gw: GatewayProcess,
    method: str,
    target: str | bytes,
    headers: Mapping[str, str] | None = None,
    body: bytes = b"",
) -> Reply:
    """One request with exactly this target on a new connection (httpx would normalize it)."""
    raw_target = target.encode("latin-1") if isinstance(target, str) else target
    lines = [b"%s %s HTTP/1.1" % (method.encode(), raw_target)]
    fields = {"Host": f"127.0.0.1:{gw.port}", "Connection": "close", **(headers or {})}
    if body or method == "POST":
        fields["Content-Length"] = str(len(body))
    lines += [f"{name}: {value}".encode("latin-1") for name, value in fields.items()]
    return send_raw(gw.port, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def _only(reply: Reply) -> RawResponse:
    assert len(reply.responses) == 1, reply.raw[:500]
    return reply.responses[0]


def _json(response: RawResponse) -> dict[str, Any]:
    body = orjson.loads(response.body)
    assert isinstance(body, dict)
    return body


@contextlib.contextmanager
def _unreached(*upstreams: EchoUpstream) -> Iterator[None]:
    """Assert that no request reached any of `upstreams` during the block."""
    before = [len(up.requests) + len(up.upgrades) for up in upstreams]
    yield
    after = [len(up.requests) + len(up.upgrades) for up in upstreams]
    assert after == before, [up.requests[-1:] for up in upstreams]


def _handshake(gw: GatewayProcess, path: str, headers: Mapping[str, str]) -> tuple[int, str]:
    """Send an Upgrade request; (the answer's status, its head) once the head has arrived."""
    fields = {"Host": f"127.0.0.1:{gw.port}", **headers}
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    with connect(gw.port, timeout_s=10) as sock:
        sock.sendall(head.encode() + b"\r\n")
        received = read_head_bytes(sock)
    status_line = received.split(b"\r\n", 1)[0].decode()
    return int(status_line.split(" ")[1]), received.decode("latin-1")


# ------------------------------------------------------------- 1. csrf-exempt routes, no identity


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_a_cross_site_request_to_a_csrf_exempt_route_gets_no_identity_and_no_cookie(
    bridge_gateway: GatewayProcess, new_upstream: EchoUpstream, method: str
) -> None:
    cookie, _ = _session_cookie()
    headers = {"Cookie": cookie, "Origin": EVIL}
    if method == "POST":
        headers["Content-Type"] = FORM
    response = httpx.request(
        method,
        f"{bridge_gateway.url}/api/hooks/transfer",
        headers=headers,
        content=b"amount=1000&to=mallory" if method == "POST" else None,
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "new"
    seen = _seen(response.json())
    assert "authorization" not in seen
    assert "x-strangler-identity" not in seen
    assert seen["cookie"] == "theme=dark"
    assert COOKIE not in new_upstream.requests[-1]["headers"].get("cookie", "")


def test_csrf_false_with_pass_session_cookie_is_refused_by_check_config(
    tmp_path: Path, legacy_upstream: EchoUpstream
) -> None:
    routes = (
        '  - name: api\n    match: "ANY /api/*rest"\n    stage: new\n'
        "    csrf: false\n    pass_session_cookie: true\n"
    )
    path = write_config(tmp_path / "s.yaml", legacy=legacy_upstream.url, routes=routes)
    result = run_cli("check-config", str(path))
    assert result.returncode == 2, result
    line = path.read_text().splitlines().index("    pass_session_cookie: true") + 1
    assert f"s.yaml:{line}: routes[0].pass_session_cookie: cannot be true" in result.stderr


# ------------------------------------------------------------------------ 2. route confusion

# Each names projects.star (POST, CSRF-checked) to Rails or Starlette behind the gateway, while
# the gateway, matching it as sent, would take it for the exempt catch-all /api/*rest.
CONFUSING = {
    "double-slash": "/api/projects/1//star",
    "double-slash-before-id": "/api/projects//1/star",
    "trailing-double-slash": "/api/projects/1/star//",
    "encoded-slash": "/api/projects/1%2Fstar",
    "encoded-unreserved": "/api/projects/1/%73tar",
    "dot-segment": "/api/projects/1/./star",
    "dot-dot-segment": "/api/projects/x/../1/star",
    "path-parameter": "/api/projects/1;x/star",
    "fragment": "/api/projects/1/star#x",
}
REWRITTEN = ["double-slash", "double-slash-before-id", "encoded-unreserved", "dot-segment",
             "dot-dot-segment"]  # fmt: skip
REFUSED_ALWAYS = ["encoded-slash", "path-parameter", "fragment"]


@pytest.mark.parametrize("case", list(CONFUSING))
def test_strict_policy_refuses_a_path_a_backend_could_read_as_another(
    bridge_gateway: GatewayProcess, backends: dict[str, EchoUpstream], case: str
) -> None:
    cookie, _ = _session_cookie()
    with _unreached(*backends.values()):
        reply = _raw(bridge_gateway, "POST", CONFUSING[case], {"Cookie": cookie})
    response = _only(reply)
    assert response.status == 400, reply.raw[:500]
    assert problem(response)["status"] == 400


@pytest.mark.parametrize("case", REWRITTEN)
def test_normalize_policy_routes_and_forwards_the_canonical_path(
    normalize_gateway: GatewayProcess, new_upstream: EchoUpstream, case: str
) -> None:
    cookie, raw = _session_cookie()
    # Routed as projects.star, so its CSRF check applies: no token, refused.
    with _unreached(new_upstream):
        refused = _only(_raw(normalize_gateway, "POST", CONFUSING[case], {"Cookie": cookie}))
    assert refused.status == 403
    assert "forgery" in str(problem(refused)["detail"])
    # With a token it passes, as projects.star, and the backend sees only the canonical path.
    token = mint_masked_token(raw)
    headers = {"Cookie": cookie, "X-CSRF-Token": token}
    ok = _only(_raw(normalize_gateway, "POST", CONFUSING[case], headers))
    assert ok.status == 200, ok.body
    body = _json(ok)
    assert (body["name"], body["path"]) == ("new", "/api/projects/1/star")
    assert new_upstream.requests[-1]["path"] == "/api/projects/1/star"
    assert _claims(normalize_gateway, _bearer(_seen(body)))["route"] == "projects.star"


@pytest.mark.parametrize("case", REFUSED_ALWAYS)
def test_normalize_policy_still_refuses_what_no_rewrite_makes_safe(
    normalize_gateway: GatewayProcess, backends: dict[str, EchoUpstream], case: str
) -> None:
    with _unreached(*backends.values()):
        response = _only(_raw(normalize_gateway, "POST", CONFUSING[case]))
    assert response.status == 400
    assert problem(response)["status"] == 400


@pytest.mark.parametrize(
    ("target", "backend", "path"),
    [
        ("/api/projects/1/star", "new", "/api/projects/1/star"),
        ("/a%20b", "legacy", "/a b"),
        ("/.well-known/x", "legacy", "/.well-known/x"),
        ("/api/projects/1/star/", "new", "/api/projects/1/star/"),
    ],
)
def test_canonical_paths_still_pass_under_strict(
    bridge_gateway: GatewayProcess, target: str, backend: str, path: str
) -> None:
    cookie, raw = _session_cookie()
    headers = {"Cookie": cookie, "X-CSRF-Token": mint_masked_token(raw)}
    response = _only(_raw(bridge_gateway, "POST", target, headers))
    assert response.status == 200, response.body
    body = _json(response)
    assert (body["name"], body["path"]) == (backend, path)
    if backend == "new":
        # What passed before the fixes passes still (the audience has its own test).
        claims = _claims(bridge_gateway, _bearer(_seen(body)), audience=None)
        assert claims["route"] == "projects.star"


# ---------------------------------------------------------------------- 3. _method override


def _multipart(fields: Mapping[str, str]) -> tuple[bytes, str]:
    """A multipart/form-data body with `fields` and a file, and its Content-Type."""
    request = httpx.Request(
        "POST", "http://x/", data=dict(fields), files={"file": ("a.txt", b"hello")}
    )
    return request.read(), request.headers["content-type"]


def _form(kind: str, fields: Mapping[str, str]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a form POST encoded as `kind`."""
    if kind == "multipart":
        body, content_type = _multipart(fields)
        return body, {"Content-Type": content_type}
    body = "&".join(f"{key}={value}" for key, value in fields.items()).encode()
    if kind == "urlencoded":
        return body, {"Content-Type": FORM}
    return body, {}  # no Content-Type: Rack reads a POST body as a form


FORM_KINDS = ["urlencoded", "multipart", "no-content-type"]


@pytest.mark.parametrize("kind", FORM_KINDS)
@pytest.mark.parametrize("origin", [EVIL, None], ids=["cross-site", "no-origin"])
def test_a_post_form_with_method_patch_is_routed_and_csrf_checked_as_patch(
    bridge_gateway: GatewayProcess, new_upstream: EchoUpstream, kind: str, origin: str | None
) -> None:
    cookie, _ = _session_cookie()
    body, headers = _form(kind, {"_method": "patch", "name": "x"})
    headers["Cookie"] = cookie
    if origin is not None:
        headers["Origin"] = origin
    with _unreached(new_upstream):
        response = httpx.post(f"{bridge_gateway.url}/projects/1", headers=headers, content=body)
    assert response.status_code == 403, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("kind", FORM_KINDS)
def test_a_post_form_with_method_patch_and_a_valid_token_reaches_new_intact(
    bridge_gateway: GatewayProcess, new_upstream: EchoUpstream, kind: str
) -> None:
    cookie, raw = _session_cookie()
    fields = {"authenticity_token": mint_masked_token(raw), "_method": "patch", "name": "x"}
    body, headers = _form(kind, fields)
    response = httpx.post(
        f"{bridge_gateway.url}/projects/1", headers={**headers, "Cookie": cookie}, content=body
    )
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert (echoed["name"], echoed["method"], echoed["path"]) == ("new", "POST", "/projects/1")
    assert echoed["body_bytes"] == len(body)
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert _claims(bridge_gateway, _bearer(_seen(echoed)))["route"] == "projects.update"


def test_the_method_override_header_on_a_json_post_is_routed_as_patch(
    bridge_gateway: GatewayProcess, new_upstream: EchoUpstream
) -> None:
    url = f"{bridge_gateway.url}/projects/1"
    headers = {"Content-Type": "application/json", "X-HTTP-Method-Override": "PATCH"}
    anonymous = httpx.post(url, headers=headers, content=b'{"name": "x"}')
    assert anonymous.status_code == 200
    assert (anonymous.json()["name"], anonymous.json()["method"]) == ("new", "POST")
    assert _seen(anonymous.json())["x-http-method-override"] == "PATCH"
    cookie, raw = _session_cookie()
    with _unreached(new_upstream):
        refused = httpx.post(url, headers={**headers, "Cookie": cookie}, content=b"{}")
    assert refused.status_code == 403
    token = {"Cookie": cookie, "X-CSRF-Token": mint_masked_token(raw)}
    assert httpx.post(url, headers={**headers, **token}, content=b"{}").status_code == 200


def test_a_form_over_a_mebibyte_whose_method_decides_the_route_is_413(
    bridge_gateway: GatewayProcess, backends: dict[str, EchoUpstream]
) -> None:
    body = b"_method=patch&name=" + b"x" * (1 << 20)
    with _unreached(*backends.values()):
        response = _only(_raw(bridge_gateway, "POST", "/projects/1", {"Content-Type": FORM}, body))
    assert response.status == 413
    assert problem(response)["status"] == 413


def test_a_method_patch_upload_over_the_header_limit_reaches_new(
    bridge_gateway: GatewayProcess,
) -> None:
    # Rails' `form_with model: @project, multipart: true` for an update: POST, _method=patch and
    # a file, under the 1 MiB a form read for its _method may have. 600 KB can't arrive in one
    # read (the event loop reads at most 256 KiB), so some reads don't end the message.
    cookie, raw = _session_cookie()
    response = httpx.post(
        f"{bridge_gateway.url}/projects/1",
        headers={"Cookie": cookie},
        data={"authenticity_token": mint_masked_token(raw), "_method": "patch"},
        files={"file": ("logo.png", b"p" * 600_000)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "new"


def test_a_form_no_override_can_reroute_streams_to_legacy_as_sent(
    bridge_gateway: GatewayProcess,
) -> None:
    cookie, _ = _session_cookie()
    body = b"_method=patch&name=" + b"y" * 200_000
    headers = {"Content-Type": FORM, "Cookie": cookie}
    response = httpx.post(f"{bridge_gateway.url}/elsewhere/form", headers=headers, content=body)
    assert response.status_code == 200
    echoed = response.json()
    assert (echoed["name"], echoed["method"]) == ("legacy", "POST")
    assert echoed["body_sha256"] == hashlib.sha256(body).hexdigest()
    assert _seen(echoed)["cookie"] == cookie


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/reports/1", b"_method=get&title=pwned", {"Content-Type": FORM}),
        ("/reports/1", b"_method=head&title=pwned", {"Content-Type": FORM}),
        ("/echo/x", b"{}", {"Content-Type": "application/json", "X-HTTP-Method-Override": "GET"}),
    ],
    ids=["form-get", "form-head", "header-get"],
)
def test_a_post_overridden_to_a_safe_method_is_still_csrf_checked(
    bridge_gateway: GatewayProcess,
    new_upstream: EchoUpstream,
    path: str,
    body: bytes,
    headers: dict[str, str],
) -> None:
    # /reports/:id is GET -> reports.show and POST|PATCH -> reports.update, both on new. A
    # cross-site form with the user's cookie and no token must not reach new as the user,
    # whatever `_method` says: new gets the POST (the gateway forwards it as sent). Before the
    # fixes these were refused (routed, and checked, as the POST they are).
    cookie, _ = _session_cookie()
    with _unreached(new_upstream):
        response = httpx.post(
            bridge_gateway.url + path,
            headers={**headers, "Cookie": cookie, "Origin": EVIL},
            content=body,
        )
    assert response.status_code == 403, response.text


# ----------------------------------------------------------------------------- 4. upgrades


@pytest.mark.parametrize(
    ("has_session", "origin", "status"),
    [
        (True, EVIL, 403),
        (True, None, 403),
        (True, "null", 403),
        (True, "self", 101),
        (False, EVIL, 101),
        (False, None, 101),
    ],
)
def test_a_websocket_carrying_the_session_needs_the_apps_own_origin(
    bridge_gateway: GatewayProcess,
    new_upstream: EchoUpstream,
    has_session: bool,
    origin: str | None,
    status: int,
) -> None:
    headers = dict(WEBSOCKET)
    if has_session:
        headers["Cookie"] = _session_cookie()[0]
    if origin is not None:
        headers["Origin"] = (
            f"http://127.0.0.1:{bridge_gateway.port}" if origin == "self" else origin
        )
    before = len(new_upstream.upgrades)
    got, head = _handshake(bridge_gateway, "/ws", headers)
    assert got == status, head
    if status == 403:
        assert "application/problem+json" in head
        assert len(new_upstream.upgrades) == before
        return
    wait_until(lambda: len(new_upstream.upgrades) == before + 1, "the handshake at new")
    seen = new_upstream.upgrades[-1]["headers"]
    assert COOKIE not in seen.get("cookie", "")
    assert ("authorization" in seen) == has_session


@pytest.mark.parametrize(("origin", "status"), [(APP_ORIGIN, 101), (EVIL, 403)])
def test_allowed_request_origins_may_open_a_websocket_with_the_session(
    origins_gateway: GatewayProcess, new_upstream: EchoUpstream, origin: str, status: int
) -> None:
    headers = {**WEBSOCKET, "Cookie": _session_cookie()[0], "Origin": origin}
    got, head = _handshake(origins_gateway, "/ws", headers)
    assert got == status, head


@pytest.mark.parametrize("path", ["/ws", "/echo/x", "/elsewhere/x"], ids=["ws", "new", "legacy"])
def test_an_h2c_upgrade_is_refused_on_any_route(
    bridge_gateway: GatewayProcess, backends: dict[str, EchoUpstream], path: str
) -> None:
    with _unreached(*backends.values()):
        response = _only(_raw(bridge_gateway, "GET", path, H2C))
    assert response.status == 400
    assert "h2c" in str(problem(response)["detail"])


# --------------------------------------------------------------------- 5. bridge by side


@pytest.mark.parametrize("path", ["/canary/x", "/own/x"], ids=["canary-backend", "route-backend"])
def test_the_new_side_is_bridged_whatever_its_backend_is_called(
    bridge_gateway: GatewayProcess, new2_upstream: EchoUpstream, path: str
) -> None:
    cookie, _ = _session_cookie(7)
    response = httpx.get(bridge_gateway.url + path, headers={"Cookie": cookie})
    assert response.json()["name"] == "new2"
    seen = _seen(response.json())
    assert seen["cookie"] == "theme=dark"
    assert _claims(bridge_gateway, _bearer(seen), audience="new2")["sub"] == "7"
    # A state change without a token is refused before it reaches new2.
    with _unreached(new2_upstream):
        refused = httpx.post(bridge_gateway.url + path, headers={"Cookie": cookie}, content=b"x")
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"


def test_a_shadow_copy_to_another_new_backend_carries_identity_not_the_cookie(
    bridge_gateway: GatewayProcess, new2_upstream: EchoUpstream
) -> None:
    cookie, _ = _session_cookie(8)
    response = httpx.get(f"{bridge_gateway.url}/mirror/copy-1", headers={"Cookie": cookie})
    assert response.json()["name"] == "legacy"
    assert _seen(response.json())["cookie"] == cookie

    def copy() -> dict[str, str] | None:
        found = [r for r in new2_upstream.requests if r["path"] == "/mirror/copy-1"]
        return found[0]["headers"] if found else None

    wait_until(lambda: copy() is not None, "the shadow copy at new2")
    seen = copy()
    assert seen is not None
    assert seen["cookie"] == "theme=dark"
    assert _claims(bridge_gateway, _bearer(seen), audience="new2")["route"] == "shadow.new2"


def test_a_token_for_another_new_backend_names_that_backend_as_audience(
    bridge_gateway: GatewayProcess,
) -> None:
    cookie, _ = _session_cookie(7)
    response = httpx.get(f"{bridge_gateway.url}/own/aud", headers={"Cookie": cookie})
    token = _bearer(_seen(response.json()))
    assert jwt.decode(token, options={"verify_signature": False})["aud"] == "new2"


# ------------------------------------------------------------------------- 6. slow bodies

UPLOAD_HEAD = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n"


@contextlib.contextmanager
def _trickling_uploads(
    port: int, count: int, *, interval_s: float
) -> Iterator[list[socket.socket]]:
    """`count` connections that each sent a POST head promising 100 bytes and its first body
    byte; a thread sends each one more byte every `interval_s` until the block ends."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def keep_trickling() -> None:
        while not stop.wait(interval_s):
            for sock in socks:
                with contextlib.suppress(OSError):
                    sock.sendall(b"x")

    thread = threading.Thread(target=keep_trickling, daemon=True)
    try:
        for _ in range(count):
            sock = connect(port, timeout_s=10)
            socks.append(sock)
            sock.sendall(UPLOAD_HEAD + b"x")
        thread.start()
        yield socks
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        for sock in socks:
            # Reset, not closed: the gateway forgets an abandoned upload at once, where after a
            # FIN it would wait out body_timeout_s for the rest of the body (and hold shutdown).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()


def test_slow_uploads_do_not_hold_the_backends_pool(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    # limits.max_connections_per_client keeps its default (512): above the 300 uploads and the
    # requests beside them.
    gw = start_gateway(legacy=legacy_upstream.url, backend_options=", pool_size: 4")
    with _trickling_uploads(gw.port, 300, interval_s=1.0) as uploads:
        # Every upload is under way: the gateway has answered none of them.
        assert not any(_has_answer(sock) for sock in uploads[:10])
        with httpx.Client(timeout=10) as client:
            for index in range(10):
                assert client.get(f"{gw.url}/meanwhile/{index}").status_code == 200
                posted = client.post(f"{gw.url}/small/{index}", content=b"a=1")
                assert posted.status_code == 200
        assert not any(_has_answer(sock) for sock in uploads)


def _has_answer(sock: socket.socket) -> bool:
    """Whether the gateway answered or closed `sock` yet (without waiting)."""
    sock.setblocking(False)
    try:
        sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)
    return True


def test_a_body_trickled_past_its_deadline_gets_408(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    # Each byte comes well within body_timeout_s; only body_deadline_s can end this.
    gw = start_gateway(
        legacy=legacy_upstream.url,
        extra="limits:\n  body_deadline_s: 2\n  body_timeout_s: 30\n  idle_timeout_s: 30\n",
    )
    with connect(gw.port, timeout_s=10) as sock:
        sock.sendall(b"POST /trickled HTTP/1.1\r\nHost: a\r\nContent-Length: 60\r\n\r\n")
        sent, reply = trickle(sock, b"x" * 60, interval_s=0.5)
        if not reply.responses:
            reply = read_until_closed(sock)
    assert sent < 60, "the whole body was accepted"
    assert reply.statuses == [408], reply.raw
    assert problem(reply.responses[0])["status"] == 408
    assert "/trickled" not in legacy_upstream.hits


def test_one_client_address_may_hold_only_max_connections_per_client(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(
        legacy=legacy_upstream.url, extra="limits:\n  max_connections_per_client: 5\n"
    )
    request = b"GET /per-client HTTP/1.1\r\nHost: a\r\n\r\n"
    held = [connect(gw.port, timeout_s=10) for _ in range(5)]
    try:
        for sock in held:
            sock.sendall(request)
            responses, closed = read_responses(sock, expect=1)
            assert ([r.status for r in responses], closed) == ([200], False)
        sixth = send_raw(gw.port, request)
        assert sixth.closed
        assert sixth.statuses == [503], sixth.raw
        assert problem(sixth.responses[0])["reason"] == "max_connections_per_client"
        leaving = held.pop()
        leaving.shutdown(socket.SHUT_WR)
        assert read_until_closed(leaving).closed
        leaving.close()
        close = request[:-2] + b"Connection: close\r\n\r\n"
        wait_until(lambda: send_raw(gw.port, close).statuses == [200], "a connection accepted")
    finally:
        for sock in held:
            sock.close()


# ----------------------------------------------------------------- 7. header normalization


def _forbidden_seen(seen: Mapping[str, str]) -> set[str]:
    """Which of the smuggled headers arrived (an `_` read as `-`, as Rack does)."""
    names = {name.replace("_", "-") for name in seen}
    wanted = {"x-strangler-identity", *(name.lower() for name in PEER_ONLY)}
    return names & wanted


@pytest.mark.parametrize("path", ["/echo/h", "/elsewhere/h"], ids=["new", "legacy"])
def test_headers_about_the_client_and_underscored_names_never_reach_a_backend(
    bridge_gateway: GatewayProcess, path: str
) -> None:
    headers = {"X_Strangler_Identity": "forged", **PEER_ONLY}
    response = httpx.get(bridge_gateway.url + path, headers=headers)
    assert response.status_code == 200
    assert _forbidden_seen(_seen(response.json())) == set()


def test_a_trusted_proxy_may_send_headers_about_the_client_but_no_underscores(
    trusted_gateway: GatewayProcess,
) -> None:
    headers = {"X_Strangler_Identity": "forged", **PEER_ONLY}
    seen = _seen(httpx.get(f"{trusted_gateway.url}/trusted", headers=headers).json())
    assert _forbidden_seen(seen) == {name.lower() for name in PEER_ONLY}
    assert seen["x-real-ip"] == "1.2.3.4"


# -------------------------------------------------------------------------- 8. absolute-form


def test_absolute_form_without_a_path_is_the_root_with_its_query(
    bridge_gateway: GatewayProcess,
) -> None:
    authority = f"127.0.0.1:{bridge_gateway.port}"
    response = _only(_raw(bridge_gateway, "GET", f"http://{authority}?next=/x"))
    assert response.status == 200
    body = _json(response)
    assert (body["path"], body["query"]) == ("/", "next=/x")


def test_absolute_form_for_another_host_is_refused(
    bridge_gateway: GatewayProcess, backends: dict[str, EchoUpstream]
) -> None:
    with _unreached(*backends.values()):
        response = _only(_raw(bridge_gateway, "GET", "http://evil.example/x"))
    assert response.status == 400
    assert problem(response)["status"] == 400


# ------------------------------------------------------------------------------ 9. audience


def test_the_identity_token_is_for_the_new_backend_by_default(
    bridge_gateway: GatewayProcess,
) -> None:
    cookie, _ = _session_cookie(11)
    seen = _seen(httpx.get(f"{bridge_gateway.url}/echo/aud", headers={"Cookie": cookie}).json())
    token = _bearer(seen)
    assert _claims(bridge_gateway, token, audience="new")["sub"] == "11"
    with pytest.raises(jwt.InvalidAudienceError):
        _claims(bridge_gateway, token, audience="legacy")


def test_the_identity_token_carries_the_configured_audience(
    origins_gateway: GatewayProcess,
) -> None:
    cookie, _ = _session_cookie(12)
    seen = _seen(httpx.get(f"{origins_gateway.url}/echo/aud", headers={"Cookie": cookie}).json())
    assert _claims(origins_gateway, _bearer(seen), audience=AUDIENCE)["sub"] == "12"


# --------------------------------------------------------- 10. counters survive new snapshots


def _moving(stage: str) -> str:
    return (
        f'  - name: echo.new\n    match: "ANY /echo/*rest"\n    stage: new\n'
        f'  - name: moving\n    match: "GET /moving"\n    stage: {stage}\n'
    )


def test_session_outcomes_are_counted_across_a_reload(
    start_gateway: GatewayFactory,
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    tmp_path: Path,
) -> None:
    extra = (
        f"rails:\n  cookie: {COOKIE}\n  secret_key_base_env: {SECRET_ENV}\n"
        f"identity:\n  keys_path: {tmp_path / 'keys.json'}\n  issuer: strangler-test\n"
    )
    urls = {"legacy": legacy_upstream.url, "new": new_upstream.url}
    gw = start_gateway(env=ENV, routes=_moving("legacy"), extra=extra, **urls)
    forged = RailsSessionEncoder(
        COOKIE, SessionSecret(b"another-secret" * 8, KeyDigest.SHA1)
    ).encode({"user_id": 1})
    headers = {"Cookie": f"{COOKIE}={forged}"}
    assert httpx.get(f"{gw.url}/echo/1", headers=headers).status_code == 200

    staging = gw.config_path.with_suffix(".next")
    write_config(staging, routes=_moving("new"), extra=extra, **urls)
    staging.replace(gw.config_path)
    gw.signal(signal.SIGHUP)
    wait_for_log_count(gw, "config reloaded: version 2", 1)
    assert httpx.get(f"{gw.url}/moving").json()["name"] == "new"

    assert httpx.get(f"{gw.url}/echo/2", headers=headers).status_code == 200
    assert gw.stop() == 0
    (line,) = [x for x in gw.stderr_lines if "identity sessions by outcome" in x]
    outcomes = ast.literal_eval(line.split("identity sessions by outcome: ", 1)[1])
    assert outcomes["tampered"] == 2, line
