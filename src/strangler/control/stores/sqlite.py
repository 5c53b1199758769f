"""SQLite adapter for the ShadowStore port: one file shared by every worker process and the CLI.

The statements are `SqlShadowStore`'s (core.py); this module opens the file and runs them.

Rules:
- Blocking. Call from a worker thread, never from the event loop.
- Open one store per process, after fork: a pooled connection must never cross a fork.
- Concurrency: WAL (readers never block the writer), `busy_timeout` (a writer waits for the lock
  instead of failing), and every write transaction is BEGIN IMMEDIATE (takes the write lock up
  front, so a read-then-write can't deadlock with another writer and return SQLITE_BUSY).
- Writes are additive UPSERTs, so concurrent flushes from several workers merge exactly.
- The schema is created or upgraded on open with the Alembic migrations shipped in
  `strangler/control/migrations`, inside one BEGIN IMMEDIATE transaction.
- The file and its `-wal` and `-shm` files are mode 0600: they hold difference examples and
  admin token hashes. The file is created so before SQLite opens it, whatever the umask, and
  SQLite gives the other two the database's mode when it creates them; files an older version
  left readable by others are tightened on open (when this user owns them).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import time
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    create_engine,
    event,
    func,
    literal_column,
)
from sqlalchemy.dialects.sqlite import Insert, insert
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from strangler.control.store import StoreUnavailable
from strangler.control.stores.core import SqlShadowStore
from strangler.control.stores.schema import upgrade
from strangler.control.stores.sql_work import T, Work

# A flush waits this long for another process's write lock before giving up. Flushes are a few
# milliseconds each, so 5 s only runs out when something is really stuck.
BUSY_TIMEOUT_MS = 5000

_BEGIN_OPTION = "strangler_sqlite_begin"
FILE_MODE = 0o600
# SQLite's write-ahead log and its shared-memory index, beside the database file.
COMPANION_SUFFIXES = ("-wal", "-shm")


def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling issues a deferred BEGIN lazily; turn it off and let
    # _on_begin issue the BEGIN we choose (the documented SQLAlchemy recipe for SQLite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL is durable against application crashes; only power loss can lose
        # the last flushes, which are counters we can afford to lose.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


def _make_private(path: Path) -> None:
    """Create the database file mode 0600 if it is missing (an empty file is a new database to
    SQLite); tighten it and its companions when others could read them.

    An existing file is never opened here: POSIX record locks belong to the process, and
    closing any descriptor of the file drops all of them (sqlite.org/howtocorrupt.html §2.2).
    A second store opened in a process that already holds one (the worker's, the admin API's,
    the analyzer's) would otherwise unlock the first, and the next process to close the store
    would take itself for the last user and delete the -wal and -shm files in use.
    """
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreUnavailable(f"shadow store {path}: {exc}") from exc
    for name in (str(path), *(f"{path}{suffix}" for suffix in COMPANION_SUFFIXES)):
        # A missing companion is created by SQLite, with the database's mode.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            _restrict(name)


def _restrict(name: str) -> None:
    """Take the group's and others' permissions away if this user owns the file."""
    info = os.stat(name)
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077 and info.st_uid == os.geteuid():
        os.chmod(name, mode & 0o700)


class SqliteShadowStore(SqlShadowStore):
    """ShadowStore on one SQLite file, safe for many processes writing at once."""

    def __init__(self, path: str | Path, *, max_examples_per_path: int = 5) -> None:
        super().__init__(max_examples_per_path=max_examples_per_path)
        self.path = Path(path)
        _make_private(self.path)
        self._engine: Engine = create_engine(f"sqlite:///{self.path}")
        event.listen(self._engine, "connect", _on_connect)
        event.listen(self._engine, "begin", _on_begin)
        try:
            self._open()
        except DatabaseError as exc:
            self._engine.dispose()
            # A file that is not a SQLite database ("file is not a database"): every command
            # that opens the store reports it as it reports a locked or missing one.
            raise StoreUnavailable(f"shadow store {self.path}: {exc.orig}") from exc
        except BaseException:
            self._engine.dispose()
            raise

    def _open(self) -> None:
        # Two workers opening a new file at once race on switching it to WAL, and SQLite
        # answers that race with "database is locked" without waiting on busy_timeout. Retry
        # for as long as a write would wait (measured: 48 of 60 fresh opens by two forked
        # workers failed before this loop).
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._write(upgrade)
                return
            except StoreUnavailable as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                self._engine.dispose()
                time.sleep(0.02)

    def __repr__(self) -> str:
        return f"<SqliteShadowStore {self.path}>"

    def _write(self, work: Work[T]) -> T:
        try:
            with self._engine.connect() as plain:
                conn = plain.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
                with conn.begin():
                    return work(conn)
        except (OperationalError, sqlite3.OperationalError) as exc:
            raise StoreUnavailable(f"shadow store {self.path}: {exc}") from exc

    def _read(self, work: Work[T]) -> T:
        try:
            with self._engine.connect() as conn, conn.begin():
                return work(conn)
        except (OperationalError, sqlite3.OperationalError) as exc:
            raise StoreUnavailable(f"shadow store {self.path}: {exc}") from exc

    def _upsert(self, table: Table) -> Insert:
        return insert(table)

    def _greatest(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        # SQLite's max() with two arguments is the scalar max, not the aggregate.
        return func.max(a, b)

    def _least(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        return func.min(a, b)

    def _json_add(self, table: str, column: str) -> ColumnElement[str]:
        return literal_column(
            "(SELECT json_group_object(key, total) FROM (SELECT key, sum(value) AS total FROM ("
            f"SELECT key, value FROM json_each({table}.{column}) UNION ALL "
            f"SELECT key, value FROM json_each(excluded.{column})) GROUP BY key))"
        )

    def close(self) -> None:
        self._engine.dispose()
