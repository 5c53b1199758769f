"""Files that hold secrets are the owner's alone: the SQLite shadow store (with its WAL and
shared-memory files) is created mode 0600 whatever the umask, and a Rails secret_key_base file
that other users can read is refused with a ConfigError naming file, line and field."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.control.store import RouteDelta
from strangler.control.stores.sqlite import SqliteShadowStore
from strangler.errors import ConfigError
from strangler.runtime.snapshot_build import load_snapshot

SUFFIXES = ("", "-wal", "-shm")


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: files get exactly the mode they are created with."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def _modes(database: Path) -> dict[str, int]:
    return {
        suffix or "db": stat.S_IMODE(Path(f"{database}{suffix}").stat().st_mode)
        for suffix in SUFFIXES
    }


@pytest.mark.usefixtures("open_umask")
def test_a_new_store_and_its_wal_files_are_mode_0600(tmp_path: Path) -> None:
    database = tmp_path / "strangler.db"
    store = SqliteShadowStore(database)
    try:
        delta = RouteDelta(route="r", mirrored=1, compared=1, equal=1, different=0, dropped={})
        store.apply((delta,), now=100.0)
        # The pool keeps a connection open: the WAL and its index are there.
        assert _modes(database) == {"db": 0o600, "-wal": 0o600, "-shm": 0o600}
    finally:
        store.close()


@pytest.mark.usefixtures("open_umask")
def test_a_store_left_readable_by_others_is_tightened_on_open(tmp_path: Path) -> None:
    database = tmp_path / "strangler.db"
    SqliteShadowStore(database).close()
    # Another process holds the database open in WAL mode, so all three files exist.
    other = sqlite3.connect(database, isolation_level=None)
    try:
        other.execute("PRAGMA journal_mode = WAL")
        other.execute("CREATE TABLE IF NOT EXISTS t (x)")
        for suffix in SUFFIXES:
            os.chmod(f"{database}{suffix}", 0o644)
        SqliteShadowStore(database).close()
        assert _modes(database) == {"db": 0o600, "-wal": 0o600, "-shm": 0o600}
    finally:
        other.close()


def _rails_config(tmp_path: Path, secret_mode: int) -> Path:
    secret = tmp_path / "secret_key_base"
    secret.write_text("ab" * 64 + "\n")
    secret.chmod(secret_mode)
    config = tmp_path / "strangler.yaml"
    config.write_text(
        "backends:\n"
        '  legacy: {url: "http://127.0.0.1:3000"}\n'
        '  new: {url: "http://127.0.0.1:8080"}\n'
        "rails:\n"
        "  cookie: _app_session\n"
        "  secret_key_base_file: secret_key_base\n"
    )
    return config


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_secret_key_base_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    config = _rails_config(tmp_path, mode)
    with pytest.raises(ConfigError) as caught:
        load_snapshot(config)
    error = caught.value
    assert (error.path, error.line, error.field) == (str(config), 6, "rails.secret_key_base_file")
    assert f"readable by other users (mode {mode:o})" in error.message
    assert f"chmod 600 {tmp_path / 'secret_key_base'}" in error.message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_a_secret_key_base_file_of_the_owner_alone_is_used(tmp_path: Path, mode: int) -> None:
    snapshot = load_snapshot(_rails_config(tmp_path, mode))
    assert snapshot.bridge is not None
