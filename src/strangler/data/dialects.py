"""How each engine spells a value as canonical text, and a row as a 60-bit hash, in SQL.

Every value is turned *in SQL* into one canonical text (`canon`), so that equal data gives equal
text on MySQL/MariaDB, PostgreSQL and SQLite; a row's canonical texts are joined and hashed with
MD5 (RFC 1321), whose first 15 hex digits (60 bits) are read as an integer and summed over a
segment. A sum, not an XOR: two copies of one wrong row do not cancel out. Sums of 60-bit values
stay exact on every engine (MySQL's SUM of BIGINT UNSIGNED is DECIMAL, PostgreSQL's sum(bigint)
is numeric; SQLite gets an aggregate of its own, sqlite_functions.py).

Rules: pure (strings in, strings out). Text keys compare byte-wise in UTF-8 (codepoint order) on
every engine, as Python orders str, so a key range selects the same rows on both sides whatever
the columns' collations. Text from the config reaches SQL only through `literal`, which each
dialect spells so that no character in it is special.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

SEPARATOR = "\x1f"
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


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
    # Fractional second digits the column stores, when the schema says (MySQL DATETIME(6)).
    fsp: int | None = None
    # A DECIMAL whose other side has the same fixed scale: its printed text is canonical.
    is_printed_alike: bool = False


class Dialect(Protocol):
    """The SQL one engine needs; `col` and `table` arguments are quoted already."""

    name: str

    def canon(self, col: str, spelling: Spelling) -> str: ...

    def row_hash(self, parts: Sequence[str]) -> str: ...

    def hash_sum(self, expr: str) -> str: ...

    def key_cmp(self, col: str, *, is_text: bool) -> str: ...

    def param_cmp(self, name: str, *, is_text: bool) -> str: ...

    def int_bucket(self, col: str, low: int, width: int) -> str: ...

    def literal(self, value: str) -> str: ...

    def estimate_sql(self) -> str | None: ...


def _mapped(dialect: Dialect, expr: str, mapping: Mapping[str, str] | None) -> str:
    if not mapping:
        return expr
    cases = " ".join(
        f"WHEN {dialect.literal(k)} THEN {dialect.literal(v)}" for k, v in mapping.items()
    )
    return f"(CASE {expr} {cases} ELSE {expr} END)"


def _standard_literal(value: str) -> str:
    """SQL's string literal, where only the quote is special (PostgreSQL with
    standard_conforming_strings on, its default since 9.1 and set by engines.py; SQLite)."""
    return "'" + value.replace("'", "''") + "'"


def _trimmed(expr: str) -> str:
    """Decimal text without trailing fractional zeros: 12.50 and 12.5 are one value."""
    return (
        f"(CASE WHEN INSTR({expr}, '.') > 0 THEN "
        f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {expr})) ELSE {expr} END)"
    )


class MysqlDialect:
    """MySQL/MariaDB. The session's time_zone is UTC, so TIMESTAMP columns read as UTC."""

    name = "mysql"

    def literal(self, value: str) -> str:
        # As UTF-8 hex: backslashes are escapes in MySQL's default sql_mode and not with
        # NO_BACKSLASH_ESCAPES; hex means the same under both.
        return f"CONVERT(X'{value.encode().hex()}' USING utf8mb4)"

    def canon(self, col: str, spelling: Spelling) -> str:
        kind = spelling.kind
        if spelling.as_bool or kind is Kind.BOOLEAN:
            expr = f"(CASE WHEN {col} IS NULL THEN NULL WHEN {col} <> 0 THEN '1' ELSE '0' END)"
        elif spelling.places is not None:
            places = spelling.places
            expr = f"CAST(CAST(ROUND({col}, {places}) AS DECIMAL(65, {places})) AS CHAR)"
        elif kind is Kind.INTEGER or (kind is Kind.DECIMAL and spelling.is_printed_alike):
            expr = f"CAST({col} AS CHAR)"
        elif kind is Kind.DECIMAL:
            expr = _trimmed(f"CAST({col} AS CHAR)")
        elif kind is Kind.FLOAT:
            expr = _trimmed(f"CAST(CAST({col} AS DECIMAL(65, 9)) AS CHAR)")
        elif (
            kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ)
            and spelling.fsp == 6
            and (kind is Kind.TIMESTAMPTZ or spelling.zone == "UTC")
        ):
            # A DATETIME(6)/TIMESTAMP(6) reads as exactly DATE_FORMAT's canonical text, and CAST
            # costs a tenth of the whole row hash less on MariaDB (bench/bench_data.py).
            expr = f"CAST({col} AS CHAR)"
        elif kind is Kind.TIMESTAMP:
            at = (
                col
                if spelling.zone == "UTC"
                else f"CONVERT_TZ({col}, {self.literal(spelling.zone)}, '+00:00')"
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
        return _mapped(self, expr, spelling.mapping)

    def row_hash(self, parts: Sequence[str]) -> str:
        values = ", ".join(f"COALESCE(CONCAT('v', {part}), 'n')" for part in parts)
        digest = f"MD5(CONCAT_WS({self.literal(SEPARATOR)}, {values}))"
        return f"CAST(CONV(SUBSTRING({digest}, 1, 15), 16, 10) AS UNSIGNED)"

    def hash_sum(self, expr: str) -> str:
        return f"SUM({expr})"

    def key_cmp(self, col: str, *, is_text: bool) -> str:
        return f"CAST(CONVERT({col} USING utf8mb4) AS BINARY)" if is_text else col

    def param_cmp(self, name: str, *, is_text: bool) -> str:
        return f"CAST(CONVERT(:{name} USING utf8mb4) AS BINARY)" if is_text else f":{name}"

    def int_bucket(self, col: str, low: int, width: int) -> str:
        return f"(({col} - {int(low)}) DIV {int(width)})"

    def estimate_sql(self) -> str | None:
        return (
            "SELECT TABLE_ROWS FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = COALESCE(:schema, DATABASE()) AND TABLE_NAME = :table"
        )


class PostgresDialect:
    """PostgreSQL. Instants are converted to UTC explicitly, whatever the session's TimeZone."""

    name = "postgresql"

    def literal(self, value: str) -> str:
        return _standard_literal(value)

    def canon(self, col: str, spelling: Spelling) -> str:
        kind = spelling.kind
        if spelling.as_bool:
            expr = f"(CASE WHEN {col} IS NULL THEN NULL WHEN {col} <> 0 THEN '1' ELSE '0' END)"
        elif kind is Kind.BOOLEAN:
            expr = f"(CASE WHEN {col} IS NULL THEN NULL WHEN {col} THEN '1' ELSE '0' END)"
        elif spelling.places is not None:
            expr = f"round(({col})::numeric, {spelling.places})::text"
        elif kind is Kind.INTEGER or (kind is Kind.DECIMAL and spelling.is_printed_alike):
            expr = f"({col})::text"
        elif kind is Kind.DECIMAL:
            expr = f"trim_scale({col})::text"
        elif kind is Kind.FLOAT:
            expr = f"trim_scale(round(({col})::numeric, 9))::text"
        elif kind is Kind.TIMESTAMP:
            zone = spelling.zone
            if zone.startswith("INTERVAL:"):
                zone = f"INTERVAL {self.literal(zone.removeprefix('INTERVAL:'))}"
            else:
                zone = self.literal(zone)
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
        return _mapped(self, expr, spelling.mapping)

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

    def estimate_sql(self) -> str | None:
        return "SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(:qualified)"


class SqliteDialect:
    """SQLite: the canonical spellings are Python functions registered on each connection
    (`register_functions`), which read SQLite's loosely typed values the way the other engines'
    SQL reads typed ones."""

    name = "sqlite"

    def literal(self, value: str) -> str:
        return _standard_literal(value)

    def canon(self, col: str, spelling: Spelling) -> str:
        if spelling.as_bool:
            kind = "boolean"
        elif spelling.places is not None:
            kind = f"decimal:{spelling.places}"
        else:
            kind = spelling.kind.value
        canon = f"strangler_canon({col}, {self.literal(kind)}, {self.literal(spelling.zone)})"
        return _mapped(self, canon, spelling.mapping)

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

    def estimate_sql(self) -> str | None:
        return None
