"""The demo's data section: the legacy app writes its projects to SQLite, the demo's sync job
copies them into the new app's table, and `strangler data diff` over the demo config's `data:`
compares the two files (renamed columns, the status enum as text, two spellings of time)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from strangler.cli.main import app
from strangler.demo.databases import (
    LEGACY_DATABASE,
    LEGACY_DATABASE_ENV,
    NEW_DATABASE,
    LegacyDatabase,
    SyncJob,
    sync_once,
)
from strangler.demo.legacy_app import create_legacy_app
from strangler.demo.runner import demo_config, write_demo_config
from strangler.demo.seed import seed_projects
from tests.integration.demo_servers import free_ports, serve
from tests.integration.test_demo_apps import _client, _log_in


def data_diff(config: Path) -> tuple[int, dict[str, Any]]:
    done = CliRunner().invoke(app, ["data", "diff", "--config", str(config), "--json"])
    assert done.exit_code in (0, 1), done.stderr
    (table,) = json.loads(done.stdout)["tables"]
    return done.exit_code, table


def rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT * FROM projects ORDER BY id").fetchall()
    conn.close()
    return found


def test_the_demo_databases_diff_equal_until_legacy_changes(tmp_path: Path) -> None:
    legacy, new = tmp_path / LEGACY_DATABASE, tmp_path / NEW_DATABASE
    LegacyDatabase(legacy).create(seed_projects())
    assert sync_once(legacy, new) == 5
    config = write_demo_config(tmp_path, demo_config(*free_ports(4)))
    code, table = data_diff(config)
    assert (code, table["rows_legacy"], table["rows_new"], table["complete"]) == (0, 5, 5, True)
    assert (table["different"], table["missing_in_new"], table["missing_in_legacy"]) == (0, 0, 0)
    # Archived without touching updated_at (Rails' update_column), and not synced yet: the
    # diff maps legacy's integer through the enum transform and names the column.
    with sqlite3.connect(legacy) as conn:
        conn.execute("UPDATE projects SET status = 1 WHERE id = 2")
    conn.close()
    code, table = data_diff(config)
    assert code == 1
    assert table["samples"]["different"] == [
        {"key": 2, "columns": {"status": ["archived", "active"]}}
    ]
    # The sync copies the change, and leaves a row deleted on legacy in place: its planted bug.
    LegacyDatabase(legacy).delete(3)
    sync_once(legacy, new)
    code, table = data_diff(config)
    assert (code, table["different"], table["samples"]["missing_in_legacy"]) == (1, 0, [3])


def test_the_legacy_app_writes_every_project_change_to_its_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / LEGACY_DATABASE
    monkeypatch.setenv(LEGACY_DATABASE_ENV, str(database))
    with serve(create_legacy_app(), "/up") as url, _client(url) as client:
        assert [row[:4] for row in rows(database)] == [
            (p.id, p.name, p.owner, 0) for p in seed_projects()
        ]
        headers = {"x-csrf-token": _log_in(client, "grace@example.com")}
        created = client.post("/api/projects.json", json={"name": "Ledger"}, headers=headers)
        assert created.status_code == 201
        assert rows(database)[-1][:4] == (6, "Ledger", "grace@example.com", 0)
        renamed = client.patch("/api/projects/6", json={"name": "Ledger v2"}, headers=headers)
        assert renamed.status_code == 200
        assert rows(database)[-1][1] == "Ledger v2"
        assert client.delete("/api/projects/1", headers=headers).status_code == 204
        assert [row[0] for row in rows(database)] == [2, 3, 4, 5, 6]


def test_the_sync_job_copies_renamed_and_stops(tmp_path: Path) -> None:
    legacy, new = tmp_path / LEGACY_DATABASE, tmp_path / NEW_DATABASE
    LegacyDatabase(legacy).create(seed_projects())
    job = SyncJob(legacy, new, interval_s=0.01)
    job.start()
    try:
        first = rows(new)[0]
        assert first[:4] == (1, "Website redesign", "ada@example.com", "active")
        assert first[4] == "2024-01-15T09:30:17.000000Z"
        assert job.is_running
    finally:
        job.stop()
    assert not job.is_running and job.runs >= 1
