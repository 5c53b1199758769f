"""The databases a data diff reads: one SQLAlchemy engine per side, and the one place their
driver errors are translated.

Rules:
- Connections are read-only sessions, and never retried or re-pinged: a connection that drops
  mid-run fails the run (a diff that silently restarted on a new snapshot would not be honest).
- Errors leave here as DataSourceError naming the side, never the URL's password.
- Importing this module connects to nothing.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from strangler.config import hide_password
from strangler.data.dialects import Dialect, MysqlDialect, PostgresDialect, SqliteDialect
from strangler.data.sqlite_functions import register_functions
from strangler.errors import StranglerError


class DataSourceError(StranglerError):
    """A database of the diff can't be reached or read; the message names the side."""


@dataclass(frozen=True, slots=True)
class Database:
    """One side of the diff: an engine and the SQL its dialect speaks."""

    side: str  # "legacy" or "new"
    engine: Engine
    dialect: Dialect
    shown_url: str  # the URL with its password masked

    def quote(self, name: str) -> str:
        """`name` or `schema.name` quoted for this engine."""
        preparer = self.engine.dialect.identifier_preparer
        return ".".join(preparer.quote(part) for part in name.split("."))

    def fetch(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Run one query in a read-only transaction and return its rows."""
        try:
            with self.engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), dict(params or {}))]
        except SQLAlchemyError as exc:
            raise self.error(exc) from exc

    def error(self, exc: BaseException) -> DataSourceError:
        """`exc` as a DataSourceError naming this side, its driver's first line, no password."""
        origin = getattr(exc, "orig", None) or exc
        detail = " ".join(str(origin).split())
        password = self.engine.url.password
        if password:
            detail = detail.replace(str(password), "***")
        if len(detail) > 300:
            detail = detail[:297] + "..."
        return DataSourceError(f"{self.side} database ({self.shown_url}): {detail}")

    def close(self) -> None:
        self.engine.dispose()


def open_database(side: str, url: str, *, source: str | Path, pool_size: int) -> Database:
    """An engine for a config's `data.legacy.url` or `data.new.url`; connects lazily.

    `source` is the config file: a relative sqlite:/// path is taken from its folder."""
    parts = urlsplit(url)
    shown = hide_password(url)
    scheme = parts.scheme.partition("+")[0]
    if scheme == "sqlite":
        path = Path(unquote(parts.path[1:]))
        if not path.is_absolute():
            path = Path(source).parent / path
        if not path.is_file():
            raise DataSourceError(f"{side} database ({shown}): no such file {path}")
        # Read-only, through a URI: a diff never writes, and never creates an empty file.
        engine = create_engine(
            f"sqlite:///file:{quote(str(path.resolve()))}?mode=ro&uri=true",
            pool_size=pool_size,
        )
        event.listen(engine, "connect", lambda conn, _record: register_functions(conn))
        return Database(side, engine, SqliteDialect(), shown)
    if scheme == "mysql":
        engine_url = make_url(url).set(drivername="mysql+pymysql")
        engine_url = _with_mysql_password(engine_url)
        engine = create_engine(
            engine_url,
            pool_size=pool_size,
            max_overflow=0,
            connect_args={
                "charset": "utf8mb4",
                "connect_timeout": 10,
            },
        )
        event.listen(engine, "connect", lambda conn, _record: _mysql_session(conn))
        return Database(side, engine, MysqlDialect(), shown)
    engine = create_engine(
        make_url(url).set(drivername="postgresql+psycopg"),
        pool_size=pool_size,
        max_overflow=0,
        connect_args={
            "connect_timeout": 10,
            "options": (
                "-c default_transaction_read_only=on -c TimeZone=UTC "
                "-c standard_conforming_strings=on"
            ),
        },
    )
    return Database(side, engine, PostgresDialect(), shown)


def _mysql_session(connection: Any) -> None:
    """UTC, so TIMESTAMP columns read as UTC; read-only, so a diff can never write."""
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION time_zone = '+00:00'")
        cursor.execute("SET SESSION TRANSACTION READ ONLY")
    connection.commit()


def _with_mysql_password(url: URL) -> URL:
    """The mysql client's password sources when the URL has none: $MYSQL_PWD, then the
    `password` of ~/.my.cnf's [client] group (only the password: the URL names the server)."""
    if url.password is not None:
        return url
    password = os.environ.get("MYSQL_PWD")
    if password is None:
        parser = configparser.ConfigParser(strict=False, allow_no_value=True)
        try:
            parser.read(Path.home() / ".my.cnf", encoding="utf-8")
        except (configparser.Error, OSError):
            return url
        value = parser.get("client", "password", fallback=None)
        password = value.strip("\"'") if value else None
    return url if password is None else url.set(password=password)


def split_name(name: str) -> tuple[str | None, str]:
    """`schema.table` -> ("schema", "table"); `table` -> (None, "table")."""
    schema, _, table = name.rpartition(".")
    return (schema or None, table)
