"""Fixtures shared by unit and integration tests: a PostgreSQL server and a fresh database on it
for each test (see tests/postgres.py for where the server is and when its tests skip)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from strangler import native
from tests.postgres import PrivatePostgres, create_database, drop_database, require_server


def pytest_report_header() -> str:
    # Said once at the top: a stale build runs the sources in pure Python (strangler/native.py).
    stale = native.stale_sources()
    return "hot path: " + ("sources (the compiled build is stale)" if stale else "as built")


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """The PostgreSQL maintenance database; skips the test (loudly) when there is no server."""
    return require_server()


@pytest.fixture
def postgres_url(postgres_admin_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    url = create_database(postgres_admin_url)
    yield url
    drop_database(postgres_admin_url, url)


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of this test's own, started; stopped (if still up) and removed
    afterwards."""
    server = PrivatePostgres().init()
    try:
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):
            server.stop()
        server.remove()
