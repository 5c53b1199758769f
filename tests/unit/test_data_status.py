"""Where each table's parity stands: the report `progress`, GET /api/v1/data and the gate share,
read from a real SQLite store, and the admin resource driven in-process over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from strangler.admin import create_admin_app
from strangler.admin.auth import require_read
from strangler.admin.store_access import store_dependency
from strangler.cli.progress import _data_text
from strangler.config import parse_config
from strangler.control.data_runs import DataRun
from strangler.control.data_watch import DriftUpdate, TableWatchDelta
from strangler.control.stores import SqliteShadowStore
from strangler.data.status import data_report
from strangler.runtime.snapshot_build import build_snapshot

CONFIG = """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - {name: projects.index, match: "GET /projects"}
data:
  legacy: {url: "mysql://root@127.0.0.1:3306/legacy"}
  new: {url: "postgresql://127.0.0.1:5432/new"}
  tables:
    - {name: projects, key: id, routes: ["projects.*"]}
    - {name: users, key: id}
"""
NOW = 1_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteShadowStore]:
    opened = SqliteShadowStore(tmp_path / "control.db")
    opened.add_data_run(DataRun("projects", NOW - 60, 1.5, 5000, 4999, 1, 0, 2, True))
    opened.add_data_run(DataRun("retired", NOW - 60, 0.1, 3, 3, 0, 0, 0, True))
    yield opened
    opened.close()


def test_every_configured_table_then_the_ones_only_the_store_knows(
    store: SqliteShadowStore,
) -> None:
    report = data_report(parse_config(CONFIG, "s.yaml"), store.data_statuses(), now=NOW)
    assert [(e["table"], e["configured"]) for e in report] == [
        ("projects", True),
        ("users", True),
        ("retired", False),
    ]
    projects, users, retired = report
    assert projects["last_run"]["different"] == 2
    assert projects["last_complete_at"] == NOW - 60
    assert "found 1 missing in new, 2 different" in projects["blocks_new"]
    assert (users["last_run"], users["blocks_new"].startswith("never diffed")) == (None, True)
    assert retired["blocks_new"] is None
    assert _data_text(projects).startswith(
        "1 missing in new, 2 different (5000 rows legacy, 4999 new; complete); blocks new:"
    )
    assert _data_text(retired) == "equal (3 rows legacy, 3 new; complete)"


def test_the_admin_api_lists_the_last_run_per_table(
    store: SqliteShadowStore, tmp_path: Path
) -> None:
    config_path = tmp_path / "strangler.yaml"
    config_path.write_text(CONFIG)

    class View:
        snapshot = build_snapshot(parse_config(CONFIG, str(config_path)), source=str(config_path))
        is_draining = False

    app = create_admin_app(View())
    # Authentication has its own tests; this one is about the resource.
    app.dependency_overrides[require_read] = lambda: None
    app.dependency_overrides[store_dependency] = lambda: store

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            return await client.get("/api/v1/data")

    # What `data watch` keeps: two keys of projects drifted.
    drift = [
        DriftUpdate("projects", key, NOW, "different", {"title": ["a", "b"]}) for key in ("7", "9")
    ]
    store.save_watch("s", "{}", drift, [TableWatchDelta("projects", 40, 3.5, NOW)], NOW)
    response = asyncio.run(get())
    assert response.status_code == 200
    tables = response.json()["tables"]
    assert [entry["table"] for entry in tables] == ["projects", "users", "retired"]
    assert tables[0]["watch"] == {
        "checked": 40,
        "lag_s": 3.5,
        "last_checked_at": NOW,
        "open_drift": 2,
        "example_key": "7",
        "untracked": 0,
        "drift": [
            {
                "key": key,
                "kind": "different",
                "columns": {"title": ["a", "b"]},
                "first_seen": NOW,
                "last_checked": NOW,
                "resolved_at": None,
            }
            for key in ("7", "9")
        ],
    }
    assert "`data watch` found 2 keys drifted (e.g. key 7)" in tables[0]["blocks_new"]
    assert (tables[1]["watch"], tables[2]["watch"]) == (None, None)
    assert "watch: 40 keys checked, lag 3.5 s, 2 open drift; blocks new:" in _data_text(tables[0])
    assert tables[0]["last_run"]["rows_new"] == 4999
