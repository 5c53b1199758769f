"""The compiled JSON access log line: the same fields as AccessLog's JSON format, and every
target that could need escaping or redaction sent to the access log's slow path."""

from __future__ import annotations

import orjson
import pytest

from strangler.config import DEFAULT_REDACT
from strangler.observe.access_line import AccessLines
from strangler.observe.access_log import AccessLog, AccessLogSettings

FIELDS = [
    "ts", "request_id", "trace_id", "client", "method", "path", "route", "stage", "side",
    "status", "bytes_in", "bytes_out", "duration_ms", "upstream_ms", "canary_reason", "shadow",
    "user", "fault",
]  # fmt: skip


def _lines(tmp_path_name: str = "/dev/null") -> AccessLines:
    log = AccessLog(AccessLogSettings(path=tmp_path_name, redact=tuple(DEFAULT_REDACT)))
    assert log.lines is not None
    return log.lines


def _line(lines: AccessLines, target: bytes, **changes: object) -> dict[str, object]:
    values: dict[str, object] = {
        "request_id": b"4bf92f3577b34da6a3ce929d0e0e4736",
        "trace_id": b"",
        "client": b"127.0.0.1",
        "method": b"GET",
        "target": target,
        "route": "projects.show",
        "stage": "canary",
        "side": "new",
        "status": 201,
        "bytes_in": 12_345,
        "bytes_out": 7,
        "duration_s": 0.0123456,
        "upstream_s": -1.0,
        "canary_reason": "canary_new",
        "user": "42",
    } | changes
    lines.add(**values)  # type: ignore[arg-type]
    parsed: dict[str, object] = orjson.loads(lines.pending.pop())
    return parsed


def test_a_line_has_every_field_in_order_with_its_type() -> None:
    line = _line(_lines(), b"/projects/7.json")
    assert list(line) == FIELDS
    assert line["path"] == "/projects/7.json"
    assert line["trace_id"] is None and line["upstream_ms"] is None and line["shadow"] is None
    assert (line["status"], line["bytes_in"], line["bytes_out"]) == (201, 12_345, 7)
    assert line["duration_ms"] == 12.345
    assert (line["side"], line["stage"], line["canary_reason"], line["user"]) == (
        "new",
        "canary",
        "canary_new",
        "42",
    )
    assert str(line["ts"]).endswith("Z") and len(str(line["ts"])) == len("2026-12-07T04:38:50.123Z")


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/search?page=2&password=hunter2", "/search?page=2&password=[FILTERED]"),
        (b'/a"b\\c', '/a"b\\c'),
        (b"/caf\xe9", "/caf\xe9"),
        (b"/reset/eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc", "/reset/[FILTERED]"),
        # A Rails signed message ("/" is a base64 character: the whole run goes).
        (b"/x/" + b"A" * 20 + b"--" + b"b" * 20, "[FILTERED]"),
        (b"/plain-path_with.dots~and%20escapes", "/plain-path_with.dots~and%20escapes"),
    ],
)
def test_targets_that_may_need_it_are_escaped_and_redacted(target: bytes, expected: str) -> None:
    assert _line(_lines(), target)["path"] == expected


def test_the_bound_drops_and_counts() -> None:
    log = AccessLog(AccessLogSettings(path="/dev/null"), max_pending=2)
    lines = log.lines
    assert lines is not None
    for _ in range(5):
        lines.add(
            b"", b"", b"c", b"GET", b"/", "r", "legacy", "legacy", 200, 0, 0, 0.0, -1.0, None, None
        )
    assert (len(lines.pending), lines.dropped, log.dropped_lines) == (2, 3, 3)
