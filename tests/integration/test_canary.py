"""Stage `canary` through the real gateway: sticky weighted routing between two real upstreams,
rollout groups, segments, the sticky cookie, the override header and the Rails bridge."""

from __future__ import annotations

import ast
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strangler.identity import mint_masked_token
from strangler.routing import bucket
from strangler.routing.canary import sign_override
from tests.integration.conftest import GatewayFactory
from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.test_rails_bridge import COOKIE, SECRET, _extra, _session, _verify
from tests.integration.upstreams import EchoUpstream

OVERRIDE_SECRET = "canary-override-secret-for-tests"
ENV = {"STRANGLER_TEST_OVERRIDE_SECRET": OVERRIDE_SECRET}

ROUTES = """\
  - name: weighted
    match: "ANY /w/*rest"
    stage: canary
    canary:
      weight: 30
      group: shared
      stickiness: ["header:X-User-Id", sticky_cookie]
      segments:
        - {name: staff, header: {X-Role: [staff]}, weight: 100}
  - name: weighted.too
    match: "ANY /w2/*rest"
    stage: canary
    canary: {group: shared}
  - name: zero
    match: "ANY /zero/*rest"
    stage: canary
  - name: full
    match: "ANY /full/*rest"
    stage: canary
    canary: {weight: 100}
  - name: cookie
    match: "GET /c/*rest"
    stage: canary
    canary: {weight: 50, stickiness: [sticky_cookie]}
"""
EXTRA = """\
forwarding:
  trusted_proxies: [127.0.0.1/32]
canary:
  override:
    networks: [10.99.0.0/16]
    secret_env: STRANGLER_TEST_OVERRIDE_SECRET
"""
USERS = [f"user-{n}" for n in range(60)]


def _side(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    name: str = response.json()["name"]
    return name


def _seen(response: httpx.Response) -> dict[str, str]:
    return {name.lower(): value for name, value in response.json()["headers"]}


def _expected(group: str, key: str, weight: float) -> str:
    return "new" if bucket(group, key) < weight * 100 else "legacy"


def _counters(gateway: GatewayProcess) -> Counter[str]:
    """Every worker's counters, summed; read from the line each logs when it stops."""
    assert gateway.stop() == 0
    total: Counter[str] = Counter()
    for line in gateway.stderr_lines:
        if "drained; counters: " in line:
            total.update(ast.literal_eval(line.split("drained; counters: ", 1)[1]))
    return total


@pytest.fixture(scope="module")
def gateway(
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    path = write_config(
        tmp_path_factory.mktemp("canary") / "strangler.yaml",
        legacy=legacy_upstream.url,
        new=new_upstream.url,
        routes=ROUTES,
        extra=EXTRA,
    )
    gw = GatewayProcess(path, env=ENV).start()
    yield gw
    gw.stop()


def test_weight_0_is_all_legacy_and_weight_100_all_new(gateway: GatewayProcess) -> None:
    for user in USERS[:20]:
        headers = {"X-User-Id": user}
        zero = httpx.get(f"{gateway.url}/zero/x", headers=headers)
        full = httpx.get(f"{gateway.url}/full/x", headers=headers)
        assert (_side(zero), _side(full)) == ("legacy", "new")
        # A weight of 0 or 100 needs no key, so no sticky cookie is issued.
        assert "set-cookie" not in zero.headers and "set-cookie" not in full.headers


def test_a_user_keeps_one_side_across_requests_and_routes_of_a_group(
    gateway: GatewayProcess,
) -> None:
    sides = set()
    with httpx.Client(base_url=gateway.url) as client:
        for user in USERS:
            expected = _expected("shared", user, 30)
            sides.add(expected)
            headers = {"X-User-Id": user}
            for path in ("/w/a", "/w/b", "/w2/c", "/w/a"):
                response = client.get(path, headers=headers)
                assert _side(response) == expected, (user, path)
                # The header was the key: no sticky cookie needed.
                assert "set-cookie" not in response.headers
    assert sides == {"new", "legacy"}


def test_a_segment_forces_staff_to_new(gateway: GatewayProcess) -> None:
    on_legacy = [user for user in USERS if _expected("shared", user, 30) == "legacy"]
    assert on_legacy
    for user in on_legacy[:10]:
        headers = {"X-User-Id": user, "X-Role": "staff"}
        assert _side(httpx.get(f"{gateway.url}/w/x", headers=headers)) == "new"
        assert _side(httpx.get(f"{gateway.url}/w/x", headers={"X-User-Id": user})) == "legacy"


def test_the_sticky_cookie_is_set_once_and_keeps_the_client_on_its_side(
    gateway: GatewayProcess,
) -> None:
    sides = Counter[str]()
    for _ in range(30):
        with httpx.Client(base_url=gateway.url) as browser:
            first = browser.get("/c/page")
            (set_cookie,) = first.headers.get_list("set-cookie")
            name_value, *attributes = [part.strip() for part in set_cookie.split(";")]
            name, value = name_value.split("=", 1)
            assert name == "strangler_sticky" and len(value) == 32
            assert attributes == ["Path=/", "Max-Age=31536000", "HttpOnly", "SameSite=Lax"]
            side = _side(first)
            assert side == _expected("cookie", value, 50)
            sides[side] += 1
            # The backend's own answer is untouched: only the gateway sets that cookie.
            assert "strangler_sticky" not in _seen(first).get("cookie", "")
            for _ in range(4):
                later = browser.get("/c/page")
                assert _side(later) == side
                assert "set-cookie" not in later.headers
                assert f"strangler_sticky={value}" in _seen(later)["cookie"]
    assert sides["new"] and sides["legacy"], sides


def _override(
    gateway: GatewayProcess, path: str, headers: dict[str, str]
) -> tuple[str, dict[str, str]]:
    response = httpx.get(gateway.url + path, headers={"X-User-Id": "tester", **headers})
    return _side(response), _seen(response)


def test_the_override_header_needs_a_trusted_network_or_a_valid_signature(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, new_upstream: EchoUpstream
) -> None:
    gw = start_gateway(
        legacy=legacy_upstream.url, new=new_upstream.url, routes=ROUTES, extra=EXTRA, env=ENV
    )
    secret = OVERRIDE_SECRET.encode()
    soon = int(time.time()) + 300
    ignored = {
        "untrusted client": {"X-Strangler-Backend": "new"},
        "untrusted forwarded client": {
            "X-Strangler-Backend": "new",
            "X-Forwarded-For": "10.99.0.1, 203.0.113.7",
        },
        "forged signature": {
            "X-Strangler-Backend": "new",
            "X-Strangler-Signature": f"{soon}:" + "ab" * 32,
        },
        "signed for another path": {
            "X-Strangler-Backend": "new",
            "X-Strangler-Signature": sign_override(secret, "new", "/zero/other", soon),
        },
        "expired": {
            "X-Strangler-Backend": "new",
            "X-Strangler-Signature": sign_override(secret, "new", "/zero/x", soon - 600),
        },
    }
    for case, headers in ignored.items():
        side, seen = _override(gw, "/zero/x", headers)
        assert side == "legacy", case
        # Never forwarded, honoured or not.
        assert "x-strangler-backend" not in seen and "x-strangler-signature" not in seen, case

    honoured = {
        "client in the override network": {
            "X-Strangler-Backend": "new",
            "X-Forwarded-For": "10.99.3.4",
        },
        "valid signature": {
            "X-Strangler-Backend": "new",
            "X-Strangler-Signature": sign_override(secret, "new", "/zero/x", soon),
        },
    }
    for case, headers in honoured.items():
        side, seen = _override(gw, "/zero/x", headers)
        assert side == "new", case
        assert "x-strangler-backend" not in seen and "x-strangler-signature" not in seen, case
    back = sign_override(secret, "legacy", "/full/x", soon)
    headers = {"X-Strangler-Backend": "legacy", "X-Strangler-Signature": back}
    assert _override(gw, "/full/x", headers)[0] == "legacy"
    # On a route that is not a canary the header is meaningless, and still never forwarded.
    _, seen = _override(gw, "/elsewhere", {"X-Strangler-Backend": "new"})
    assert "x-strangler-backend" not in seen

    counters = _counters(gw)
    assert counters["canary_overrides_ignored_total{zero,untrusted_client}"] == 2
    assert counters["canary_overrides_ignored_total{zero,bad_signature}"] == 2
    assert counters["canary_overrides_ignored_total{zero,expired_signature}"] == 1
    assert counters["canary_decisions_total{zero,new,override_network}"] == 1
    assert counters["canary_decisions_total{zero,new,override_signature}"] == 1
    assert counters["canary_decisions_total{zero,legacy,weight}"] == 5
    assert counters["canary_decisions_total{full,legacy,override_signature}"] == 1


def test_workers_and_gateway_processes_agree_on_the_side(
    start_gateway: GatewayFactory, legacy_upstream: EchoUpstream, new_upstream: EchoUpstream
) -> None:
    options = {"legacy": legacy_upstream.url, "new": new_upstream.url, "routes": ROUTES}
    two_workers = start_gateway(workers=2, extra=EXTRA, env=ENV, **options)
    another = start_gateway(extra=EXTRA, env=ENV, **options)
    for user in USERS:
        expected = _expected("shared", user, 30)
        # A new connection each time, so both workers of the first gateway answer.
        for gateway in (two_workers, two_workers, two_workers, another):
            response = httpx.get(f"{gateway.url}/w/x", headers={"X-User-Id": user})
            assert _side(response) == expected, (user, gateway.url)
    assert two_workers.stop() == 0
    per_worker = [
        ast.literal_eval(line.split("drained; counters: ", 1)[1])
        for line in two_workers.stderr_lines
        if "drained; counters: " in line
    ]
    decided = [
        sum(v for k, v in counters.items() if k.startswith("canary_decisions_total{weighted,"))
        for counters in per_worker
    ]
    assert len(decided) == 2 and all(decided), decided
    assert sum(decided) == 3 * len(USERS)


RAILS_ROUTES = """\
  - name: me
    match: "ANY /me/*rest"
    stage: canary
    canary: {weight: 50, stickiness: [identity, sticky_cookie]}
"""


@pytest.fixture
def rails_gateway(
    start_gateway: GatewayFactory,
    legacy_upstream: EchoUpstream,
    new_upstream: EchoUpstream,
    tmp_path: Path,
) -> GatewayProcess:
    return start_gateway(
        legacy=legacy_upstream.url,
        new=new_upstream.url,
        routes=RAILS_ROUTES,
        extra=_extra(tmp_path),
        env={"STRANGLER_TEST_SECRET_KEY_BASE": SECRET},
    )


def test_a_signed_in_user_is_keyed_on_the_user_id_and_bridged_on_new(
    rails_gateway: GatewayProcess, tmp_path: Path
) -> None:
    sides = set()
    for user_id in range(1, 25):
        cookie, raw = _session(user_id)
        expected = _expected("me", str(user_id), 50)
        sides.add(expected)
        for _ in range(3):
            response = httpx.get(
                f"{rails_gateway.url}/me/page", headers={"Cookie": f"{COOKIE}={cookie}; lang=en"}
            )
            assert _side(response) == expected, user_id
            # The user id is the key: no sticky cookie for a signed-in user.
            assert "set-cookie" not in response.headers
            seen = _seen(response)
            if expected == "new":
                # Exactly as for stage new: the identity token, and the Rails cookie stays home.
                assert seen["cookie"] == "lang=en"
                assert _verify(seen["authorization"].split(" ", 1)[1], tmp_path)["sub"] == str(
                    user_id
                )
            else:
                assert seen["cookie"] == f"{COOKIE}={cookie}; lang=en"
                assert "authorization" not in seen
        if expected == "new":
            # Rails' forgery protection holds on the canary's new side too.
            post = f"{rails_gateway.url}/me/save"
            session = {"Cookie": f"{COOKIE}={cookie}"}
            assert httpx.post(post, headers=session).status_code == 403
            token = {**session, "X-CSRF-Token": mint_masked_token(raw)}
            assert _side(httpx.post(post, headers=token)) == "new"
    assert sides == {"new", "legacy"}
    # Anonymous visitors fall back to the sticky cookie.
    anonymous = httpx.get(f"{rails_gateway.url}/me/page")
    assert anonymous.headers["set-cookie"].startswith("strangler_sticky=")
    counters = _counters(rails_gateway)
    assert sum(v for k, v in counters.items() if k.startswith("canary_decisions_total{me,")) > 72
    assert counters["canary_sticky_cookies_issued_total{me}"] == 1


def test_strangler_canary_sign_makes_headers_the_gateway_honours(
    gateway: GatewayProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json
    import subprocess
    import sys

    def sign(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "strangler", "canary", "sign", *args]
        return subprocess.run(command, capture_output=True, text=True, check=False, timeout=60)

    config = str(gateway.config_path)
    monkeypatch.delenv("STRANGLER_TEST_OVERRIDE_SECRET", raising=False)
    missing = sign("/zero/x", "--config", config)
    assert missing.returncode == 2 and "STRANGLER_TEST_OVERRIDE_SECRET" in missing.stderr
    monkeypatch.setenv("STRANGLER_TEST_OVERRIDE_SECRET", OVERRIDE_SECRET)
    too_long = sign("/zero/x", "--config", config, "--ttl-s", "999999")
    assert too_long.returncode == 2 and "max_ttl_s" in too_long.stderr
    signed = sign("/zero/x?page=2", "--config", config, "--json")
    assert signed.returncode == 0, signed.stderr
    assert OVERRIDE_SECRET not in signed.stdout
    headers = json.loads(signed.stdout)
    side, seen = _override(gateway, "/zero/x", headers)
    assert side == "new"
    assert "x-strangler-signature" not in seen
