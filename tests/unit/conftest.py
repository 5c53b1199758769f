"""Fixtures of the store contract suites: each test runs against SQLite on a real file and
PostgreSQL on a fresh database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.control.state import Store
from strangler.control.stores import PostgresShadowStore, SqliteShadowStore


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Where one adapter's store lives: ("sqlite", a file path) or ("postgresql", a URL)."""
    if request.param == "sqlite":
        return ("sqlite", str(tmp_path / "control.db"))
    return ("postgresql", request.getfixturevalue("postgres_url"))


def open_location(location: tuple[str, str]) -> Store:
    kind, where = location
    return SqliteShadowStore(where) if kind == "sqlite" else PostgresShadowStore(where)


@pytest.fixture
def store(location: tuple[str, str]) -> Iterator[Store]:
    opened = open_location(location)
    yield opened
    opened.close()
