"""SQLite's side of the canonical spellings: Python functions registered on each connection,
which read SQLite's loosely typed values the way the other engines' SQL reads typed ones.

Rules: each function gives exactly the text dialects.py's SQL gives on MySQL and PostgreSQL for
the same value (tests/unit/test_data_bisect.py holds them to it).
"""

from __future__ import annotations

import decimal
import hashlib
import sqlite3
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

from strangler.data.dialects import TIMESTAMP_FORMAT


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
