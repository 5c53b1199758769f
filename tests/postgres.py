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
