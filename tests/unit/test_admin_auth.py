"""Admin API authentication, driven in-process over ASGI against a real SQLite store: tokens,
sessions, CSRF, scopes, configured users, and the login throttle (on a fake clock).

What a real socket adds (a token made by the `strangler token create` command, used against a
running gateway) is in tests/integration/test_admin_auth.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from starlette.requests import Request

from strangler.admin import create_admin_app
from strangler.admin.auth import (
    AUTH_RESPONSES,
    Principal,
    Scope,
    hash_password,
    hash_token,
    new_token,
    require_write,
    verify_password,
)
from strangler.admin.login_throttle import (
    FORGET_AFTER_S,
    Failure,
    LoginKey,
    LoginThrottle,
    Refusal,
    Refused,
    backoff_s,
)
from strangler.admin.session_routes import is_https, login_key
from strangler.cli.tokens import create_token
from strangler.config import AdminUserConfig, Config, parse_config
from strangler.control.store import StoreUnavailable
from strangler.control.stores import open_store
from strangler.errors import ConfigError
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import build_snapshot

PASSWORD = "correct horse battery staple"
CHANGE_PATH = "/test/change"


class View:
    """A running gateway whose snapshot a test may replace (a reload)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.is_draining = False
        self.degraded: str | None = None

    @property
    def base(self) -> Config:
        return self.snapshot.config


@pytest.fixture(scope="module")
def password_hash() -> str:
    return hash_password(PASSWORD)


def _config_text(password_hash: str, *, attempts: int = 10, users: str | None = None) -> str:
    if users is None:
        users = (
            f'    - {{name: ana, scope: write, password_hash: "{password_hash}"}}\n'
            f'    - {{name: bo, password_hash: "{password_hash}"}}\n'
        )
    return (
        "backends:\n"
        '  legacy: {url: "http://127.0.0.1:3000"}\n'
        '  new: {url: "http://127.0.0.1:8080"}\n'
        "store: {path: admin.db}\n"
        "admin:\n"
        f"  login_attempts_per_minute: {attempts}\n"
        f"  users:\n{users}"
    )


def _snapshot(config_path: Path, text: str) -> Snapshot:
    return build_snapshot(parse_config(text, str(config_path)), source=str(config_path))


class Setup:
    """A config file in tmp_path, its store (SQLite), and the admin app over a View of it."""

    def __init__(self, tmp_path: Path, password_hash: str, *, attempts: int = 10) -> None:
        self.config_path = tmp_path / "strangler.yaml"
        self.config_path.write_text(_config_text(password_hash, attempts=attempts))
        self.view = View(_snapshot(self.config_path, self.config_path.read_text()))
        self.app = _with_write_endpoint(create_admin_app(self.view))

    def token(self, scope: str, name: str = "ci") -> tuple[str, str]:
        """(id, token), made the way `strangler token create` makes them."""
        return create_token(self.config_path, name, scope, "tester")

    def run(
        self,
        scenario: Callable[[httpx.AsyncClient], Awaitable[None]],
        base_url: str = "http://admin",
    ) -> None:
        async def main() -> None:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
                await scenario(client)

        asyncio.run(main())


def _with_write_endpoint(app: FastAPI) -> FastAPI:
    """The app plus one state-changing endpoint behind require_write, as resource routers do."""
    router = APIRouter()

    @router.post(CHANGE_PATH, status_code=204, responses=AUTH_RESPONSES)
    def change(principal: Annotated[Principal, Depends(require_write)]) -> None:
        return None

    app.include_router(router)
    return app


@pytest.fixture
def setup(tmp_path: Path, password_hash: str) -> Setup:
    return Setup(tmp_path, password_hash)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    assert (body["type"], body["status"]) == ("about:blank", status)
    return body


def _assert_unauthorized(response: httpx.Response) -> None:
    _assert_problem(response, 401)
    assert response.headers["www-authenticate"] == 'Bearer realm="strangler"'


# --- tokens at rest ----------------------------------------------------------------------------


def test_a_token_is_stored_as_its_sha256_and_never_in_clear(setup: Setup) -> None:
    token_id, token = setup.token("write")
    assert re.fullmatch(r"stk_[A-Za-z0-9_-]{43}", token)
    assert re.fullmatch(r"tok_[0-9a-f]{8}", token_id)
    digest = hashlib.sha256(token.encode()).hexdigest()
    assert hash_token(token) == digest
    # WAL mode: the row may still be in the -wal file, so every file of the database counts.
    stored = b"".join(path.read_bytes() for path in setup.config_path.parent.glob("admin.db*"))
    assert token.encode() not in stored
    assert token.removeprefix("stk_").encode() not in stored
    assert digest.encode() in stored


def test_tokens_are_random_and_their_records_carry_no_secret() -> None:
    first, record = new_token("ci", Scope.WRITE, "ana", 1000.0)
    second, _ = new_token("ci", Scope.WRITE, "ana", 1000.0)
    assert first != second
    assert first not in repr(record)
    assert (record.scope, record.created_by, record.hash) == ("write", "ana", hash_token(first))


# --- bearer tokens ------------------------------------------------------------------------------


def test_a_token_authenticates_with_its_scope(setup: Setup) -> None:
    _, write_token = setup.token("write", "deploy")
    _, read_token = setup.token("read", "viewer")

    async def scenario(client: httpx.AsyncClient) -> None:
        whoami = await client.get("/api/v1/session", headers=_bearer(read_token))
        assert whoami.status_code == 200
        assert whoami.json() == {
            "subject": "token:viewer",
            "scope": "read",
            "via": "token",
            "expires_at": None,
            "csrf_token": None,
        }
        change = await client.post(CHANGE_PATH, headers=_bearer(write_token))
        assert change.status_code == 204

    setup.run(scenario)


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("no credentials", {}),
        ("not a token", _bearer("hunter2")),
        ("empty bearer", {"Authorization": "Bearer "}),
        ("basic scheme", {"Authorization": "Basic YWRtaW46YWRtaW4="}),
        ("a token's shape, unknown", _bearer("stk_" + "A" * 43)),
        ("unknown session cookie", {"Cookie": "strangler_admin=forged"}),
    ],
)
def test_missing_or_unknown_credentials_are_401_problems(
    setup: Setup, case: str, headers: dict[str, str]
) -> None:
    setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        _assert_unauthorized(await client.get("/api/v1/session", headers=headers))
        _assert_unauthorized(await client.post(CHANGE_PATH, headers=headers))

    setup.run(scenario)


def test_a_wrong_token_of_the_right_length_differing_in_one_character_is_refused(
    setup: Setup,
) -> None:
    # The check is hmac.compare_digest of SHA-256 digests (auth.py), so how long it takes does
    # not depend on how much of the token is right; timing belongs in bench/, not here. What a
    # test can show is that a near miss, same length and one character off, gets nothing.
    _, token = setup.token("write")
    near_miss = token[:-1] + ("A" if token[-1] != "A" else "B")

    async def scenario(client: httpx.AsyncClient) -> None:
        _assert_unauthorized(await client.get("/api/v1/session", headers=_bearer(near_miss)))
        assert (await client.get("/api/v1/session", headers=_bearer(token))).status_code == 200

    setup.run(scenario)


def test_a_revoked_token_is_401(setup: Setup) -> None:
    token_id, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        assert (await client.get("/api/v1/session", headers=_bearer(token))).status_code == 200
        store = open_store(setup.view.snapshot.config.store, setup.view.snapshot.source)
        try:
            assert store.revoke_token(token_id, 2000.0)
        finally:
            store.close()
        _assert_unauthorized(await client.get("/api/v1/session", headers=_bearer(token)))

    setup.run(scenario)


def test_a_read_token_is_403_on_a_write_endpoint(setup: Setup) -> None:
    _, token = setup.token("read", "viewer")

    async def scenario(client: httpx.AsyncClient) -> None:
        body = _assert_problem(await client.post(CHANGE_PATH, headers=_bearer(token)), 403)
        assert body["detail"] == "this needs scope write; token:viewer has scope read"

    setup.run(scenario)


def test_last_used_is_written_on_first_use_and_not_on_every_request(setup: Setup) -> None:
    token_id, token = setup.token("read")
    store = open_store(setup.view.snapshot.config.store, setup.view.snapshot.source)

    def last_used() -> float | None:
        return next(r.last_used_at for r in store.tokens() if r.id == token_id)

    async def scenario(client: httpx.AsyncClient) -> None:
        assert last_used() is None
        await client.get("/api/v1/session", headers=_bearer(token))
        first = last_used()
        assert first is not None
        await client.get("/api/v1/session", headers=_bearer(token))
        assert last_used() == first  # within a minute: not rewritten

    try:
        setup.run(scenario)
    finally:
        store.close()


# --- sessions -----------------------------------------------------------------------------------


async def _login(client: httpx.AsyncClient, **credentials: str) -> httpx.Response:
    return await client.post("/api/v1/session", json=credentials)


@pytest.mark.parametrize(
    ("base_url", "secure"), [("http://admin", ""), ("https://admin", "; Secure")]
)
def test_login_with_a_token_sets_a_strict_httponly_cookie(
    setup: Setup, base_url: str, secure: str
) -> None:
    _, token = setup.token("write", "deploy")

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await _login(client, token=token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"subject", "scope", "csrf_token", "expires_at"}
        assert (body["subject"], body["scope"]) == ("token:deploy", "write")
        assert response.headers["cache-control"] == "no-store"
        (cookie,) = response.headers.get_list("set-cookie")
        value = cookie.split(";", 1)[0].removeprefix("strangler_admin=")
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
        assert cookie == (
            f"strangler_admin={value}; Max-Age=28800; Path=/; HttpOnly; SameSite=Strict{secure}"
        )
        # Neither secret is stored, only their hashes.
        stored = b"".join(p.read_bytes() for p in setup.config_path.parent.glob("admin.db*"))
        assert value.encode() not in stored and body["csrf_token"].encode() not in stored
        assert hash_token(value).encode() in stored

        whoami = await client.get("/api/v1/session")  # the cookie alone, no CSRF on GET
        assert whoami.status_code == 200
        assert whoami.json()["via"] == "session"
        assert whoami.json()["expires_at"] == body["expires_at"]

    setup.run(scenario, base_url)


@pytest.mark.parametrize(
    ("csrf", "status"),
    [(None, 403), ("wrong", 403), ("", 403), ("right", 204)],
)
def test_an_unsafe_call_with_a_session_needs_its_csrf_token(
    setup: Setup, csrf: str | None, status: int
) -> None:
    _, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        login = (await _login(client, token=token)).json()
        headers = {} if csrf is None else {"X-CSRF-Token": csrf}
        if csrf == "right":
            headers["X-CSRF-Token"] = login["csrf_token"]
        response = await client.post(CHANGE_PATH, headers=headers)
        if status == 403:
            body = _assert_problem(response, 403)
            assert str(body["detail"]).startswith("csrf: ")
        else:
            assert response.status_code == status

    setup.run(scenario)


def test_the_cookies_owner_reads_its_csrf_token_again_and_nobody_else_does(setup: Setup) -> None:
    _, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        login = (await _login(client, token=token)).json()
        # A reloaded page: the cookie alone gets the session's token back, and it works.
        again = await client.get("/api/v1/session")
        assert again.json()["csrf_token"] == login["csrf_token"]
        assert again.headers["cache-control"] == "no-store"
        headers = {"X-CSRF-Token": again.json()["csrf_token"]}
        assert (await client.post(CHANGE_PATH, headers=headers)).status_code == 204
        # A bearer caller holding the same cookie gets none: the bearer token decides.
        as_bearer = await client.get("/api/v1/session", headers=_bearer(token))
        assert as_bearer.json()["csrf_token"] is None
        # Another session's cookie derives another token.
        await _login(client, token=token)
        assert (await client.get("/api/v1/session")).json()["csrf_token"] != login["csrf_token"]

    setup.run(scenario)


def test_another_sessions_csrf_token_does_not_count(setup: Setup) -> None:
    _, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        other = (await _login(client, token=token)).json()["csrf_token"]
        await _login(client, token=token)  # the client now holds the second session's cookie
        response = await client.post(CHANGE_PATH, headers={"X-CSRF-Token": other})
        _assert_problem(response, 403)

    setup.run(scenario)


def test_a_bearer_token_needs_no_csrf_token_and_wins_over_a_cookie(setup: Setup) -> None:
    _, write_token = setup.token("write", "deploy")
    _, read_token = setup.token("read", "viewer")

    async def scenario(client: httpx.AsyncClient) -> None:
        await _login(client, token=write_token)
        # The bearer token decides: read scope, whatever the cookie's session may do.
        _assert_problem(await client.post(CHANGE_PATH, headers=_bearer(read_token)), 403)
        _assert_unauthorized(await client.get("/api/v1/session", headers=_bearer("stk_nope")))
        assert (await client.post(CHANGE_PATH, headers=_bearer(write_token))).status_code == 204

    setup.run(scenario)


def test_logout_needs_csrf_ends_the_session_and_expires_the_cookie(setup: Setup) -> None:
    _, token = setup.token("read")

    async def scenario(client: httpx.AsyncClient) -> None:
        login = await _login(client, token=token)
        cookie = login.headers["set-cookie"].split(";", 1)[0]
        _assert_problem(await client.delete("/api/v1/session"), 403)
        logout = await client.delete(
            "/api/v1/session", headers={"X-CSRF-Token": login.json()["csrf_token"]}
        )
        assert logout.status_code == 204
        assert logout.headers["set-cookie"] == (
            "strangler_admin=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
        )
        client.cookies.clear()
        _assert_unauthorized(await client.get("/api/v1/session", headers={"Cookie": cookie}))

    setup.run(scenario)


# --- configured users ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "password", "status", "scope"),
    [
        ("ana", PASSWORD, 200, "write"),
        ("bo", PASSWORD, 200, "read"),  # scope defaults to read
        ("ana", PASSWORD + "!", 401, None),
        ("ana", "", 422, None),
        ("nobody", PASSWORD, 401, None),
    ],
)
def test_login_with_a_configured_user(
    setup: Setup, user: str, password: str, status: int, scope: str | None
) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        response = await _login(client, user=user, password=password)
        if status == 200:
            assert response.status_code == 200, response.text
            assert (response.json()["subject"], response.json()["scope"]) == (f"user:{user}", scope)
        elif status == 401:
            _assert_unauthorized(response)
            assert response.json()["detail"] == "wrong token, user or password"
            assert "set-cookie" not in response.headers
        else:
            _assert_problem(response, status)

    setup.run(scenario)


def test_a_users_session_follows_the_config_in_force(setup: Setup, password_hash: str) -> None:
    async def scenario(client: httpx.AsyncClient) -> None:
        csrf = (await _login(client, user="ana", password=PASSWORD)).json()["csrf_token"]
        headers = {"X-CSRF-Token": csrf}
        assert (await client.post(CHANGE_PATH, headers=headers)).status_code == 204
        # A reload lowers ana to read: her session loses write at once.
        lowered = f'    - {{name: ana, scope: read, password_hash: "{password_hash}"}}\n'
        setup.view.snapshot = _snapshot(
            setup.config_path, _config_text(password_hash, users=lowered)
        )
        _assert_problem(await client.post(CHANGE_PATH, headers=headers), 403)
        # Another reload removes her: the session is over.
        setup.view.snapshot = _snapshot(
            setup.config_path, _config_text(password_hash, users="    []\n")
        )
        _assert_unauthorized(await client.get("/api/v1/session"))

    setup.run(scenario)


def test_login_takes_json_only(setup: Setup) -> None:
    _, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        form = await client.post("/api/v1/session", data={"token": token})
        _assert_problem(form, 422)
        text = await client.post(
            "/api/v1/session",
            content=f'{{"token": "{token}"}}',
            headers={"Content-Type": "text/plain"},
        )
        _assert_problem(text, 422)

    setup.run(scenario)


# --- the login throttle -------------------------------------------------------------------------


def test_failed_logins_hold_back_that_user_from_that_address_only(
    tmp_path: Path, password_hash: str, caplog: pytest.LogCaptureFixture
) -> None:
    setup = Setup(tmp_path, password_hash, attempts=3)
    _, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        for _ in range(5):  # successes are free
            assert (await _login(client, user="ana", password=PASSWORD)).status_code == 200
        _assert_unauthorized(await _login(client, user="ana", password="guess"))
        limited = await _login(client, user="ana", password=PASSWORD)
        body = _assert_problem(limited, 429)
        assert body["detail"] == (
            "too many failed logins for this user from this address; "
            "try again in Retry-After seconds"
        )
        assert limited.headers["retry-after"] == "1"
        # Neither another user nor a token login from this address is held back.
        assert (await _login(client, user="bo", password=PASSWORD)).status_code == 200
        assert (await _login(client, token=token)).status_code == 200
        _assert_unauthorized(await _login(client, token="stk_" + "A" * 43))
        refused_token = _assert_problem(await _login(client, token=token), 429)
        assert refused_token["detail"] == (
            "too many failed token logins from this address; try again in Retry-After seconds"
        )

    setup.run(scenario)
    (line,) = [r.getMessage() for r in caplog.records if "user 'ana'" in r.getMessage()]
    assert line == (
        "admin login failed for user 'ana' from 127.0.0.1: 1 in a row "
        "(0 refused during backoff); next attempt in 1 s"
    )

    async def other_address() -> None:
        transport = httpx.ASGITransport(app=setup.app, client=("192.0.2.7", 5000))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            assert (await _login(client, user="ana", password=PASSWORD)).status_code == 200

    asyncio.run(other_address())


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("192.0.2.7", ["203.0.113.7"], "192.0.2.7"),  # not a trusted proxy: header ignored
        ("10.0.0.1", [], "10.0.0.1"),
        ("10.0.0.1", ["203.0.113.7"], "203.0.113.7"),
        ("10.0.0.1", ["198.51.100.2, 203.0.113.7"], "203.0.113.7"),  # the left one is a claim
        ("10.0.0.1", ["198.51.100.2", "203.0.113.7"], "203.0.113.7"),  # two header lines
        ("10.0.0.1", ["203.0.113.7, 10.0.0.9"], "203.0.113.7"),  # a chain of trusted proxies
        ("10.0.0.1", ["not an address"], "10.0.0.1"),
    ],
)
def test_the_client_of_a_login_is_the_forwarded_one_only_behind_a_trusted_proxy(
    tmp_path: Path, password_hash: str, peer: str, forwarded_for: list[str], client: str
) -> None:
    config_path = tmp_path / "strangler.yaml"
    text = _config_text(password_hash) + "forwarding:\n  trusted_proxies: [10.0.0.0/8]\n"
    view = View(_snapshot(config_path, text))
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded_for]
    request = Request({"type": "http", "headers": headers, "client": (peer, 40000)})
    assert login_key(request, view, "ana") == LoginKey("ana", client)


@pytest.mark.parametrize(
    ("peer", "scheme", "forwarded_proto", "expected"),
    [
        ("192.0.2.7", "http", [], False),
        ("192.0.2.7", "https", [], True),
        ("192.0.2.7", "http", ["https"], False),  # not a trusted proxy: header ignored
        ("10.0.0.1", "http", ["https"], True),  # a trusted proxy terminated TLS
        ("10.0.0.1", "http", ["http"], False),
        ("10.0.0.1", "http", ["https, http"], False),  # the proxy's own value is the last
        ("10.0.0.1", "http", ["http", "HTTPS"], True),
    ],
)
def test_the_session_cookie_is_secure_when_the_browser_came_over_https(
    tmp_path: Path,
    password_hash: str,
    peer: str,
    scheme: str,
    forwarded_proto: list[str],
    expected: bool,
) -> None:
    config_path = tmp_path / "strangler.yaml"
    text = _config_text(password_hash) + "forwarding:\n  trusted_proxies: [10.0.0.0/8]\n"
    view = View(_snapshot(config_path, text))
    headers = [(b"x-forwarded-proto", value.encode()) for value in forwarded_proto]
    request = Request(
        {
            "type": "http",
            "scheme": scheme,
            "server": ("admin", 9000),
            "path": "/api/v1/session",
            "query_string": b"",
            "headers": headers,
            "client": (peer, 40000),
        }
    )
    assert is_https(request, view) is expected


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("failures", "per_minute", "wait_s"),
    [
        (1, 10, 1.0),
        (2, 10, 2.0),
        (3, 10, 4.0),
        (4, 10, 6.0),  # capped at 60 / 10 s: 10 failed attempts a minute at most
        (50, 10, 6.0),
        (6, 1, 32.0),
        (7, 1, 60.0),
        (10_000, 1, 60.0),
        (1, 120, 0.5),  # over 60 a minute the cap is under the base
    ],
)
def test_the_backoff_doubles_from_one_second_up_to_the_cap(
    failures: int, per_minute: int, wait_s: float
) -> None:
    assert backoff_s(failures, per_minute) == wait_s


ANA_HERE = LoginKey("ana", "192.0.2.1")


def _fail(throttle: LoginThrottle, key: LoginKey, per_minute: int = 10) -> Failure:
    assert throttle.admit(key) is None
    return throttle.failed(key, per_minute)


def test_during_the_backoff_attempts_are_refused_unjudged_and_after_it_one_is_let_through() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    assert _fail(throttle, ANA_HERE) == Failure(1, 1.0, 0, is_user_held=False)
    assert throttle.admit(ANA_HERE) == Refused(Refusal.BACKOFF, 1.0)
    clock.now += 0.75
    assert throttle.admit(ANA_HERE) == Refused(Refusal.BACKOFF, 0.25)  # not lengthened
    clock.now += 0.25
    assert _fail(throttle, ANA_HERE) == Failure(2, 2.0, 2, is_user_held=False)
    clock.now += 2.0
    assert _fail(throttle, ANA_HERE) == Failure(3, 4.0, 2, is_user_held=False)
    clock.now += 4.0
    assert throttle.admit(ANA_HERE) is None
    throttle.succeeded(ANA_HERE)  # forgets every failure of the key
    assert repr(throttle) == "<LoginThrottle 0 keys, 0 users (0 held), 2 refused>"
    assert _fail(throttle, ANA_HERE).wait_s == 1.0
    assert throttle.refusals(Refusal.BACKOFF) == 2


def test_one_attempt_per_key_is_judged_at_a_time_and_an_unjudged_one_counts_for_nothing() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    assert throttle.admit(ANA_HERE) is None
    assert throttle.admit(ANA_HERE) == Refused(Refusal.BUSY, 1.0)
    assert throttle.admit(LoginKey("ana", "192.0.2.2")) is None  # another client is not busy
    throttle.unjudged(ANA_HERE)  # the store was down
    assert repr(throttle) == "<LoginThrottle 1 keys, 0 users (0 held), 1 refused>"
    assert _fail(throttle, ANA_HERE).in_a_row == 1
    assert throttle.refusals(Refusal.BUSY) == 1


@pytest.mark.parametrize(
    "other",
    [
        LoginKey("bo", "192.0.2.1"),  # another user, same address
        LoginKey("ana", "192.0.2.2"),  # same user, another address
        LoginKey(None, "192.0.2.1"),  # a token login from the same address
    ],
)
def test_one_keys_failures_do_not_hold_back_another(other: LoginKey) -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(20):  # far past the cap, and past SPREAD_CLIENTS failures
        clock.now += _fail(throttle, ANA_HERE).wait_s
    assert throttle.admit(ANA_HERE) is None
    throttle.failed(ANA_HERE, 10)
    assert throttle.admit(ANA_HERE) == Refused(Refusal.BACKOFF, 6.0)
    assert throttle.admit(other) is None


def test_a_user_failing_from_many_addresses_is_held_everywhere_at_the_flat_cap() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for client in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert _fail(throttle, LoginKey("ana", client)).is_user_held is False
    legit = LoginKey("ana", "192.0.2.99")
    assert throttle.admit(legit) is None  # three failing clients: not held yet
    throttle.unjudged(legit)
    assert _fail(throttle, LoginKey("ana", "203.0.113.4")) == Failure(1, 6.0, 0, is_user_held=True)
    assert repr(throttle) == "<LoginThrottle 4 keys, 1 users (1 held), 0 refused>"
    # Held: 60 / 10 s after each failure from anywhere, without doubling.
    assert throttle.admit(legit) == Refused(Refusal.USER_HELD, 6.0)
    assert throttle.admit(LoginKey("bo", "203.0.113.1")) is None  # other users are not held
    throttle.unjudged(LoginKey("bo", "203.0.113.1"))
    clock.now += 6.0
    fifth = LoginKey("ana", "203.0.113.5")
    assert throttle.admit(fifth) is None
    assert throttle.admit(legit) == Refused(Refusal.BUSY, 1.0)  # one judged at a time
    assert throttle.failed(fifth, 10).wait_s == 6.0
    clock.now += 6.0
    assert throttle.admit(legit) is None
    throttle.succeeded(legit)
    # A client that logged in as ana stops counting; attackers' clients keep ana held.
    assert throttle.admit(LoginKey("ana", "203.0.113.1")) is None
    throttle.succeeded(LoginKey("ana", "203.0.113.1"))
    assert repr(throttle) == "<LoginThrottle 4 keys, 1 users (0 held), 2 refused>"
    assert (throttle.refusals(Refusal.USER_HELD), throttle.refusals(Refusal.BUSY)) == (1, 1)


def test_token_logins_from_many_addresses_never_hold_token_logins_as_a_whole() -> None:
    throttle = LoginThrottle(clock=FakeClock())
    for n in range(10):
        assert _fail(throttle, LoginKey(None, f"203.0.113.{n}")).is_user_held is False
    assert throttle.admit(LoginKey(None, "192.0.2.1")) is None


def test_failures_are_forgotten_after_a_quiet_while() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for client in ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"):
        _fail(throttle, LoginKey("ana", client))
    for in_a_row in (1, 2):
        clock.now += 8.0
        assert _fail(throttle, ANA_HERE) == Failure(in_a_row, 6.0, 0, is_user_held=True)
    clock.now += FORGET_AFTER_S - 8.0  # the first four clients have been quiet that long
    assert _fail(throttle, LoginKey("bo", "192.0.2.1")).in_a_row == 1
    # Their keys are gone; ana is still held: it failed 15 min ago, not longer.
    assert repr(throttle) == "<LoginThrottle 2 keys, 2 users (1 held), 0 refused>"
    clock.now += 8.0
    assert _fail(throttle, ANA_HERE) == Failure(1, 1.0, 0, is_user_held=False)


def test_the_throttles_memory_is_bounded() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_keys=2, max_users=2, clock=clock)
    for user in ("ana", "bo", "cy"):
        _fail(throttle, LoginKey(user, "192.0.2.1"))
    assert repr(throttle) == "<LoginThrottle 2 keys, 2 users (0 held), 0 refused>"
    assert throttle.admit(LoginKey("ana", "192.0.2.1")) is None  # the oldest was forgotten
    assert throttle.admit(LoginKey("cy", "192.0.2.1")) == Refused(Refusal.BACKOFF, 1.0)


# --- store and config ---------------------------------------------------------------------------


def test_an_unreachable_store_is_503_but_no_credentials_still_401(
    tmp_path: Path, password_hash: str
) -> None:
    config_path = tmp_path / "strangler.yaml"
    text = _config_text(password_hash).replace("path: admin.db", "path: missing/dir/admin.db")
    app = create_admin_app(View(_snapshot(config_path, text)))

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            down = await client.get("/api/v1/session", headers=_bearer("stk_" + "A" * 43))
            body = _assert_problem(down, 503)
            assert body["detail"] == "store unavailable"
            assert "missing" not in down.text  # the reason is logged, not sent
            _assert_unauthorized(await client.get("/api/v1/session"))
            assert (await client.get("/healthz")).status_code == 200

    asyncio.run(main())


def test_a_store_failing_mid_request_is_a_503_problem_that_keeps_its_reason(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    @setup.app.get("/test/store-fails")
    def store_fails() -> None:
        raise StoreUnavailable("shadow store /srv/secret/admin.db: database is locked")

    async def scenario(client: httpx.AsyncClient) -> None:
        response = await client.get("/test/store-fails")
        assert _assert_problem(response, 503)["detail"] == "store unavailable"
        assert "secret" not in response.text

    setup.run(scenario)
    assert any("database is locked" in record.getMessage() for record in caplog.records)


def test_logins_while_the_store_is_down_are_503_and_not_failures(
    tmp_path: Path, password_hash: str
) -> None:
    config_path = tmp_path / "strangler.yaml"
    text = _config_text(password_hash, attempts=1).replace(
        "path: admin.db", "path: missing/dir/admin.db"
    )
    app = create_admin_app(View(_snapshot(config_path, text)))

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            for _ in range(3):  # one failure a minute allowed: none of these counts
                _assert_problem(await _login(client, token="stk_" + "A" * 43), 503)

    asyncio.run(main())


def test_the_openapi_document_declares_both_schemes_and_every_auth_answer(setup: Setup) -> None:
    document = setup.app.openapi()
    assert document["components"]["securitySchemes"] == {
        "token": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "stk_...",
            "description": "An admin token from `strangler token create` (scope read or write).",
        },
        "session": {
            "type": "apiKey",
            "in": "cookie",
            "name": "strangler_admin",
            "description": "The browser session from POST /api/v1/session. Unsafe methods also "
            "need the session's CSRF token in the X-CSRF-Token header.",
        },
    }
    session = document["paths"]["/api/v1/session"]
    assert session["get"]["security"] == [{"token": []}, {"session": []}]
    assert set(session["delete"]["responses"]) == {"204", "401", "403", "422", "503"}
    assert set(session["post"]["responses"]) == {"200", "400", "401", "422", "429", "503"}
    assert "security" not in session["post"]  # login is how credentials are obtained
    for public in ("/healthz", "/readyz", "/.well-known/jwks.json"):
        assert "security" not in document["paths"][public]["get"]


def test_password_hashes_verify_and_are_salted(password_hash: str) -> None:
    user = AdminUserConfig(name="ana", password_hash=password_hash)
    assert verify_password(user, PASSWORD)
    assert not verify_password(user, PASSWORD.upper())
    assert not verify_password(None, PASSWORD)
    assert hash_password(PASSWORD) != password_hash
    assert password_hash.startswith("scrypt$16384$8$1$")


@pytest.mark.parametrize(
    ("users", "message"),
    [
        ('[{name: ana, password_hash: "hunter2"}]', "expected scrypt$<n>$<r>$<p>$<salt>$<hash>"),
        ('[{name: ana, password_hash: "scrypt$1000$8$1$c2FsdA==$aGFzaA=="}]', "power of 2"),
        ("[{name: ana, password_hash: HASH}, {name: ana, password_hash: HASH}]", "unique"),
        ('[{name: "a b", password_hash: HASH}]', "name"),
    ],
)
def test_unusable_admin_users_are_config_errors(
    tmp_path: Path, password_hash: str, users: str, message: str
) -> None:
    users = users.replace("HASH", f'"{password_hash}"')
    text = _config_text(password_hash).split("  users:\n")[0] + f"  users: {users}\n"
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, str(tmp_path / "strangler.yaml"))


def test_revoking_a_token_ends_the_sessions_opened_with_it(setup: Setup) -> None:
    token_id, token = setup.token("write")

    async def scenario(client: httpx.AsyncClient) -> None:
        login = await client.post("/api/v1/session", json={"token": token})
        assert login.status_code == 200
        assert (await client.get("/api/v1/session")).status_code == 200  # the cookie
        store = open_store(setup.view.snapshot.config.store, setup.view.snapshot.source)
        try:
            assert store.revoke_token(token_id, 2000.0)
        finally:
            store.close()
        _assert_unauthorized(await client.get("/api/v1/session"))

    setup.run(scenario)
