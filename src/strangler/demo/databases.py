"""The demo apps' databases: one SQLite file each in the demo's folder, and the sync job that
copies legacy's projects into the new app's table, as a team's CDC pipeline or nightly job would.

Legacy's `projects` table is what Rails makes of `rails generate model Project name owner
status:integer` with `enum status: {active: 0, archived: 1}`: the enum is an integer, times are
DATETIME(6) text in UTC. The new app's table renames `name` to `title` and `owner` to
`owner_email`, keeps the enum as text (`state`), and writes times as ISO 8601 with a Z. The
demo config's `data:` section maps one onto the other, so `strangler data diff` finds them equal
until the sync misses something, and it does: like many a hand-written sync job, it copies every
row but never deletes one, so a project deleted on legacy stays in the new table (the demo's
planted data bug; the diff reports it as missing_in_legacy).

Rules: the legacy app is the only writer of legacy's file and the sync job the only writer of
the new one; each write is one short transaction, so a diff reading either file sees whole rows.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from strangler.demo.seed import Project

LEGACY_DATABASE = "legacy.sqlite3"
NEW_DATABASE = "new.sqlite3"
# The legacy app finds its database file here (the runner sets it; unset, the app has none).
LEGACY_DATABASE_ENV = "STRANGLER_DEMO_LEGACY_DATABASE"
SYNC_INTERVAL_S = 1.0
ENUM_STATUS = {0: "active", 1: "archived"}

_LEGACY_SCHEMA = """CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY, name VARCHAR NOT NULL, owner VARCHAR NOT NULL,
    status INTEGER NOT NULL DEFAULT 0, created_at DATETIME(6) NOT NULL,
    updated_at DATETIME(6) NOT NULL)"""
_NEW_SCHEMA = """CREATE TABLE IF NOT EXISTS projects (
    id INTEGER PRIMARY KEY, title TEXT NOT NULL, owner_email TEXT NOT NULL,
    state TEXT NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL)"""


def _rails_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _iso_time(text: str) -> str:
    moment = datetime.fromisoformat(text).replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, timeout=5.0)


class LegacyDatabase:
    """The legacy app's `projects` table; `save` and `delete` mirror each write of its store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"<LegacyDatabase {self.path}>"

    def create(self, projects: Iterable[Project]) -> None:
        """The table with exactly `projects` in it (the app's seed, at its start)."""
        with _connect(self.path) as conn:
            conn.execute(_LEGACY_SCHEMA)
            conn.execute("DELETE FROM projects")
            conn.executemany(_UPSERT, [_legacy_row(project) for project in projects])
        conn.close()

    def save(self, project: Project) -> None:
        with _connect(self.path) as conn:
            conn.execute(_UPSERT, _legacy_row(project))
        conn.close()

    def delete(self, project_id: int) -> None:
        with _connect(self.path) as conn:
            conn.execute("DELETE FROM projects WHERE id = ?", (project_id,))
        conn.close()


_UPSERT = (
    "INSERT OR REPLACE INTO projects (id, name, owner, status, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


def _legacy_row(project: Project) -> tuple[object, ...]:
    return (
        project.id,
        project.name,
        project.owner,
        project.status,
        _rails_time(project.created_at),
        _rails_time(project.updated_at),
    )


def sync_once(legacy: Path, new: Path) -> int:
    """Copy legacy's projects into the new app's table, renamed and converted; the rows copied.
    Rows deleted on legacy are left alone (the planted bug). A missing legacy file (the app not
    started yet) copies nothing."""
    if not legacy.is_file():
        return 0
    source = sqlite3.connect(f"file:{legacy}?mode=ro", uri=True, timeout=5.0)
    try:
        rows = source.execute(
            "SELECT id, name, owner, status, created_at, updated_at FROM projects"
        ).fetchall()
    finally:
        source.close()
    copied = [
        (key, name, owner, ENUM_STATUS.get(status, str(status)), _iso_time(c), _iso_time(u))
        for key, name, owner, status, c, u in rows
    ]
    with _connect(new) as conn:
        conn.execute(_NEW_SCHEMA)
        conn.executemany("INSERT OR REPLACE INTO projects VALUES (?, ?, ?, ?, ?, ?)", copied)
    conn.close()
    return len(copied)


class SyncJob:
    """A thread that runs `sync_once` every `interval_s` until `stop()`."""

    def __init__(self, legacy: Path, new: Path, interval_s: float = SYNC_INTERVAL_S) -> None:
        self.legacy = legacy
        self.new = new
        self.interval_s = interval_s
        self.runs = 0
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-sync", daemon=True)

    def __repr__(self) -> str:
        return f"<SyncJob {self.legacy.name} -> {self.new.name}: {self.runs} runs>"

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        sync_once(self.legacy, self.new)
        self.runs += 1
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                sync_once(self.legacy, self.new)
            except sqlite3.Error:
                # A locked or half-written file: the next run copies again.
                continue
            self.runs += 1

    def stop(self) -> None:
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
