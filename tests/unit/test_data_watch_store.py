"""The DataWatchStore contract (the watch's position, counters and drift records), run against
SQLite on a real file and PostgreSQL on a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from strangler.control import data_watch
from strangler.control.data_watch import DriftUpdate, TableWatchDelta
from strangler.control.state import Store
from strangler.control.stores import PostgresShadowStore, SqliteShadowStore


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SqliteShadowStore(tmp_path / "control.db")
    else:
        opened = PostgresShadowStore(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


def drifted(key: str, at: float) -> DriftUpdate:
    return DriftUpdate("items", key, at, "different", {"name": ["a", "b"]})


def test_drift_is_kept_once_updated_in_place_and_resolved(store: Store) -> None:
    assert store.watch_position("pg") is None
    store.save_watch(
        "pg", '{"lsn": "0/1"}', [drifted("7", 10.0)], [TableWatchDelta("items", 3, 1.5, 10.0)], 10.0
    )
    store.save_watch("pg", '{"lsn": "0/2"}', [drifted("7", 20.0)], [], 20.0)
    position = store.watch_position("pg")
    assert position is not None and position.position == '{"lsn": "0/2"}'
    (record,) = store.drift("items")
    assert (record.key, record.first_seen, record.last_checked) == ("7", 10.0, 20.0)
    status = store.watch_statuses()["items"]
    assert (status.checked, status.lag_s, status.open_drift, status.example_key) == (3, 1.5, 1, "7")
    store.save_watch("pg", '{"lsn": "0/3"}', [DriftUpdate("items", "7", 30.0)], [], 30.0)
    assert store.drift("items") == []
    (resolved,) = store.drift("items", is_open=False)
    assert resolved.resolved_at == 30.0
    assert store.watch_statuses()["items"].open_drift == 0
    store.forget_watch("pg")
    assert store.watch_positions() == []


def test_drift_past_the_cap_is_counted_not_kept(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(data_watch, "KEEP_DRIFT_PER_TABLE", 2)
    from strangler.control.stores import data_watch_sql

    monkeypatch.setattr(data_watch_sql, "KEEP_DRIFT_PER_TABLE", 2)
    store.save_watch("s", "{}", [drifted("1", 1.0), drifted("2", 2.0)], [], 2.0)
    store.save_watch("s", "{}", [DriftUpdate("items", "1", 3.0), drifted("3", 4.0)], [], 4.0)
    # The resolved record made room; now both kept records are open.
    assert [record.key for record in store.drift("items")] == ["2", "3"]
    store.save_watch("s", "{}", [drifted("4", 5.0)], [], 5.0)
    status = store.watch_statuses()["items"]
    assert (status.open_drift, status.untracked, status.untracked_at) == (2, 1, 5.0)
