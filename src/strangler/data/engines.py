"""The databases a data diff reads, and the SQL each one needs to spell a row the same way.

Every value is turned *in SQL* into one canonical text (`canon`), so that equal data gives equal
text on MySQL/MariaDB, PostgreSQL and SQLite; a row's canonical texts are joined and hashed with
MD5 (RFC 1321), whose first 15 hex digits (60 bits) are read as an integer and summed over a
segment. A sum, not an XOR: two copies of one wrong row do not cancel out. Sums of 60-bit values
stay exact on every engine (MySQL's SUM of BIGINT UNSIGNED is DECIMAL, PostgreSQL's sum(bigint)
is numeric; SQLite gets an aggregate of its own, below).

Rules:
- Connections are read-only sessions, and never retried or re-pinged: a connection that drops
  mid-run fails the run (a diff that silently restarted on a new snapshot would not be honest).
- Errors leave here as DataSourceError naming the side, never the URL's password.
- Text keys compare byte-wise in UTF-8 (codepoint order) on every engine, as Python orders str,
  so a key range selects the same rows on both sides whatever the columns' collations.
"""

from __future__ import annotations

import configparser
import decimal
import enum
import hashlib
import os
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from strangler.config import hide_password
from strangler.errors import StranglerError

# One separator between a row's values, and a mark that tells NULL from every text: each
# non-NULL value is prefixed with "v", NULL is "n". U+001F (unit separator) does not occur in
# ordinary text, so values can't shift across the separator unnoticed.
SEPARATOR = "\x1f"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


class DataSourceError(StranglerError):
    """A database of the diff can't be reached or read; the message names the side."""


class Kind(enum.Enum):
    """How a column's values are spelled canonically (see README, "Data parity")."""

    INTEGER = "integer"
    BOOLEAN = "boolean"
    DECIMAL = "decimal"
    FLOAT = "float"
    # Zone-less: legacy's are in `legacy_timezone`, new's in UTC.
    TIMESTAMP = "timestamp"
    # Stored as an instant (PostgreSQL timestamptz, MySQL TIMESTAMP): read in UTC.
    TIMESTAMPTZ = "timestamptz"
    DATE = "date"
    TIME = "time"
    BINARY = "binary"
    TEXT = "text"


@dataclass(frozen=True, slots=True)
class Spelling:
    """How one column of one side turns into canonical text: its kind and the transform."""

    kind: Kind
    zone: str = "UTC"  # for Kind.TIMESTAMP
    places: int | None = None  # `decimal: N`
    as_bool: bool = False  # `bool: true` on an integer column
    mapping: Mapping[str, str] | None = None  # `map:`, applied to the canonical text


class Dialect(Protocol):
    """The SQL one engine needs; `col` and `table` arguments are quoted already."""

    name: str

    def canon(self, col: str, spelling: Spelling) -> str: ...

    def row_hash(self, parts: Sequence[str]) -> str: ...

    def hash_sum(self, expr: str) -> str: ...

    def key_cmp(self, col: str, *, is_text: bool) -> str: ...

    def param_cmp(self, name: str, *, is_text: bool) -> str: ...

    def int_bucket(self, col: str, low: int, width: int) -> str: ...

    def estimate_sql(self, table: str) -> str | None: ...


def _mapped(expr: str, mapping: Mapping[str, str] | None) -> str:
    if not mapping:
        return expr
    cases = " ".join(f"WHEN {_literal(k)} THEN {_literal(v)}" for k, v in mapping.items())
    return f"(CASE {expr} {cases} ELSE {expr} END)"


def _literal(value: str) -> str:
    # Standard SQL string literal; backslashes are doubled for MySQL's default sql_mode, and
    # a value with one is never produced by config validation for table or column names.
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _trimmed(expr: str) -> str:
    """Decimal text without trailing fractional zeros: 12.50 and 12.5 are one value."""
    return (
        f"(CASE WHEN INSTR({expr}, '.') > 0 THEN "
        f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {expr})) ELSE {expr} END)"
    )


class MysqlDialect:
    """MySQL/MariaDB. The session's time_zone is UTC, so TIMESTAMP columns read as UTC."""

    name = "mysql"

    def canon(self, col: str, spelling: Spelling) -> str:
        kind = spelling.kind
        if spelling.as_bool or kind is Kind.BOOLEAN:
            expr = f"(CASE WHEN {col} IS NULL THEN NULL WHEN {col} <> 0 THEN '1' ELSE '0' END)"
        elif spelling.places is not None:
            places = spelling.places
            expr = f"CAST(CAST(ROUND({col}, {places}) AS DECIMAL(65, {places})) AS CHAR)"
        elif kind is Kind.INTEGER:
            expr = f"CAST({col} AS CHAR)"
        elif kind is Kind.DECIMAL:
            expr = _trimmed(f"CAST({col} AS CHAR)")
        elif kind is Kind.FLOAT:
            expr = _trimmed(f"CAST(CAST({col} AS DECIMAL(65, 9)) AS CHAR)")
        elif kind is Kind.TIMESTAMP:
            at = (
                col
                if spelling.zone == "UTC"
                else f"CONVERT_TZ({col}, {_literal(spelling.zone)}, '+00:00')"
            )
            expr = f"DATE_FORMAT({at}, '%Y-%m-%d %H:%i:%s.%f')"
        elif kind is Kind.TIMESTAMPTZ:
            expr = f"DATE_FORMAT({col}, '%Y-%m-%d %H:%i:%s.%f')"
        elif kind is Kind.DATE:
            expr = f"DATE_FORMAT({col}, '%Y-%m-%d')"
        elif kind is Kind.TIME:
            expr = f"TIME_FORMAT({col}, '%H:%i:%s.%f')"
        elif kind is Kind.BINARY:
            expr = f"LOWER(HEX({col}))"
        else:
            expr = f"CONVERT({col} USING utf8mb4)"
        return _mapped(expr, spelling.mapping)

    def row_hash(self, parts: Sequence[str]) -> str:
        values = ", ".join(f"COALESCE(CONCAT('v', {part}), 'n')" for part in parts)
        return (
            f"CAST(CONV(SUBSTRING(MD5(CONCAT_WS({_literal(SEPARATOR)}, {values})), 1, 15), 16, 10)"
            " AS UNSIGNED)"
        )

    def hash_sum(self, expr: str) -> str:
        return f"SUM({expr})"

    def key_cmp(self, col: str, *, is_text: bool) -> str:
        return f"CAST(CONVERT({col} USING utf8mb4) AS BINARY)" if is_text else col

    def param_cmp(self, name: str, *, is_text: bool) -> str:
        return f"CAST(CONVERT(:{name} USING utf8mb4) AS BINARY)" if is_text else f":{name}"

    def int_bucket(self, col: str, low: int, width: int) -> str:
        return f"(({col} - {int(low)}) DIV {int(width)})"

    def estimate_sql(self, table: str) -> str | None:
        return (
            "SELECT TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
        )


class PostgresDialect:
    """PostgreSQL. Instants are converted to UTC explicitly, whatever the session's TimeZone."""

    name = "postgresql"

    def canon(self, col: str, spelling: Spelling) -> str:
        kind = spelling.kind
        if spelling.as_bool:
            expr = f"(CASE WHEN {col} IS NULL THEN NULL WHEN {col} <> 0 THEN '1' ELSE '0' END)"
        elif kind is Kind.BOOLEAN:
            expr = f"(CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN '1' ELSE '0' END)"
        elif spelling.places is not None:
            expr = f"round(({col})::numeric, {spelling.places})::text"
        elif kind is Kind.INTEGER:
            expr = f"({col})::text"
        elif kind is Kind.DECIMAL:
            expr = f"trim_scale({col})::text"
        elif kind is Kind.FLOAT:
            expr = f"trim_scale(round(({col})::numeric, 9))::text"
        elif kind is Kind.TIMESTAMP:
            zone = spelling.zone
            if zone.startswith("INTERVAL:"):
                zone = f"INTERVAL {_literal(zone.removeprefix('INTERVAL:'))}"
            else:
                zone = _literal(zone)
            at = (
                col
                if spelling.zone == "UTC"
                else f"(({col}) AT TIME ZONE {zone}) AT TIME ZONE 'UTC'"
            )
            expr = f"to_char({at}, 'YYYY-MM-DD HH24:MI:SS.US')"
        elif kind is Kind.TIMESTAMPTZ:
            expr = f"to_char(({col}) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        elif kind is Kind.DATE:
            expr = f"to_char({col}, 'YYYY-MM-DD')"
        elif kind is Kind.TIME:
            expr = f"to_char(TIMESTAMP '2000-01-01' + ({col}), 'HH24:MI:SS.US')"
        elif kind is Kind.BINARY:
            expr = f"encode({col}, 'hex')"
        else:
            expr = f"({col})::text"
        return _mapped(expr, spelling.mapping)

    def row_hash(self, parts: Sequence[str]) -> str:
        values = " || chr(31) || ".join(f"COALESCE('v' || {part}, 'n')" for part in parts)
        return f"('x' || substr(md5({values}), 1, 15))::bit(60)::bigint"

    def hash_sum(self, expr: str) -> str:
        return f"sum({expr})"

    def key_cmp(self, col: str, *, is_text: bool) -> str:
        return f'(({col})::text COLLATE "C")' if is_text else col

    def param_cmp(self, name: str, *, is_text: bool) -> str:
        return f'(CAST(:{name} AS text) COLLATE "C")' if is_text else f"CAST(:{name} AS bigint)"

    def int_bucket(self, col: str, low: int, width: int) -> str:
        return f"((({col})::bigint - {int(low)}) / {int(width)})"

    def estimate_sql(self, table: str) -> str | None:
        return "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:qualified)"


class SqliteDialect:
    """SQLite: the canonical spellings are Python functions registered on each connection
    (`register_functions`), which read SQLite's loosely typed values the way the other engines'
    SQL reads typed ones."""

    name = "sqlite"

    def canon(self, col: str, spelling: Spelling) -> str:
        if spelling.as_bool:
            kind = "boolean"
        elif spelling.places is not None:
            kind = f"decimal:{spelling.places}"
        else:
            kind = spelling.kind.value
        return _mapped(
            f"strangler_canon({col}, {_literal(kind)}, {_literal(spelling.zone)})", spelling.mapping
        )

    def row_hash(self, parts: Sequence[str]) -> str:
        values = " || char(31) || ".join(f"COALESCE('v' || {part}, 'n')" for part in parts)
        return f"strangler_hash60({values})"

    def hash_sum(self, expr: str) -> str:
        return f"strangler_sum({expr})"

    def key_cmp(self, col: str, *, is_text: bool) -> str:
        return f"({col} COLLATE BINARY)" if is_text else col

    def param_cmp(self, name: str, *, is_text: bool) -> str:
        return f":{name}"

    def int_bucket(self, col: str, low: int, width: int) -> str:
        return f"(({col} - {int(low)}) / {int(width)})"

    def estimate_sql(self, table: str) -> str | None:
        return None


def hash60(text_value: str) -> int:
    """The first 60 bits of MD5 of the UTF-8 text: what the SQL engines compute per row."""
    return int(hashlib.md5(text_value.encode("utf-8")).hexdigest()[:15], 16)


def canon_python(value: object, kind: str, zone: str) -> str | None:
    """SQLite's canonical spelling of one value (the same text the other engines' SQL makes)."""
    if value is None:
        return None
    if kind == "boolean":
        return "1" if _number(value) != 0 else "0"
    if kind.startswith("decimal:"):
        places = int(kind.partition(":")[2])
        quantum = decimal.Decimal(1).scaleb(-places)
        return str(_number(value).quantize(quantum, rounding=decimal.ROUND_HALF_UP))
    if kind == "integer":
        return str(int(_number(value)))
    if kind in ("decimal", "float"):
        number = _number(value)
        if kind == "float":
            number = number.quantize(decimal.Decimal("1e-9"), rounding=decimal.ROUND_HALF_UP)
        return _trim_decimal(f"{number:f}")
    if kind in ("timestamp", "timestamptz"):
        at = _datetime(value)
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC if kind == "timestamptz" else _zone(zone))
        return at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)
    if kind == "date":
        return str(value)[:10]
    if kind == "time":
        return time.fromisoformat(str(value)).strftime("%H:%M:%S.%f")
    if kind == "binary":
        return (
            bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) else str(value)
        )
    return str(value)


def _zone(zone: str) -> tzinfo:
    if zone == "UTC":
        return UTC
    if zone[:1] in "+-" and ":" in zone:
        hours, minutes = zone[1:].split(":")
        offset = timedelta(hours=int(hours), minutes=int(minutes))
        return timezone(-offset if zone[0] == "-" else offset)
    return ZoneInfo(zone)


def _number(value: object) -> decimal.Decimal:
    return (
        decimal.Decimal(str(value))
        if not isinstance(value, bytes)
        else decimal.Decimal(value.decode())
    )


def _trim_decimal(text_value: str) -> str:
    if "." in text_value:
        text_value = text_value.rstrip("0").rstrip(".")
    return "0" if text_value in ("-0", "") else text_value


def _datetime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    return datetime.fromisoformat(str(value))


class _Sum:
    """SQLite aggregate: an exact sum of 60-bit hashes (SQLite's own sum() overflows at 2**63),
    returned as text because sqlite3 cannot return integers past 64 bits."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int | None) -> None:
        if value is not None:
            self.total += value

    def finalize(self) -> str:
        return str(self.total)


def register_functions(connection: sqlite3.Connection) -> None:
    connection.create_function("strangler_canon", 3, canon_python, deterministic=True)
    connection.create_function("strangler_hash60", 1, hash60, deterministic=True)
    connection.create_aggregate("strangler_sum", 1, _Sum)  # type: ignore[arg-type]


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
            "options": "-c default_transaction_read_only=on -c TimeZone=UTC",
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
