"""`print_match` on real config files: the route the table picks, its params and stage, and why
each earlier route missed, in text and JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from strangler.cli.route_match import print_match
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import load_snapshot

CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
default: legacy
routes:
  - name: projects.index
    match: "GET /projects(.:format)"
  # Without `(.:format)`, so `/projects/new.json` still reaches projects.new (the config
  # refuses a route an earlier one takes every request of).
  - name: projects.show
    match: "GET /projects/:id"
    stage: shadow
  - name: projects.new
    match: "GET /projects/new(.:format)"
  - name: projects.update
    match: "PATCH|PUT /projects/:id(.:format)"
    stage: new
  - name: api.projects.show
    match: "GET /api/projects/:id(.:format)"
    stage: canary
    canary:
      weight: 25
      group: api
      stickiness: ["header:X-User-Id"]
      segments: [{name: staff, header: {X-Role: [staff]}, weight: 100}]
  - name: status.head
    match: "HEAD /status"
  - name: status
    match: "GET /status"
  - name: reports
    match: "ANY /reports/*path"
    backend: new
"""


@pytest.fixture
def snapshot(tmp_path: Path) -> Snapshot:
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG)
    return load_snapshot(path)


def run_json(snapshot: Snapshot, request: str, capsys: pytest.CaptureFixture[str]) -> Any:
    assert print_match(snapshot, request, as_json=True) == 0
    return orjson.loads(capsys.readouterr().out)


def run_text(snapshot: Snapshot, request: str, capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert print_match(snapshot, request, as_json=False) == 0
    out: str = capsys.readouterr().out
    return out.splitlines()


def test_an_earlier_param_route_takes_a_later_literal_one(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(snapshot, "GET /projects/new?page=2", capsys)
    route = report["route"]
    assert (route["number"], route["name"], route["params"]) == (2, "projects.show", {"id": "new"})
    assert route["stage"] == "shadow"
    assert route["backend"] == "legacy"
    assert route["shadow"] == {"backend": "new", "is_copied": True}
    assert report["request"]["query"] == "page=2"
    assert report["path"] == "/projects/new"
    [index] = report["tried"]
    assert index["name"] == "projects.index"
    assert index["reason"] == "path: the path goes on after the pattern ends (`/new`)"


def test_text_names_the_route_its_params_stage_and_each_miss(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = run_text(snapshot, "PUT /projects/42.json", capsys)
    assert lines[:5] == [
        "PUT /projects/42.json",
        "-> route #4 projects.update: PATCH|PUT /projects/:id(.:format)",
        "   the first route, in file order, whose method and path match",
        "   params: id=42, format=json",
        "   stage new: backend `new` answers",
    ]
    misses = lines[lines.index("Tried first, in file order:") + 1 :]
    assert [line.split()[1] for line in misses] == [
        "projects.index",
        "projects.show",
        "projects.new",
    ]
    assert misses[0].endswith(
        "method PUT is not GET; path: the path goes on after the pattern ends (`/42.json`)"
    )
    assert misses[1].endswith(
        "method PUT is not GET; path: segment 2 `42.json` has a `.`, which `:id` never matches"
    )
    assert misses[2].endswith(
        "method PUT is not GET; path: segment 2 `42.json` does not fit `new.:format`"
    )


def test_an_unmatched_request_goes_to_the_default_and_every_route_says_why(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    # A param never holds a `.`: neither `1.2` nor `2.json` fits `:id(.:format)`.
    report = run_json(snapshot, "GET /projects/1.2.json", capsys)
    assert report["outcome"] == "default"
    assert report["route"] is None
    assert report["backend"] == "legacy"
    reasons = {miss["name"]: miss["reason"] for miss in report["tried"]}
    assert len(reasons) == 8
    assert reasons["projects.show"] == (
        "path: segment 2 `1.2.json` has a `.`, which `:id` never matches"
    )
    assert reasons["projects.update"] == (
        "method GET is not PATCH|PUT; path: segment 2 `1.2.json` does not fit `:id.:format`"
    )
    assert reasons["status"] == "path: segment 1 is `projects`, not `status`"
    assert reasons["reports"] == "path: segment 1 is `projects`, not `reports`"
    assert reasons["status.head"] == (
        "method GET is not HEAD; path: segment 1 is `projects`, not `status`"
    )


def test_normalize_routes_the_rewritten_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG.replace("default: legacy", "default: legacy\npath_policy: normalize"))
    lines = run_text(load_snapshot(path), "GET /projects//x/../7", capsys)
    assert lines[1] == "  routed as /projects/7 (path_policy normalize)"
    assert lines[2] == "-> route #2 projects.show: GET /projects/:id"


def test_unmatched_text_says_the_default_backend_answers(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = run_text(snapshot, "DELETE /nowhere", capsys)
    assert lines[1] == "-> no route matches: the default backend `legacy` answers"
    assert lines[3] == "Routes tried:"
    assert " ".join(lines[-1].split()) == (
        "#8 reports ANY /reports/*path path: segment 1 is `nowhere`, not `reports`"
    )


def test_canary_details(snapshot: Snapshot, capsys: pytest.CaptureFixture[str]) -> None:
    report = run_json(snapshot, "GET /api/projects/7", capsys)
    canary = report["route"]["canary"]
    assert canary == {
        "group": "api",
        "weight": 25.0,
        "new_backend": "new",
        "legacy_backend": "legacy",
        "stickiness": ["header:x-user-id"],
        "segments": ["staff"],
        "shadow_backend": None,
    }
    lines = run_text(snapshot, "GET /api/projects/7", capsys)
    assert (
        "   canary: 25% of users to `new`, the rest to `legacy` (group api, sticky by "
        "header:x-user-id)" in lines
    )


def test_head_prefers_a_route_naming_head_and_says_why_get_lost(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(snapshot, "HEAD /status", capsys)
    assert report["route"]["name"] == "status.head"
    report = run_json(snapshot, "HEAD /projects", capsys)
    assert report["route"]["name"] == "projects.index"
    assert "HEAD is tried as GET" in report["why"]


def test_a_route_naming_head_after_a_get_route_wins_head(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(
        CONFIG.split("routes:", maxsplit=1)[0]
        + 'routes:\n  - {name: get, match: "GET /x"}\n  - {name: head, match: "HEAD /x"}\n'
    )
    report = run_json(load_snapshot(path), "HEAD /x", capsys)
    assert report["route"]["name"] == "head"
    [get] = report["tried"]
    assert get["path_ok"] is True
    assert get["reason"] == (
        "HEAD is tried as GET only when no route naming HEAD matches, and #2 names HEAD"
    )


def test_glob_params_and_absolute_form(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(snapshot, "POST http://shop.example/reports/2024/q1.csv", capsys)
    assert report["request"]["host"] == "shop.example"
    assert report["route"]["name"] == "reports"
    assert report["route"]["params"] == {"path": "2024/q1.csv"}
    assert report["backend"] == "new"
    lines = run_text(snapshot, "GET http://shop.example/reports", capsys)
    assert "  host shop.example: not used for routing (method and path only)" in lines
    assert any(
        "path: the path ends before `/*path` (a glob needs a character)" in line for line in lines
    )


def test_a_path_the_gateway_refuses_is_reported_as_refused(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str]
) -> None:
    report = run_json(snapshot, "GET /projects/%41", capsys)
    assert report["outcome"] == "refused"
    assert report["refused"]["status"] == 400
    assert "percent-encoded unreserved" in report["refused"]["reason"]


@pytest.mark.parametrize(
    ("request_line", "message"),
    [
        ("/projects", "expected METHOD and a path"),
        ("GET", "expected METHOD and a path"),
        ("get /projects", "'get' is not an HTTP method (methods are case-sensitive: GET)"),
        ("GET projects", "'projects' is not a path"),
        ("GET /a#b", "#fragment"),
        ("GET http:///x", "names no host"),
    ],
)
def test_an_unreadable_request_line_exits_2(
    snapshot: Snapshot, capsys: pytest.CaptureFixture[str], request_line: str, message: str
) -> None:
    assert print_match(snapshot, request_line, as_json=False) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert message in captured.err
