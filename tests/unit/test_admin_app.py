"""The admin app's failure answers, driven in-process over ASGI: what a broken view or an unusable
key ring looks like to a client (a problem+json, never a traceback).

The running gateway's admin listener is covered by tests/integration/test_admin.py; these are
the failures a real process can't be made to show on demand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from strangler.admin import create_admin_app
from strangler.config import parse_config
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import build_snapshot

SECRET_VAR = "STRANGLER_UNIT_SECRET_KEY_BASE"
CONFIG = f"""\
backends:
  legacy: {{url: "http://127.0.0.1:3000"}}
  new: {{url: "http://127.0.0.1:8080"}}
rails:
  cookie: _app_session
  secret_key_base_env: {SECRET_VAR}
identity:
  keys_path: keys.json
"""


class RunningView:
    """A gateway that is up, on `snapshot`."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.is_draining = False


class BrokenView:
    """A gateway whose drain state can't be read: a bug surfacing as an exception."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    @property
    def is_draining(self) -> bool:
        raise RuntimeError("secret internals: /etc/strangler/private")


def _get(view: RunningView | BrokenView, path: str) -> httpx.Response:
    async def run() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_admin_app(view), raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            return await client.get(path)

    return asyncio.run(run())


def _snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Snapshot:
    monkeypatch.setenv(SECRET_VAR, "ab" * 64)
    source = tmp_path / "strangler.yaml"
    return build_snapshot(parse_config(CONFIG, str(source)), source=str(source))


def test_an_unexpected_exception_is_a_500_problem_without_its_details(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    response = _get(BrokenView(_snapshot(tmp_path, monkeypatch)), "/readyz")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json() == {
        "type": "about:blank",
        "title": "Internal Server Error",
        "status": 500,
        "detail": "unexpected error in the admin API; see the gateway's log",
    }
    assert "secret internals" not in response.text
    assert "Traceback" not in response.text


def test_an_unusable_key_ring_is_a_503_problem_and_its_reason_stays_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    keys_path = tmp_path / "keys.json"
    keys_path.write_text("{}")
    keys_path.chmod(0o644)  # refused: a ring others can read
    response = _get(RunningView(_snapshot(tmp_path, monkeypatch)), "/.well-known/jwks.json")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == "the identity key ring cannot be read"
    assert str(keys_path) not in response.text
    assert any("readable by other users" in record.getMessage() for record in caplog.records)


def test_the_jwks_heals_once_the_key_ring_is_usable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_path = tmp_path / "keys.json"
    keys_path.write_text("{}")
    keys_path.chmod(0o644)
    view = RunningView(_snapshot(tmp_path, monkeypatch))

    async def run() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=create_admin_app(view))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            before = await client.get("/.well-known/jwks.json")
            keys_path.unlink()  # the next request creates a fresh ring
            after = await client.get("/.well-known/jwks.json")
            return before.status_code, after.status_code

    assert asyncio.run(run()) == (503, 200)
