"""A PostgreSQL server for tests, and throwaway databases on it.

The server is STRANGLER_TEST_POSTGRES (a libpq URL of a maintenance database, with a user that
may CREATE DATABASE), by default the local one: postgresql://postgres@127.0.0.1:5432/postgres.
When it can't be reached, tests that need it skip and say why, unless STRANGLER_REQUIRE_POSTGRES
is set (CI should set it): then they fail, so a missing server can't pass for a green run.

Databases are named `strangler_test_<random hex>`, created from template0, and dropped WITH
(FORCE), so a gateway child that has not exited yet can't keep one alive.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

ADMIN_URL = os.environ.get(
    "STRANGLER_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def require_server() -> str:
    """The maintenance database's URL once the server answered; skips (or fails) otherwise."""
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=3, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        reason = (
            f"PostgreSQL not reachable at {ADMIN_URL} ({' '.join(str(exc).split())}): "
            "PostgreSQL adapter tests skipped. Start the server (see the README) or point "
            "STRANGLER_TEST_POSTGRES at one."
        )
        if os.environ.get("STRANGLER_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return ADMIN_URL


def create_database(admin_url: str) -> str:
    """Create an empty database; returns its postgresql:// URL."""
    name = f"strangler_test_{secrets.token_hex(6)}"
    # template0: CREATE DATABASE from template1 fails while anyone else is connected to it.
    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        try:
            # An English collation, as most production databases have, rather than the server's
            # C.UTF-8 here: it orders text differently from SQLite, which the adapter must undo.
            conn.execute(create + sql.SQL(" LOCALE_PROVIDER icu ICU_LOCALE 'en'"))
        except psycopg.errors.FeatureNotSupported:  # a server built without ICU
            conn.execute(create)
    info = psycopg.conninfo.conninfo_to_dict(admin_url)
    user = info.get("user", "postgres")
    host = info.get("host", "127.0.0.1")
    port = info.get("port", "5432")
    password = f":{info['password']}" if info.get("password") else ""
    return f"postgresql://{user}{password}@{host}:{port}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


class PrivatePostgres:
    """A PostgreSQL server of one test's own (initdb in a temporary folder, a free port on
    127.0.0.1), so the test may stop and restart it under a running gateway. Runs as the
    `postgres` user when the tests run as root (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.bindir = _postgres_bindir()
        # Straight under /tmp: pytest's temporary folders are 0700 root, which `postgres`
        # could not enter.
        folder = Path(tempfile.mkdtemp(prefix="strangler-pg-"))
        self.folder = folder
        self.data = folder / "data"
        self.port = _free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {done.stdout}{done.stderr}")

    def init(self) -> PrivatePostgres:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "30", "start",
                  "-l", str(self.folder / "server.log"))  # fmt: skip

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _postgres_bindir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        reason = (
            "no PostgreSQL server binaries under /usr/lib/postgresql (Debian package "
            "postgresql): the store-outage tests, which stop their own server, are skipped"
        )
        if os.environ.get("STRANGLER_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
