"""A MariaDB (or MySQL) server for tests, and throwaway databases on it.

The server is STRANGLER_TEST_MARIADB (a mysql:// URL of a user that may CREATE DATABASE), by
default the local one: mysql://root@127.0.0.1:3306/test. When it can't be reached, tests that
need it skip and say why, unless STRANGLER_REQUIRE_MARIADB is set (CI should set it): then they
fail, so a missing server can't pass for a green run. Databases are named
`strangler_test_<random hex>`, in utf8mb4.
"""

from __future__ import annotations

import os
import secrets
from urllib.parse import urlsplit

import pymysql
import pytest

ADMIN_URL = os.environ.get("STRANGLER_TEST_MARIADB", "mysql://root@127.0.0.1:3306/test")


def connect(url: str = ADMIN_URL, *, database: str | None = None) -> pymysql.Connection:
    parts = urlsplit(url)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        database=database if database is not None else parts.path.lstrip("/") or None,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=3,
    )


def require_server() -> str:
    """The admin URL once the server answered; skips (or fails) otherwise."""
    try:
        with connect() as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    except pymysql.Error as exc:
        reason = (
            f"MariaDB not reachable at {ADMIN_URL} ({exc}): data parity tests against MariaDB "
            "skipped. Start the server or point STRANGLER_TEST_MARIADB at one."
        )
        if os.environ.get("STRANGLER_REQUIRE_MARIADB"):
            pytest.fail(reason)
        pytest.skip(reason)
    return ADMIN_URL


def create_database(admin_url: str) -> str:
    """Create an empty utf8mb4 database; returns its mysql:// URL."""
    name = f"strangler_test_{secrets.token_hex(6)}"
    with connect(admin_url) as conn, conn.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
    parts = urlsplit(admin_url)
    return f"{parts.scheme}://{parts.netloc}/{name}"


def drop_database(admin_url: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with connect(admin_url) as conn, conn.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
