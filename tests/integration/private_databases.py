"""Database servers of a test module's own, set up for change capture: PostgreSQL with
wal_level = logical, MariaDB with its binary log in row format.

The machine's shared servers run with the defaults a user's fresh machine has (wal_level =
replica, log_bin off) and are left so; these start in a temporary folder, on free ports, and
are removed after. Without the server binaries the tests skip, saying so, unless
STRANGLER_REQUIRE_POSTGRES / STRANGLER_REQUIRE_MARIADB is set: then they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pymysql
import pytest

from tests.postgres import PrivatePostgres, _free_port

MARIADB_SERVER = Path("/usr/sbin/mariadbd")
MARIADB_INSTALL = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"


def _missing(reason: str, variable: str) -> None:
    if os.environ.get(variable):
        pytest.fail(reason)
    pytest.skip(reason)


class LogicalPostgres(PrivatePostgres):
    """A private PostgreSQL whose changes can be decoded (wal_level = logical)."""

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off "
            "-c wal_level=logical -c max_replication_slots=8 -c max_wal_senders=8"
        )
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "30", "start",
                  "-l", str(self.folder / "server.log"))  # fmt: skip


@contextmanager
def logical_postgres() -> Iterator[str]:
    """A running private PostgreSQL with wal_level = logical; yields its admin URL."""
    if not sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        _missing(
            "no PostgreSQL server binaries under /usr/lib/postgresql (Debian package "
            "postgresql): the data watch tests against PostgreSQL are skipped",
            "STRANGLER_REQUIRE_POSTGRES",
        )
    server = LogicalPostgres().init()
    try:
        server.start()
        try:
            yield server.url
        finally:
            server.stop()
    finally:
        server.remove()


@contextmanager
def binlog_mariadb() -> Iterator[str]:
    """A running private MariaDB with its binary log in row format; yields its admin URL."""
    if not MARIADB_SERVER.exists() or not Path(MARIADB_INSTALL).exists():
        _missing(
            "no MariaDB server binaries (/usr/sbin/mariadbd, mariadb-install-db; Debian package "
            "mariadb-server): the data watch tests against MariaDB are skipped",
            "STRANGLER_REQUIRE_MARIADB",
        )
    # Straight under /tmp, owned by `mysql` when run as root (mariadbd would not run as root
    # without --user, and its files are better not root's).
    folder = Path(tempfile.mkdtemp(prefix="strangler-mariadb-"))
    data = folder / "data"
    socket_path = folder / "mariadb.sock"
    port = _free_port()
    user = ["--user=mysql"] if os.geteuid() == 0 else []
    if os.geteuid() == 0:
        shutil.chown(folder, "mysql", "mysql")
    process: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run(
            [MARIADB_INSTALL, f"--datadir={data}", "--auth-root-authentication-method=normal",
             "--skip-test-db", "--no-defaults", *user],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        log = (folder / "server.log").open("wb")
        process = subprocess.Popen(
            [str(MARIADB_SERVER), "--no-defaults", f"--datadir={data}", f"--port={port}",
             "--bind-address=127.0.0.1", f"--socket={socket_path}", f"--pid-file={folder}/pid",
             "--log-bin=binlog", "--binlog-format=ROW", "--binlog-row-image=FULL",
             "--server-id=1", "--skip-name-resolve", "--innodb-buffer-pool-size=32M",
             "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=0",
             "--sync-binlog=0", *user],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"mysql://root@127.0.0.1:{port}/mysql"
        deadline = time.monotonic() + 60
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=port, user="root", connect_timeout=2).close()
                break
            except pymysql.Error:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = (folder / "server.log").read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"mariadbd did not start: {tail}") from None
                time.sleep(0.1)
        yield url
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)


def create_postgres_database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def create_mariadb_database(admin_url: str, name: str) -> str:
    base = admin_url.rsplit("/", 1)[0]
    with pymysql.connect(**_mysql_args(admin_url)) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    return f"{base}/{name}"


def _mysql_args(url: str) -> dict[str, object]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return {
        "host": parts.hostname,
        "port": parts.port,
        "user": parts.username or "root",
        "password": parts.password or "",
        "database": parts.path.lstrip("/") or None,
        "autocommit": True,
        "charset": "utf8mb4",
    }


def mariadb_connect(url: str) -> pymysql.Connection:
    return pymysql.connect(**_mysql_args(url))  # type: ignore[arg-type]
