"""`strangler keys show|rotate` on a real key ring file, run as the real command.

The Rails secret_key_base environment variable the configs name is never set here: managing
keys must not need the session secret.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from strangler.identity.tokens import KeyRingFile

SECRET_VAR = "STRANGLER_TEST_UNSET_SECRET_KEY_BASE"
TTL_S = 30
CONFIG = f"""\
listen: 127.0.0.1:0
backends:
  legacy: {{url: "http://127.0.0.1:3000"}}
  new: {{url: "http://127.0.0.1:8080"}}
rails:
  cookie: _app_session
  secret_key_base_env: {SECRET_VAR}
identity:
  keys_path: ring/keys.json
  ttl_s: {TTL_S}
"""


def _strangler(*args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != SECRET_VAR}
    return subprocess.run(
        [sys.executable, "-m", "strangler", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=env,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    (tmp_path / "ring").mkdir()
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG)
    return path


def _keys_path(config: Path) -> Path:
    return config.parent / "ring" / "keys.json"


def _private_keys(path: Path) -> list[str]:
    return [key["private_key"] for key in orjson.loads(path.read_bytes())["keys"]]


def test_show_lists_each_key_and_never_a_private_key(config: Path) -> None:
    ring = KeyRingFile(_keys_path(config), max_token_ttl_s=TTL_S).ring
    active = ring.signing_key(time.time()).kid
    upcoming = ring.next_key()
    assert upcoming is not None

    result = _strangler("keys", "show", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert ["KID", "STATE", "PUBLISHED", "ACTIVATED", "RETIRED", "UNPUBLISHED"] in rows
    by_kid = {row[0]: row for row in rows if row and row[0] in (active, upcoming.kid)}
    assert by_kid[active][1] == "active"
    assert by_kid[upcoming.kid][1] == "next"
    assert "`strangler keys rotate` can activate the next key from " in result.stdout

    as_json = _strangler("keys", "show", "--config", str(config), "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = orjson.loads(as_json.stdout)
    assert document["path"] == str(_keys_path(config))
    assert document["max_token_ttl_s"] == TTL_S
    assert [(key["kid"], key["state"]) for key in document["keys"]] == [
        (active, "active"),
        (upcoming.kid, "next"),
    ]
    assert [key["kid"] for key in document["jwks"]["keys"]] == [active, upcoming.kid]
    assert all("d" not in key for key in document["jwks"]["keys"])
    for output in (result.stdout, as_json.stdout):
        assert "private_key" not in output
        assert not any(secret in output for secret in _private_keys(_keys_path(config)))


def test_show_without_a_key_ring_exits_1_and_creates_nothing(config: Path) -> None:
    result = _strangler("keys", "show", "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: no key ring at {_keys_path(config)} yet")
    assert not _keys_path(config).exists()


def test_rotate_activates_the_next_key_and_publishes_a_new_one(config: Path) -> None:
    keys_path = _keys_path(config)
    ring = KeyRingFile(
        keys_path, now=time.time() - 1000, max_token_ttl_s=TTL_S, publish_ahead_s=0
    ).ring
    old_active = ring.signing_key(time.time()).kid
    old_next = ring.next_key()
    assert old_next is not None

    result = _strangler("keys", "rotate", "--config", str(config))
    assert result.returncode == 0, result.stderr
    rotated = KeyRingFile(keys_path).ring
    new_next = rotated.next_key()
    assert new_next is not None
    assert rotated.signing_key(time.time()).kid == old_next.kid
    assert [key.kid for key in rotated.keys] == [old_active, old_next.kid, new_next.kid]
    lines = [line.split()[:2] for line in result.stdout.splitlines()[1:4]]
    assert lines == [["retired", old_active], ["active", old_next.kid], ["next", new_next.kid]]
    assert stat.S_IMODE(keys_path.stat().st_mode) == 0o600


def test_rotate_too_early_exits_1_saying_how_long_to_wait(config: Path) -> None:
    # A fresh ring: its next key is published 2 x ttl before it may sign.
    before = KeyRingFile(_keys_path(config), max_token_ttl_s=TTL_S).ring
    result = _strangler("keys", "rotate", "--config", str(config))
    assert result.returncode == 1
    match = re.search(r"rotate again in (\d+) s", result.stderr)
    assert match is not None, result.stderr
    assert 2 * TTL_S - 15 <= int(match.group(1)) <= 2 * TTL_S
    assert KeyRingFile(_keys_path(config)).ring == before


def test_rotate_creates_a_missing_ring_with_the_configured_ttl(config: Path) -> None:
    result = _strangler("keys", "rotate", "--config", str(config))
    # Created now, so its next key may not sign yet: nothing is rotated.
    assert result.returncode == 1
    assert "rotate again in" in result.stderr
    ring = KeyRingFile(_keys_path(config)).ring
    assert ring.max_token_ttl_s == TTL_S
    assert stat.S_IMODE(_keys_path(config).stat().st_mode) == 0o600


@pytest.mark.parametrize("command", ["show", "rotate"])
def test_keys_without_rails_exit_2(tmp_path: Path, command: str) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG.split("rails:", maxsplit=1)[0])
    result = _strangler("keys", command, "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: rails: not configured: ")
    assert not (tmp_path / "strangler-identity-keys.json").exists()


@pytest.mark.parametrize("command", ["show", "rotate"])
def test_keys_with_an_unusable_config_exit_2_naming_the_line(config: Path, command: str) -> None:
    config.write_text(CONFIG.replace(f"ttl_s: {TTL_S}", "ttl_s: 1"))
    result = _strangler("keys", command, "--config", str(config))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {config}:10: identity.ttl_s: ")
