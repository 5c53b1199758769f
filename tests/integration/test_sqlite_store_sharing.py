"""The SQLite store shared by several stores in one process (a worker's, the admin API's, the
analyzer's) and by CLI processes: a CLI that opens and closes it never deletes the -wal and -shm
files the gateway still uses, so both keep seeing each other's writes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from strangler.control.stores import SqliteShadowStore

CHILD = """
import sys, time
from strangler.control.stores import SqliteShadowStore
store = SqliteShadowStore(sys.argv[1])
# True when it could take the lease: it did not see the parent's.
print(store.try_lease(sys.argv[2], "child", 60.0, time.time()))
store.close()
"""


def _child_takes(path: Path, lease: str) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), lease],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout.strip() == "True"


def test_a_cli_closing_the_store_leaves_the_gateways_files_and_writes_alone(
    tmp_path: Path,
) -> None:
    path = tmp_path / "strangler.db"
    first = SqliteShadowStore(path)
    second = SqliteShadowStore(path)  # a second store in the same process
    try:
        assert first.try_lease("before", "parent", 60.0, time.time())
        second.state_version()
        assert not _child_takes(path, "before")
        # The child closed its store; the parent's WAL must still be the file on disk.
        assert Path(f"{path}-wal").exists()
        assert Path(f"{path}-shm").exists()
        assert second.try_lease("after", "parent", 60.0, time.time())
        assert not _child_takes(path, "after")
    finally:
        second.close()
        first.close()


def test_a_new_store_file_is_the_owners_alone(tmp_path: Path) -> None:
    path = tmp_path / "strangler.db"
    store = SqliteShadowStore(path)
    store.close()
    assert path.stat().st_mode & 0o077 == 0
    path.chmod(0o644)
    SqliteShadowStore(path).close()
    assert path.stat().st_mode & 0o777 == 0o600
