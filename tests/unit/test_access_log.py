"""The access log's filter, bound, formats and redaction, on real files written by `stop()` (the
caller drains when no writer thread was started). The writer thread is tested in
tests/integration/test_access_log_file.py.
"""

from __future__ import annotations

import calendar
import itertools
import re
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest

from strangler.config import DEFAULT_REDACT
from strangler.observe.access_log import AccessEntry, AccessLog, AccessLogSettings
from strangler.shadow.redact import FILTERED

# 2026-12-07T04:38:50.123Z
TS = calendar.timegm((2026, 12, 7, 4, 38, 50)) + 0.123
ENTRY = AccessEntry(
    ts=TS,
    request_id="r-1",
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    client="203.0.113.9",
    method="GET",
    path="/api/projects/7?page=2",
    route="projects.show",
    stage="canary",
    side="new",
    status=200,
    bytes_in=0,
    bytes_out=512,
    duration_ms=12.34567,
    upstream_ms=10.0004,
    canary_reason="bucket",
    shadow=None,
    user="42",
)
JSON_KEYS = [
    *("ts", "request_id", "trace_id", "client", "method", "path", "route", "stage", "side"),
    *("status", "bytes_in", "bytes_out", "duration_ms", "upstream_ms", "canary_reason"),
    *("shadow", "user"),
]
# nginx's `combined`: $remote_addr - $remote_user [$time_local] "$request" $status
# $body_bytes_sent "$http_referer" "$http_user_agent"
COMBINED = re.compile(
    r"^(?P<remote_addr>\S+) - (?P<remote_user>\S+) "
    r"\[(?P<time_local>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<body_bytes_sent>\d+) '
    r'"(?P<http_referer>[^"]*)" "(?P<http_user_agent>[^"]*)"$'
)


def _written(
    tmp_path: Path,
    *entries: AccessEntry,
    format: Literal["json", "combined"] = "json",
    redact: tuple[str, ...] = DEFAULT_REDACT,
) -> list[str]:
    """The lines `entries` give once written (stop() without a writer thread writes them)."""
    path = tmp_path / "access.log"
    access_log = AccessLog(AccessLogSettings(str(path), format=format, redact=redact))
    for entry in entries:
        access_log.submit(entry)
    access_log.stop()
    assert access_log.written == len(entries)
    return path.read_text("utf-8").splitlines()


def _json_record(tmp_path: Path, entry: AccessEntry) -> dict[str, Any]:
    [line] = _written(tmp_path, entry)
    record: dict[str, Any] = orjson.loads(line)
    return record


@pytest.mark.parametrize(
    ("min_status", "min_duration_ms", "sample", "status", "duration_ms", "draw", "logged"),
    [
        # Both thresholds 0: `sample` applies to every answer, a 5xx too.
        (0, 0.0, 1.0, 200, 1.0, 0.999, True),
        (0, 0.0, 0.01, 503, 9000.0, 0.5, False),
        (0, 0.0, 0.01, 200, 1.0, 0.005, True),
        # Notable answers are always logged.
        (500, 1000.0, 0.01, 503, 1.0, 0.999, True),
        (500, 1000.0, 0.01, 500, 1.0, 0.999, True),
        (500, 1000.0, 0.01, 200, 1000.0, 0.999, True),
        (500, 1000.0, 0.0, 404, 4000.0, 0.0, True),
        # The rest are sampled.
        (500, 1000.0, 0.01, 499, 999.9, 0.999, False),
        (500, 1000.0, 0.01, 200, 5.0, 0.005, True),
        # A threshold of 0 is off, not "everything is notable".
        (500, 0.0, 0.0, 200, 60_000.0, 0.0, False),
        (0, 1000.0, 0.0, 503, 1.0, 0.0, False),
        (0, 1000.0, 1.0, 200, 1.0, 0.999, True),
    ],
)
def test_wants_logs_notable_answers_and_samples_the_rest(
    min_status: int,
    min_duration_ms: float,
    sample: float,
    status: int,
    duration_ms: float,
    draw: float,
    logged: bool,
) -> None:
    settings = AccessLogSettings(
        "stdout", min_status=min_status, min_duration_ms=min_duration_ms, sample=sample
    )
    access_log = AccessLog(settings, random=lambda: draw)
    assert access_log.wants(status, duration_ms) is logged


def test_all_5xx_all_slow_ones_and_one_percent_of_the_rest() -> None:
    draws = itertools.cycle(i / 1000 for i in range(1000))
    settings = AccessLogSettings("stdout", min_status=500, min_duration_ms=1000.0, sample=0.01)
    access_log = AccessLog(settings, random=lambda: next(draws))
    assert all(access_log.wants(status, 3.0) for status in range(500, 600))
    assert all(access_log.wants(200, 1000.0 + ms) for ms in range(100))
    assert sum(access_log.wants(200, 3.0) for _ in range(1000)) == 10


def test_json_line_has_every_field_in_order(tmp_path: Path) -> None:
    record = _json_record(tmp_path, ENTRY)
    assert list(record) == JSON_KEYS
    assert record == {
        "ts": "2026-12-07T04:38:50.123Z",
        "request_id": "r-1",
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "client": "203.0.113.9",
        "method": "GET",
        "path": "/api/projects/7?page=2",
        "route": "projects.show",
        "stage": "canary",
        "side": "new",
        "status": 200,
        "bytes_in": 0,
        "bytes_out": 512,
        "duration_ms": 12.346,
        "upstream_ms": 10.0,
        "canary_reason": "bucket",
        "shadow": None,
        "user": "42",
    }


def test_json_line_writes_null_for_what_is_unknown(tmp_path: Path) -> None:
    entry = ENTRY._replace(
        trace_id="", upstream_ms=None, canary_reason=None, shadow=None, user=None, side="gateway"
    )
    record = _json_record(tmp_path, entry)
    assert list(record) == JSON_KEYS
    assert {key: record[key] for key in ("trace_id", "upstream_ms", "canary_reason", "user")} == {
        "trace_id": None,
        "upstream_ms": None,
        "canary_reason": None,
        "user": None,
    }
    assert record["shadow"] is None


@pytest.mark.parametrize(
    ("ts", "iso"),
    [
        (TS, "2026-12-07T04:38:50.123Z"),
        (calendar.timegm((2026, 1, 1, 0, 0, 0)) + 0.0, "2026-01-01T00:00:00.000Z"),
        # Rounded to the millisecond, carried into the second.
        (calendar.timegm((2026, 12, 31, 23, 59, 59)) + 0.9996, "2027-01-01T00:00:00.000Z"),
    ],
)
def test_json_ts_is_iso_8601_utc_with_milliseconds(tmp_path: Path, ts: float, iso: str) -> None:
    assert _json_record(tmp_path, ENTRY._replace(ts=ts))["ts"] == iso


def test_combined_line_is_nginx_combined(tmp_path: Path) -> None:
    [line] = _written(tmp_path, ENTRY, format="combined")
    match = COMBINED.match(line)
    assert match is not None, line
    assert match.groupdict() == {
        "remote_addr": "203.0.113.9",
        "remote_user": "42",
        "time_local": "07/Dec/2026:04:38:50 +0000",
        "request": "GET /api/projects/7?page=2 HTTP/1.1",
        "status": "200",
        "body_bytes_sent": "512",
        "http_referer": "-",
        "http_user_agent": "-",
    }


def test_combined_line_without_user_writes_a_dash(tmp_path: Path) -> None:
    [line] = _written(tmp_path, ENTRY._replace(user=None, status=502), format="combined")
    assert line.startswith('203.0.113.9 - - [07/Dec/2026:04:38:50 +0000] "GET ')
    assert ' 502 512 "-" "-"' in line


def test_combined_line_escapes_like_nginx(tmp_path: Path) -> None:
    # The proxy decodes the target as latin-1: "\xe9" is the byte 0xE9 the client sent.
    entry = ENTRY._replace(path='/a"b\x01c\\d\x7f\xe9 "-" "x', user='u"1')
    [line] = _written(tmp_path, entry, format="combined")
    match = COMBINED.match(line)
    assert match is not None, line
    assert match["request"] == r"GET /a\x22b\x01c\x5Cd\x7F\xE9 \x22-\x22 \x22x HTTP/1.1"
    assert match["remote_user"] == r"u\x221"


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        (
            "/search?token=abc&page=2&password=x",
            f"/search?token={FILTERED}&page=2&password={FILTERED}",
        ),
        ("/plain/path", "/plain/path"),
        ("/s?page=2&sort=name", "/s?page=2&sort=name"),
        # Names are compared percent-decoded; what is written keeps the name as sent.
        ("/s?p%61ssword=x&q=1", f"/s?p%61ssword={FILTERED}&q=1"),
        ("/s?user%5Bpassword%5D=x", f"/s?user%5Bpassword%5D={FILTERED}"),
        ("/s?user[password_confirmation]=x", f"/s?user[password_confirmation]={FILTERED}"),
        ("/s?api-key=k&X-Api-Key=k", f"/s?api-key={FILTERED}&X-Api-Key={FILTERED}"),
        # `^code$` is a whole-name filter: an OAuth code, not a status code.
        ("/cb?code=abc&status_code=200", f"/cb?code={FILTERED}&status_code=200"),
        ("/s?a=1;session_id=x", f"/s?a=1;session_id={FILTERED}"),
        ("/s?flag&token=x&token=", f"/s?flag&token={FILTERED}&token={FILTERED}"),
        ("/s?next=/a?b=1&secret=s=s", f"/s?next=/a?b=1&secret={FILTERED}"),
        # Credential-shaped values are filtered whatever their name, in the path too.
        ("/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.sig", f"/reset/{FILTERED}"),
    ],
)
def test_path_query_secrets_are_filtered(tmp_path: Path, target: str, logged: str) -> None:
    assert _json_record(tmp_path, ENTRY._replace(path=target))["path"] == logged


def test_path_is_filtered_in_combined_format_too(tmp_path: Path) -> None:
    entry = ENTRY._replace(path="/search?token=abc&page=2&password=x")
    [line] = _written(tmp_path, entry, format="combined")
    assert '"GET /search?token=[FILTERED]&page=2&password=[FILTERED] HTTP/1.1"' in line


def test_without_filters_query_values_are_kept(tmp_path: Path) -> None:
    [line] = _written(tmp_path, ENTRY._replace(path="/s?token=abc"), redact=())
    assert orjson.loads(line)["path"] == "/s?token=abc"


def test_submit_beyond_max_pending_drops_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    access_log = AccessLog(AccessLogSettings(str(path)), max_pending=3)
    for n in range(5):
        access_log.submit(ENTRY._replace(request_id=f"r-{n}"))
    assert access_log.dropped == 2
    assert "3 pending, 0 written, 2 dropped" in repr(access_log)
    access_log.stop()
    assert [orjson.loads(line)["request_id"] for line in path.read_text().splitlines()] == [
        "r-0",
        "r-1",
        "r-2",
    ]
    assert "0 pending, 3 written, 2 dropped, 0 write errors" in repr(access_log)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        AccessLog(AccessLogSettings("stdout", format="csv"))  # type: ignore[arg-type]
