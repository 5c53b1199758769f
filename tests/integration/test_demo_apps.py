"""The bundled demo: the Rails-like legacy app, the new app, the traffic generator, the runner.

Every app runs under real uvicorn on 127.0.0.1 (tests/integration/demo_servers.py); tests talk
to it with httpx and assert what a browser or API client would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import stat
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from strangler.demo.cookie_store import DEMO_SECRET_KEY_BASE, SECRET_KEY_BASE_ENV, SESSION_COOKIE
from strangler.demo.legacy_app import create_legacy_app
from strangler.demo.new_app import (
    CHAOS_DELAY_S,
    CHAOS_ENV,
    CHAOS_PATH,
    ChaosMode,
    create_new_app,
)
from strangler.demo.runner import (
    SECRET_KEY_BASE_FILE,
    demo_config,
    demo_dir,
    load_demo_config,
    run_demo,
    write_demo_config,
)
from strangler.demo.traffic import (
    CANARY_ROUTE,
    DEFAULT_MIX,
    Action,
    TrafficStats,
    generate_traffic,
)
from strangler.identity import (
    AnonymousReason,
    KeyDigest,
    RailsSessionDecoder,
    RailsSessionEncoder,
    RailsSessionSettings,
    SessionSecret,
)
from tests.integration.demo_servers import free_ports, serve
from tests.integration.gateway_process import run_cli

_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')
_FORM_TOKEN = re.compile(r'name="authenticity_token" value="([^"]+)"')
_PROJECT_KEYS = {"id", "name", "owner", "tasks_count", "created_at", "updated_at"}
_TASK_KEYS = {"id", "project_id", "title", "done", "due_on", "created_at", "updated_at"}
_RAILS_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
_RAILS_JSON = "application/json; charset=utf-8"
_DEMO_SECRET = SessionSecret(DEMO_SECRET_KEY_BASE.encode(), KeyDigest.SHA1)


@pytest.fixture(scope="module")
def legacy_url() -> Iterator[str]:
    """A legacy app shared by the read-only tests of this module."""
    with serve(create_legacy_app(), "/up") as url:
        yield url


@pytest.fixture
def fresh_legacy_url() -> Iterator[str]:
    """A legacy app of its own, for tests that log in or write."""
    with serve(create_legacy_app(), "/up") as url:
        yield url


@pytest.fixture(scope="module")
def new_url() -> Iterator[str]:
    with serve(create_new_app(chaos=ChaosMode.OK), "/healthz") as url:
        yield url


@pytest.fixture
def fresh_new_url() -> Iterator[str]:
    """A new app of its own, for tests that flip its chaos switch."""
    with serve(create_new_app(chaos=ChaosMode.OK), "/healthz") as url:
        yield url


def _client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, trust_env=False)


def _token(pattern: re.Pattern[str], response: httpx.Response) -> str:
    match = pattern.search(response.text)
    assert match is not None, response.text
    return match.group(1)


def _log_in(client: httpx.Client, email: str = "ada@example.com") -> str:
    """Log in through the form; returns the CSRF token of the first page after login."""
    token = _token(_FORM_TOKEN, client.get("/login"))
    form = {"email": email, "password": "secret", "authenticity_token": token}
    assert client.post("/login", data=form).status_code == 302
    return _token(_META_TOKEN, client.get("/account"))


# ----------------------------------------------------------------------------- legacy JSON API


@pytest.mark.parametrize("path", ["/api/projects", "/api/projects.json"])
def test_api_index_lists_seeded_projects(legacy_url: str, path: str) -> None:
    response = httpx.get(legacy_url + path, headers={"x-request-id": "req-42"}, trust_env=False)
    body = response.json()
    assert (response.status_code, response.headers["content-type"]) == (200, _RAILS_JSON)
    assert set(body) == {"projects", "meta"}
    assert [p["id"] for p in body["projects"]] == [1, 2, 3, 4, 5]
    assert all(set(p) == _PROJECT_KEYS for p in body["projects"])
    assert _RAILS_TIME.match(body["projects"][0]["updated_at"])
    assert body["meta"]["request_id"] == "req-42"
    assert _RAILS_TIME.match(body["meta"]["generated_at"])


def test_api_show_and_tasks(legacy_url: str) -> None:
    with _client(legacy_url) as client:
        project = client.get("/api/projects/2.json").json()
        tasks = client.get("/api/projects/2/tasks").json()
    assert set(project) == {"project", "meta"}
    assert set(project["project"]) == _PROJECT_KEYS
    assert project["project"]["name"] == "Mobile app"
    assert project["project"]["tasks_count"] == len(tasks["tasks"]) == 3
    assert all(set(t) == _TASK_KEYS and t["project_id"] == 2 for t in tasks["tasks"])


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/projects/999.json"),
        ("GET", "/api/projects/999/tasks"),
        ("GET", "/api/nothing-here"),
        ("POST", "/api/projects/1/tasks"),
    ],
)
def test_api_unknown_routes_and_ids_are_json_404(legacy_url: str, method: str, path: str) -> None:
    response = httpx.request(method, legacy_url + path, trust_env=False)
    assert (response.status_code, response.headers["content-type"]) == (404, _RAILS_JSON)
    assert response.json() == {"status": 404, "error": "Not Found"}


def test_responses_carry_rails_headers(legacy_url: str) -> None:
    response = httpx.get(
        legacy_url + "/api/projects/1", headers={"x-request-id": "abc<script>"}, trust_env=False
    )
    headers = response.headers
    assert headers["x-request-id"] == "abcscript"
    assert float(headers["x-runtime"]) >= 0
    assert re.fullmatch(r'W/"[0-9a-f]{32}"', headers["etag"])
    assert headers["cache-control"] == "max-age=0, private, must-revalidate"
    assert headers["x-frame-options"] == "SAMEORIGIN"
    assert headers["x-content-type-options"] == "nosniff"
    assert "server" not in headers
    assert "x-powered-by" not in headers


def test_conditional_get_and_head_share_the_etag(legacy_url: str) -> None:
    with _client(legacy_url) as client:
        first = client.get("/up")
        again = client.get("/up", headers={"if-none-match": first.headers["etag"]})
        head = client.head("/up")
    assert (first.status_code, again.status_code) == (200, 304)
    assert again.content == b""
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["etag"] == first.headers["etag"]


# ----------------------------------------------------------------------------- legacy pages


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("/", "Projects and tasks"),
        ("/projects", "Website redesign"),
        ("/projects/2", "Offline sync"),
        ("/login", 'name="authenticity_token"'),
        ("/up", "background-color: green"),
    ],
)
def test_html_pages(legacy_url: str, path: str, text: str) -> None:
    response = httpx.get(legacy_url + path, trust_env=False)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert text in response.text


@pytest.mark.parametrize(("method", "path"), [("GET", "/projects/999"), ("POST", "/projects")])
def test_unknown_pages_are_html_404(legacy_url: str, method: str, path: str) -> None:
    response = httpx.request(method, legacy_url + path, trust_env=False)
    assert response.status_code == 404
    assert "doesn't exist" in response.text


def test_report_is_streamed_csv(legacy_url: str) -> None:
    with _client(legacy_url) as client:
        report = client.get("/reports/projects.csv")
        missing = client.get("/reports/secrets.csv")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/csv")
    assert report.headers["cache-control"] == "no-cache"
    assert "etag" not in report.headers
    assert report.text.splitlines()[:2] == [
        "id,name,owner,tasks_count",
        "1,Website redesign,ada@example.com,4",
    ]
    assert missing.status_code == 404


# ----------------------------------------------------------------------------- login, session


@pytest.mark.parametrize(
    ("token", "password", "expected"),
    [
        (None, "secret", "The change you wanted was rejected"),
        ("tampered", "secret", "The change you wanted was rejected"),
        ("valid", "wrong", "Invalid email or password"),
    ],
)
def test_login_rejections_are_422(
    fresh_legacy_url: str, token: str | None, password: str, expected: str
) -> None:
    with _client(fresh_legacy_url) as client:
        valid = _token(_FORM_TOKEN, client.get("/login"))
        form = {"email": "ada@example.com", "password": password}
        if token is not None:
            form["authenticity_token"] = valid if token == "valid" else valid[::-1]
        response = client.post("/login", data=form)
        account = client.get("/account")
    assert response.status_code == 422
    assert expected in response.text
    assert account.status_code == 302


def test_login_with_token_signs_in_and_rotates_the_csrf_secret(fresh_legacy_url: str) -> None:
    with _client(fresh_legacy_url) as client:
        token_before = _token(_FORM_TOKEN, client.get("/login"))
        form = {
            "email": "Ada@Example.com",
            "password": "secret",
            "authenticity_token": token_before,
        }
        response = client.post("/login", data=form)
        account = client.get("/account")
        stale = client.post("/logout", data={"authenticity_token": token_before})
    assert response.status_code == 302
    assert response.headers["location"] == f"{fresh_legacy_url}/account"
    assert account.status_code == 200
    assert "Signed in as <strong>ada@example.com</strong>" in account.text
    assert stale.status_code == 422


def test_session_cookie_is_httponly_samesite_lax_session_cookie(fresh_legacy_url: str) -> None:
    response = httpx.get(fresh_legacy_url + "/login", trust_env=False)
    name_value, *attributes = [part.strip() for part in response.headers["set-cookie"].split(";")]
    flags = {attribute.lower() for attribute in attributes}
    assert name_value.startswith(f"{SESSION_COOKIE}=")
    assert {"httponly", "samesite=lax", "path=/"} <= flags
    assert not any(flag.startswith(("expires", "max-age", "secure")) for flag in flags)


def _decoder(cookie_name: str, secret: SessionSecret) -> RailsSessionDecoder:
    return RailsSessionDecoder(RailsSessionSettings(cookie_name, (secret,)), clock=time.time)


def test_the_session_is_a_rails_6_1_cookie_store_session(fresh_legacy_url: str) -> None:
    with _client(fresh_legacy_url) as client:
        _log_in(client, "ada@example.com")
        cookie = client.cookies[SESSION_COOKIE]
    outcome = _decoder(SESSION_COOKIE, _DEMO_SECRET).decode(cookie)
    session = outcome.session
    assert session is not None, outcome
    # The flash was shown by /account and dropped, as Rails does.
    assert set(session) == {"session_id", "_csrf_token", "user_id", "user_email"}
    assert re.fullmatch(r"[0-9a-f]{32}", str(session["session_id"]))
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", str(session["_csrf_token"]))
    assert (session["user_id"], session["user_email"]) == (1, "ada@example.com")


@pytest.mark.parametrize(
    ("cookie_name", "key_digest", "reason"),
    [
        (SESSION_COOKIE, KeyDigest.SHA256, AnonymousReason.TAMPERED),  # a Rails 7.0+ key
        ("_other_session", KeyDigest.SHA1, AnonymousReason.WRONG_PURPOSE),
    ],
)
def test_the_session_cookie_is_bound_to_its_key_and_name(
    fresh_legacy_url: str, cookie_name: str, key_digest: KeyDigest, reason: AnonymousReason
) -> None:
    cookie = httpx.get(fresh_legacy_url + "/login", trust_env=False).cookies[SESSION_COOKIE]
    secret = SessionSecret(DEMO_SECRET_KEY_BASE.encode(), key_digest)
    assert _decoder(cookie_name, secret).decode(cookie).anonymous_reason is reason


@pytest.mark.parametrize(
    "secret_key_base",
    [DEMO_SECRET_KEY_BASE, "another app's secret_key_base " * 4],
    ids=["demo-secret", "another-secret"],
)
def test_only_cookies_made_with_the_apps_secret_sign_in(
    secret_key_base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The secret comes from the environment, as the runner hands it to the app and the gateway.
    monkeypatch.setenv(SECRET_KEY_BASE_ENV, secret_key_base)
    forged = RailsSessionEncoder(SESSION_COOKIE, _DEMO_SECRET).encode(
        {"session_id": "f" * 32, "user_id": 9, "user_email": "eve@example.com"}
    )
    with serve(create_legacy_app(), "/up") as url, _client(url) as client:
        client.cookies.set(SESSION_COOKIE, forged)
        account = client.get("/account")
    is_demo_secret = secret_key_base == DEMO_SECRET_KEY_BASE
    assert account.status_code == (200 if is_demo_secret else 302)
    assert ("eve@example.com" in account.text) is is_demo_secret


def test_per_form_tokens_only_work_for_their_form_and_origin(fresh_legacy_url: str) -> None:
    with _client(fresh_legacy_url) as client:
        login_page = client.get("/login")
        login_form, meta = _token(_FORM_TOKEN, login_page), _token(_META_TOKEN, login_page)
        wrong_form = client.post("/logout", data={"authenticity_token": login_form})
        cross_site = client.post(
            "/logout", data={"authenticity_token": meta}, headers={"origin": "https://evil.example"}
        )
        form = {"email": "ada@example.com", "password": "secret", "authenticity_token": meta}
        global_token = client.post("/login", data=form, headers={"origin": fresh_legacy_url})
    assert (wrong_form.status_code, cross_site.status_code) == (422, 422)
    assert global_token.status_code == 302


def test_account_redirects_to_login_when_logged_out(fresh_legacy_url: str) -> None:
    with _client(fresh_legacy_url) as client:
        anonymous = client.get("/account")
        token = _log_in(client)
        logout = client.post("/logout", data={"authenticity_token": token})
        after = client.get("/account")
    assert (anonymous.status_code, anonymous.headers["location"]) == (
        302,
        f"{fresh_legacy_url}/login",
    )
    assert logout.status_code == 302
    assert after.status_code == 302


@pytest.mark.parametrize(
    ("is_logged_in", "sends_token", "status"),
    [(False, False, 422), (False, True, 401), (True, False, 422), (True, True, 201)],
)
def test_api_create_checks_csrf_then_login(
    fresh_legacy_url: str, is_logged_in: bool, sends_token: bool, status: int
) -> None:
    with _client(fresh_legacy_url) as client:
        token = _log_in(client) if is_logged_in else _token(_META_TOKEN, client.get("/"))
        headers = {"x-csrf-token": token} if sends_token else {}
        response = client.post("/api/projects", json={"project": {"name": "X"}}, headers=headers)
    assert response.status_code == status


def test_api_project_lifecycle(fresh_legacy_url: str) -> None:
    with _client(fresh_legacy_url) as client:
        headers = {"x-csrf-token": _log_in(client, "grace@example.com")}
        blank = client.post("/api/projects.json", json={"name": " "}, headers=headers)
        created = client.post("/api/projects.json", json={"name": "Ledger"}, headers=headers)
        location = created.headers["location"]
        renamed = client.patch(location, json={"project": {"name": "Ledger v2"}}, headers=headers)
        shown = client.get(location + ".json")
        deleted = client.delete(location, headers=headers)
        gone = client.get(location)
    assert (blank.status_code, blank.json()) == (422, {"errors": {"name": ["can't be blank"]}})
    assert created.status_code == 201
    assert created.json()["project"]["owner"] == "grace@example.com"
    assert location == f"{fresh_legacy_url}/api/projects/6"
    assert renamed.json()["project"]["name"] == shown.json()["project"]["name"] == "Ledger v2"
    assert (deleted.status_code, gone.status_code) == (204, 404)


# ----------------------------------------------------------------------------- new app


def _without_intended_differences(body: dict[str, Any]) -> dict[str, Any]:
    def normalize(record: dict[str, Any]) -> dict[str, Any]:
        record = {key: value for key, value in record.items() if key != "archived"}
        if "completed" in record:
            record["done"] = record.pop("completed")
        record["updated_at"] = record["updated_at"].replace(".000Z", "Z")
        return record

    body = {key: value for key, value in body.items() if key != "meta"}
    for key in ("projects", "tasks"):
        if key in body:
            body[key] = [normalize(record) for record in body[key]]
    if "project" in body:
        body["project"] = normalize(body["project"])
    return body


@pytest.mark.parametrize(
    "path",
    ["/api/projects", "/api/projects.json", "/api/projects/3.json", "/api/projects/3/tasks.json"],
)
def test_new_app_matches_legacy_apart_from_intended_differences(
    legacy_url: str, new_url: str, path: str
) -> None:
    legacy = httpx.get(legacy_url + path, trust_env=False)
    new = httpx.get(new_url + path, headers={"x-request-id": "trace-me"}, trust_env=False)
    assert new.status_code == legacy.status_code == 200
    assert _without_intended_differences(new.json()) == _without_intended_differences(legacy.json())
    assert new.json() != legacy.json()
    assert new.headers["x-served-by"] == "new"
    assert new.headers["content-type"] == "application/json"
    assert new.json()["meta"]["request_id"] == new.headers["x-request-id"] == "trace-me"
    assert "x-runtime" not in new.headers


def test_new_app_adds_archived_and_milliseconds(new_url: str) -> None:
    project = httpx.get(new_url + "/api/projects/1", trust_env=False).json()["project"]
    assert project["archived"] is False
    assert project["updated_at"] == "2024-01-18T09:30:58.000Z"
    assert project["created_at"] == "2024-01-15T09:30:17Z"


def test_new_app_counts_one_pending_task_too_few(legacy_url: str, new_url: str) -> None:
    for project_id in range(1, 6):
        path = f"/api/projects/{project_id}/tasks.json"
        legacy = httpx.get(legacy_url + path, trust_env=False).json()
        new = httpx.get(new_url + path, trust_env=False).json()
        pending = sum(not task["done"] for task in legacy["tasks"])
        assert legacy["meta"]["pending_count"] == pending > 0
        assert new["meta"]["pending_count"] == pending - 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/projects/999.json", 404),
        ("GET", "/api/projects/999/tasks", 404),
        ("GET", "/projects", 404),
        ("POST", "/api/projects", 405),
    ],
)
def test_new_app_errors_are_problem_json(new_url: str, method: str, path: str, status: int) -> None:
    response = httpx.request(method, new_url + path, trust_env=False)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == status
    assert response.headers["x-served-by"] == "new"


# ----------------------------------------------------------------------------- chaos switch


def _set_chaos(client: httpx.Client, mode: str) -> httpx.Response:
    return client.post(CHAOS_PATH, json={"mode": mode})


@pytest.mark.parametrize("path", ["/api/projects/2", "/api/projects/2.json", "/api/projects/99"])
def test_chaos_fail_makes_project_detail_answer_503_problem_json(
    fresh_new_url: str, path: str
) -> None:
    with _client(fresh_new_url) as client:
        flipped = _set_chaos(client, "fail")
        response = client.get(path)
    assert (flipped.status_code, flipped.json()["mode"]) == (200, "fail")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-served-by"] == "new"
    assert response.json()["title"] == "Service Unavailable"
    assert CHAOS_PATH in response.json()["detail"]


def test_chaos_slow_delays_project_detail_and_keeps_its_answer(fresh_new_url: str) -> None:
    with _client(fresh_new_url) as client:
        normal = client.get("/api/projects/2.json")
        _set_chaos(client, "slow")
        slow = client.get("/api/projects/2.json")
    assert slow.status_code == normal.status_code == 200
    assert slow.json()["project"] == normal.json()["project"]
    # A lower bound only: the app sleeps CHAOS_DELAY_S before it answers, however busy the host.
    assert slow.elapsed.total_seconds() >= CHAOS_DELAY_S


@pytest.mark.parametrize("mode", ["slow", "fail"])
@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/projects.json", 200),
        ("GET", "/api/projects/2/tasks.json", 200),
        ("GET", "/healthz", 200),
        ("GET", "/api/me", 401),
        ("POST", "/api/projects/2", 405),
    ],
)
def test_chaos_leaves_every_other_route_alone(
    fresh_new_url: str, mode: str, method: str, path: str, status: int
) -> None:
    with _client(fresh_new_url) as client:
        before = client.request(method, path)
        _set_chaos(client, mode)
        after = client.request(method, path)
    assert before.status_code == after.status_code == status
    assert after.headers["content-type"] == before.headers["content-type"]


@pytest.mark.parametrize(
    ("body", "mode"),
    [
        ({"json": {"mode": "slow"}}, "slow"),
        ({"json": {"mode": " FAIL "}}, "fail"),
        ({"data": {"mode": "fail"}}, "fail"),
        ({"files": {"mode": (None, "slow")}}, "slow"),
    ],
    ids=["json", "json-any-case", "form", "multipart"],
)
def test_chaos_mode_is_set_by_json_or_form_and_read_back(
    fresh_new_url: str, body: dict[str, Any], mode: str
) -> None:
    with _client(fresh_new_url) as client:
        initial = client.get(CHAOS_PATH).json()
        flipped = client.post(CHAOS_PATH, **body)
        read = client.get(CHAOS_PATH).json()
        healed = _set_chaos(client, "ok").json()
    assert initial == {
        "mode": "ok",
        "modes": ["ok", "slow", "fail"],
        "affects": "GET /api/projects/:id",
        "delay_ms": round(CHAOS_DELAY_S * 1000),
    }
    assert flipped.status_code == 200
    assert flipped.json()["mode"] == read["mode"] == mode
    assert healed["mode"] == "ok"


@pytest.mark.parametrize(
    "body",
    [
        {"json": {"mode": "broken"}},
        {"json": {"mode": 1}},
        {"json": ["fail"]},
        {"content": b"{not json", "headers": {"content-type": "application/json"}},
        {"data": {"other": "fail"}},
        {"content": b"fail", "headers": {"content-type": "text/plain"}},
    ],
    ids=["unknown-mode", "not-a-string", "not-an-object", "bad-json", "no-field", "plain-text"],
)
def test_chaos_refuses_anything_but_a_mode_and_keeps_the_old_one(
    fresh_new_url: str, body: dict[str, Any]
) -> None:
    with _client(fresh_new_url) as client:
        _set_chaos(client, "slow")
        refused = client.post(CHAOS_PATH, **body)
        mode = client.get(CHAOS_PATH).json()["mode"]
    assert refused.status_code == 422
    assert refused.headers["content-type"] == "application/problem+json"
    assert mode == "slow"


@pytest.mark.parametrize(("value", "mode"), [("", "ok"), ("slow", "slow"), ("Fail", "fail")])
def test_the_new_app_starts_in_the_chaos_mode_of_its_environment(
    monkeypatch: pytest.MonkeyPatch, value: str, mode: str
) -> None:
    monkeypatch.setenv(CHAOS_ENV, value)
    with serve(create_new_app(), "/healthz") as url:
        assert httpx.get(url + CHAOS_PATH, trust_env=False).json()["mode"] == mode


def test_an_unknown_chaos_mode_in_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CHAOS_ENV, "sometimes")
    with pytest.raises(ValueError, match="'sometimes' is not one of ok, slow, fail"):
        create_new_app()


# ----------------------------------------------------------------------------- traffic


def test_traffic_against_legacy_counts_responses(fresh_legacy_url: str) -> None:
    # Identity sessions need the gateway (see test_demo_identity.py); here they would fail.
    mix = {action: w for action, w in DEFAULT_MIX.items() if action is not Action.IDENTITY_SESSION}
    stats = asyncio.run(generate_traffic(fresh_legacy_url, rate_per_s=30, duration_s=1.0, mix=mix))
    assert stats.errors == {}
    assert stats.count_status_class(2) > 0
    assert set(stats.by_backend) == {"legacy"}
    assert stats.count_status_class(5) == 0


def test_traffic_write_sessions_use_the_csrf_flow(fresh_legacy_url: str) -> None:
    mix = {Action.WRITE_SESSION: 1.0}
    stats = asyncio.run(generate_traffic(fresh_legacy_url, 10, 0.5, mix=mix))
    assert stats.errors == {}
    assert stats.by_status[201] == stats.by_status[204] == stats.actions["write_session"] > 0
    assert not any(400 <= status < 500 for status in stats.by_status)


def test_identity_sessions_without_the_gateway_fail_visibly(fresh_legacy_url: str) -> None:
    mix = {Action.IDENTITY_SESSION: 1.0}
    stats = asyncio.run(generate_traffic(fresh_legacy_url, 10, 0.5, mix=mix))
    sessions = stats.actions["identity_session"]
    assert sessions > 0
    # The legacy app has neither /api/me nor stars: both checks fail, and say so.
    assert stats.errors == {"flow:me_rejected": sessions, "flow:star_rejected": sessions}
    assert stats.identity_ok == {}
    assert f"failed x {2 * sessions}" in stats.render()


class _CookieIssuer:
    """An app that gives every cookieless client a cookie of its own, and remembers which
    cookies came back: what a canary's sticky cookie needs from the traffic."""

    def __init__(self) -> None:
        self.issued: list[str] = []
        self.returned: list[str | None] = []
        self.lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/up", self.up),
                Route("/api/projects/{id}.json", self.project),
            ]
        )

    async def up(self, request: Request) -> Response:
        return JSONResponse({})

    async def project(self, request: Request) -> Response:
        seen = request.cookies.get("visitor")
        response = JSONResponse({"project": {}}, headers={"x-served-by": "issuer"})
        with self.lock:
            self.returned.append(seen)
            if seen is None:
                self.issued.append(uuid.uuid4().hex)
                response.set_cookie("visitor", self.issued[-1])
        return response


def test_traffic_visitors_each_keep_their_own_cookies() -> None:
    issuer = _CookieIssuer()
    mix = {Action.API_SHOW: 1.0}
    with serve(issuer.app, "/up") as url:
        stats = asyncio.run(generate_traffic(url, 1, 1.0, mix=mix, visitors=3, api_rate_per_s=60))
    # Every visitor came without cookies and got its own (two, if its first requests overlapped)
    # rather than borrowing another's; later on, each sends the one it kept: three users.
    late = issuer.returned[len(issuer.returned) // 2 :]
    assert len(issuer.issued) >= 3
    assert None not in late
    assert len(set(late)) == 3
    assert stats.responses == len(issuer.returned) > 30
    assert stats.actions == {"api_show": stats.responses}


def test_traffic_tallies_the_canary_route_per_side_since_the_last_line(
    fresh_legacy_url: str,
) -> None:
    mix = {Action.API_SHOW: 1.0, Action.API_MISSING: 1.0, Action.HOME: 1.0}
    stats = asyncio.run(generate_traffic(fresh_legacy_url, 10, 0.5, mix=mix, api_rate_per_s=20))
    canary = stats.actions["api_show"] + stats.actions["api_missing"]
    assert stats.canary == {"legacy": canary}
    assert stats.canary_5xx == {}
    assert f"; canary {CANARY_ROUTE}: new 0 % of the last {canary}" in stats.progress_line()
    assert f"canary {CANARY_ROUTE}: new - of the last 0" in stats.progress_line()
    assert f"canary:     {CANARY_ROUTE}: legacy x {canary}" in stats.render()


def test_traffic_shows_the_canary_sides_and_their_5xx() -> None:
    stats = TrafficStats()
    answers = [("new", 503)] * 3 + [("new", 200)] + [("legacy", 200)] * 4
    for side, status in answers:
        request = httpx.Request("GET", "http://demo/api/projects/1.json")
        headers = {"x-served-by": "new"} if side == "new" else {"x-runtime": "0.01"}
        response = httpx.Response(status, headers=headers, request=request)
        stats.record(response)
        stats.record_canary(response)
    line = stats.progress_line()
    assert line.endswith(f"canary {CANARY_ROUTE}: new 50 % of the last 8 (5xx: new x 3)"), line
    assert "0 errors" in line
    assert stats.errors == {}
    assert f"{CANARY_ROUTE}: legacy x 4, new x 4 (5xx: new x 3)" in stats.render()


def test_traffic_counts_connection_errors_instead_of_raising() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        stats = asyncio.run(generate_traffic(url, rate_per_s=20, duration_s=0.3))
    assert stats.responses == 0
    assert stats.errors["ConnectError"] > 0


def test_traffic_stops_when_the_event_is_set(fresh_legacy_url: str) -> None:
    async def run() -> int:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        stats = await generate_traffic(fresh_legacy_url, 20, None, stop)
        return stats.responses

    assert asyncio.run(run()) > 0


# ----------------------------------------------------------------------------- config, runner


def test_demo_config_keeps_the_gateway_schema_and_rewrites_ports() -> None:
    config = demo_config(9000, 9001, 9002, 9003)
    assert set(config) == {
        "listen", "backends", "default", "rails", "identity", "admin", "access_log", "routes",
        "slos", "data",
    }  # fmt: skip
    assert config["access_log"] == {"path": "access.log", "format": "json"}
    assert config["listen"] == "127.0.0.1:9000"
    assert config["backends"]["legacy"] == {"url": "http://127.0.0.1:9001"}
    assert config["backends"]["new"]["url"] == "http://127.0.0.1:9002"
    assert config["admin"] == {"listen": "127.0.0.1:9003"}
    assert all(
        set(route) - {"shadow", "canary"} == {"name", "match", "stage"}
        for route in config["routes"]
    )
    assert {route["stage"] for route in config["routes"]} == {"legacy", "shadow", "canary", "new"}


def test_the_demo_canary_is_the_project_detail_api_with_a_plan() -> None:
    routes = load_demo_config()["routes"]
    canaries = [route for route in routes if route["stage"] == "canary"]
    assert [route["name"] for route in canaries] == [CANARY_ROUTE]
    assert canaries[0]["match"] == "GET /api/projects/:id(.:format)"
    assert canaries[0]["canary"] == {
        "plan": {"steps": [5, 25, 50, 100], "interval_s": 10, "min_requests": 10}
    }


def test_demo_config_reads_the_legacy_apps_session() -> None:
    rails = load_demo_config()["rails"]
    assert rails == {
        "cookie": SESSION_COOKIE,
        "secret_key_base_env": SECRET_KEY_BASE_ENV,
        "key_digest": "sha1",
        "serializer": "json",
        "user_id": "user_id",
    }


def _example_request(match: str) -> tuple[str, str]:
    methods, pattern = match.split(" ", 1)
    path = pattern.replace("(.:format)", ".json").replace(":id", "1")
    return methods.split("|")[0], path.replace("*path", "projects.csv")


@pytest.mark.parametrize("route", load_demo_config()["routes"], ids=lambda route: route["name"])
def test_every_demo_route_exists_on_its_backends(
    legacy_url: str, new_url: str, route: dict[str, str]
) -> None:
    method, path = _example_request(route["match"])
    if route["stage"] in ("legacy", "shadow", "canary"):
        assert httpx.request(method, legacy_url + path, trust_env=False).status_code != 404
    if route["stage"] in ("shadow", "canary", "new"):
        # 401: the route needs the identity token only the gateway gives (test_demo_identity.py).
        response = httpx.request(method, new_url + path, trust_env=False)
        assert response.status_code in (200, 401)


def test_run_demo_names_a_busy_port(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        gateway_port, new_port = free_ports(2)
        exit_code = run_demo(gateway_port=gateway_port, legacy_port=port, new_port=new_port)
    assert exit_code == 1
    assert f"port {port} for the legacy app is already in use" in capsys.readouterr().err


def test_run_demo_sends_traffic_through_the_real_gateway(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway_port, legacy_port, new_port, admin_port = free_ports(4)
    exit_code = run_demo(
        gateway_port, legacy_port, new_port, rate_per_s=10, duration_s=2.0, admin_port=admin_port
    )
    out = capsys.readouterr().out
    assert exit_code == 0, out
    assert f"http://127.0.0.1:{gateway_port}/api/projects.json" in out
    assert f"http://127.0.0.1:{admin_port}/.well-known/jwks.json" in out
    # The dashboard and a way in: the demo's write token (tests/e2e/test_demo_live.py logs in
    # with one made the same way).
    assert re.search(
        rf"^  dashboard +http://127\.0\.0\.1:{admin_port}/ +\(log in with the demo's write "
        r"token:\n +stk_[A-Za-z0-9_-]{43} \)$",
        out,
        re.MULTILINE,
    ), out
    assert f"http://127.0.0.1:{gateway_port}/api/me" in out
    assert "Ctrl-C to stop" in out
    assert re.search(r"by backend: .*legacy x \d+.*new x \d+", out), out
    # How to watch the canary and break it, with the runner's own config path and ports.
    config = re.search(r"gateway config +(\S+/demo\.yaml)$", out, re.MULTILINE)
    assert config is not None, out
    # The same path every run on this port, so an exported STRANGLER_CONFIG keeps working.
    assert config[1] == str(demo_dir(gateway_port) / "demo.yaml")
    assert f"  . {sys.prefix}/bin/activate   # puts `strangler` on PATH\n" in out
    assert f"  export STRANGLER_CONFIG={config[1]}   # every strangler command" in out
    assert f"canary: strangler rollout status {CANARY_ROUTE}\n" in out
    assert f"--config {config[1]}" not in out
    assert "5, 25, 50 and 100 % of users, one step per healthy 10 s interval" in out
    chaos_url = f"http://127.0.0.1:{new_port}{CHAOS_PATH}"
    assert (
        f'break it: curl -X POST {chaos_url} -d \'{{"mode":"fail"}}\' '
        "-H 'content-type: application/json'\n"
    ) in out
    assert re.search(rf"canary: +{re.escape(CANARY_ROUTE)}: .*legacy x \d+", out), out
    # Identity sessions are a small share of the mix; when any ran, none of their checks failed.
    assert "failed x" not in out or re.search(r"identity: .* failed x 0$", out, re.MULTILINE), out


def test_run_demo_starts_the_new_app_in_the_chaos_mode_asked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway_port, legacy_port, new_port, admin_port = free_ports(4)
    exit_codes: list[int] = []
    demo = threading.Thread(
        target=lambda: exit_codes.append(
            run_demo(
                gateway_port, legacy_port, new_port, rate_per_s=5, duration_s=3.0,
                admin_port=admin_port, api_rate_per_s=0, chaos=ChaosMode.SLOW,
            )
        )
    )  # fmt: skip
    demo.start()
    try:
        mode = _wait_for_json(f"http://127.0.0.1:{new_port}{CHAOS_PATH}")["mode"]
    finally:
        demo.join(timeout=60)
    out = capsys.readouterr().out
    assert (mode, exit_codes) == ("slow", [0]), out
    assert "The new app started in chaos mode slow" in out
    assert "and none extra to the canary" in out


def _wait_for_json(url: str, timeout_s: float = 30.0) -> dict[str, Any]:
    deadline_s = time.monotonic() + timeout_s
    while time.monotonic() < deadline_s:
        with contextlib.suppress(httpx.TransportError):
            response = httpx.get(url, timeout=1.0, trust_env=False)
            if response.status_code == 200:
                body: dict[str, Any] = response.json()
                return body
        time.sleep(0.05)
    raise AssertionError(f"no 200 from {url} within {timeout_s} s")


def test_run_demo_refuses_an_unknown_chaos_mode_before_starting_anything(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CHAOS_ENV, "sometimes")
    gateway_port, legacy_port, new_port, admin_port = free_ports(4)
    exit_code = run_demo(gateway_port, legacy_port, new_port, admin_port=admin_port)
    captured = capsys.readouterr()
    assert exit_code == 1
    assert (
        f"error: {CHAOS_ENV}: chaos mode 'sometimes' is not one of ok, slow, fail" in captured.err
    )
    assert "stopping" not in captured.out


def test_the_written_demo_config_works_from_a_shell_without_the_demo_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The banner's commands run in another terminal, where the runner's variable is not set.
    monkeypatch.delenv(SECRET_KEY_BASE_ENV, raising=False)
    path = write_demo_config(tmp_path, demo_config(*free_ports(4)))
    secret = tmp_path / SECRET_KEY_BASE_FILE
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert secret.read_text(encoding="utf-8").strip() == DEMO_SECRET_KEY_BASE
    assert DEMO_SECRET_KEY_BASE not in path.read_text(encoding="utf-8")
    for command in (["diffs"], ["status"], ["rollout", "status", CANARY_ROUTE]):
        done = run_cli(*command, "--config", str(path))
        assert done.returncode == 0, (command, done.stderr)
    # A secret the user exported is the one both the legacy app and the gateway use.
    monkeypatch.setenv(SECRET_KEY_BASE_ENV, "a" * 128)
    write_demo_config(tmp_path, demo_config(*free_ports(4)))
    assert secret.read_text(encoding="utf-8").strip() == "a" * 128
