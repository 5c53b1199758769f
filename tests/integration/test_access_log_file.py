"""The access log's writer thread on real files: stop() flushes, reopen() follows logrotate,
a file it cannot write is counted and reported once, stdout gets whole lines."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import orjson
import pytest

from strangler.observe.access_log import AccessEntry, AccessLog, AccessLogSettings
from tests.integration.probes import wait_until

ENTRY = AccessEntry(
    ts=1796618330.123,
    request_id="r-0",
    trace_id="",
    client="127.0.0.1",
    method="GET",
    path="/api/projects/7",
    route="projects.show",
    stage="legacy",
    side="legacy",
    status=200,
    bytes_in=0,
    bytes_out=12,
    duration_ms=1.5,
    upstream_ms=1.25,
    canary_reason=None,
    shadow=None,
    user=None,
)


def _submit(access_log: AccessLog, *request_ids: str) -> None:
    for request_id in request_ids:
        access_log.submit(ENTRY._replace(request_id=request_id))


def _request_ids(path: Path) -> list[str]:
    return [orjson.loads(line)["request_id"] for line in path.read_text().splitlines()]


def test_stop_writes_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log = AccessLog(AccessLogSettings(str(path)))
    access_log.start()
    ids = [f"r-{n}" for n in range(3000)]
    _submit(access_log, *ids)
    access_log.stop()
    assert _request_ids(path) == ids
    assert (access_log.written, access_log.dropped, access_log.write_errors) == (3000, 0, 0)


def test_writer_writes_without_being_stopped(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log = AccessLog(AccessLogSettings(str(path)))
    access_log.start()
    _submit(access_log, "a", "b")
    wait_until(lambda: access_log.written == 2, "two lines written", timeout_s=5.0)
    assert _request_ids(path) == ["a", "b"]
    access_log.stop()


def test_new_file_is_private_and_an_existing_one_is_appended_to(tmp_path: Path) -> None:
    new, existing = tmp_path / "new.log", tmp_path / "existing.log"
    existing.write_text('{"request_id":"before"}\n')
    for path in (new, existing):
        access_log = AccessLog(AccessLogSettings(str(path)))
        access_log.start()
        _submit(access_log, "r-1")
        access_log.stop()
    assert stat.S_IMODE(new.stat().st_mode) == 0o600
    assert _request_ids(new) == ["r-1"]
    assert _request_ids(existing) == ["before", "r-1"]


def test_reopen_after_logrotate_renamed_the_file(tmp_path: Path) -> None:
    path, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    access_log = AccessLog(AccessLogSettings(str(path)))
    access_log.start()
    _submit(access_log, "a", "b")
    wait_until(lambda: access_log.written == 2, "the lines before rotation", timeout_s=5.0)
    os.rename(path, rotated)
    access_log.reopen()
    _submit(access_log, "c", "d", "e")
    wait_until(lambda: access_log.written == 5, "the lines after rotation", timeout_s=5.0)
    access_log.stop()
    assert _request_ids(rotated) == ["a", "b"]
    assert _request_ids(path) == ["c", "d", "e"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_without_reopen_lines_follow_the_renamed_file(tmp_path: Path) -> None:
    path, rotated = tmp_path / "access.log", tmp_path / "access.log.1"
    access_log = AccessLog(AccessLogSettings(str(path)))
    access_log.start()
    _submit(access_log, "a")
    wait_until(lambda: access_log.written == 1, "the first line", timeout_s=5.0)
    os.rename(path, rotated)
    _submit(access_log, "b")
    access_log.stop()
    assert _request_ids(rotated) == ["a", "b"]
    assert not path.exists()


def test_write_errors_are_counted_reported_once_and_recovered_from(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "logs"
    path = directory / "access.log"
    access_log = AccessLog(AccessLogSettings(str(path)))
    caplog.set_level(logging.WARNING, logger="strangler.access_log")
    access_log.start()
    _submit(access_log, "lost-1")
    wait_until(lambda: access_log.write_errors == 1, "the first failed write", timeout_s=5.0)
    _submit(access_log, "lost-2")
    wait_until(lambda: access_log.write_errors == 2, "the second failed write", timeout_s=5.0)
    directory.mkdir()
    _submit(access_log, "kept")
    wait_until(lambda: access_log.written == 1, "a write once the directory is back", 5.0)
    access_log.stop()
    assert _request_ids(path) == ["kept"]
    reports = [r for r in caplog.records if r.name == "strangler.access_log"]
    assert len(reports) == 1
    assert str(path) in reports[0].getMessage()
    assert "2 write errors" in repr(access_log)


def test_stdout_gets_whole_lines(capsys: pytest.CaptureFixture[str]) -> None:
    access_log = AccessLog(AccessLogSettings("stdout", format="combined"))
    access_log.start()
    _submit(access_log, "a", "b")
    access_log.reopen()
    access_log.stop()
    line = (
        '127.0.0.1 - - [07/Dec/2026:04:38:50 +0000] "GET /api/projects/7 HTTP/1.1" 200 12 "-" "-"'
    )
    assert capsys.readouterr().out.splitlines() == [line, line]
    assert access_log.written == 2
