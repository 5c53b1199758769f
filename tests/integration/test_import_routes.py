"""`strangler import-routes`, the real command on real files: Rails' routes are added as stage
legacy after the config's own routes, and nothing else in the file changes.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

FIXTURES = Path(__file__).parent.parent / "fixtures" / "rails_routes"
STRANGLER = str(Path(sys.executable).parent / "strangler")

CONFIG = """\
# The gateway in front of the shop app.
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}     # Rails
  new:    {url: "http://127.0.0.1:8080"}     # the replacement
default: legacy

routes:
  # Already moved: the project API.
  - name: api.projects.show
    match: "GET|HEAD /api/v1/projects/:id(.:format)"
    stage: new

  # Same name as an imported route, another match: the config's own stays.
  - name: projects.show
    match: 'GET /projects/:id'
    stage: shadow
    shadow: {noise_sample_rate: 0.1}
  # Same requests as Rails' users#show, under another name and param.
  - name: people.profile
    match: "GET /users/:user_id(.:format)"

# Everything below is about limits.
limits:
  drain_timeout_s: 5   # tests stop fast
"""


def strangler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRANGLER, *args], capture_output=True, text=True, timeout=60, check=False
    )


def import_json(routes: Path, config: Path, *extra: str) -> dict[str, Any]:
    result = strangler("import-routes", str(routes), "--config", str(config), "--json", *extra)
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG)
    path.chmod(0o644)
    return path


def added_block(before: str, after: str) -> list[str]:
    """The lines `after` has that `before` lacks, checking every old line is there, in order."""
    old, new = before.splitlines(), after.splitlines()
    start = next(i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b)
    count = len(new) - len(old)
    assert new[:start] + new[start + count :] == old
    return new[start : start + count]


@pytest.mark.parametrize("routes_file", ["routes.txt", "routes_expanded.txt"])
def test_import_adds_legacy_routes_after_the_configs_and_changes_nothing_else(
    config: Path, routes_file: str
) -> None:
    report = import_json(FIXTURES / routes_file, config)
    after = config.read_text()

    assert report["written"] is True
    assert report["counts"] == {"added": 217, "kept": 3, "skipped": 19, "warnings": 24}
    # The config's own `GET /projects/:id` comes first and takes one of Rails' routes.
    assert (
        "`projects.show` (GET /projects/:id) takes GET /projects/new before `projects.new`; "
        "move projects.new above it"
    ) in [w["message"] for w in report["warnings"]]
    assert {k["name"]: k["reason"] for k in report["kept"]} == {
        "projects.show": "name already in the config (its match there: 'GET /projects/:id')",
        "users.show": "the config's 'people.profile' already takes these requests",
        # GET|HEAD there covers Rails' GET: appended after it, this one would never match.
        "api.v1.projects.show": "the config's 'api.projects.show' already takes these requests",
    }
    skipped = {(s["line"], s["reason"].split(" (")[0]) for s in report["skipped"]}
    assert len(skipped) == 19

    block = added_block(CONFIG, after)
    # Inserted right after the last route, before the comment that belongs to `limits:`.
    assert after.index(block[0]) < after.index("# Everything below is about limits.")
    assert block[0].startswith("  # Imported from ")
    assert block[1:4] == [
        "  - name: home.index",
        '    match: "GET /"',
        "    stage: legacy",
    ]
    assert '    match: "PATCH|PUT /projects/:id(.:format)"' in block
    assert "  - name: blog.posts.index" in block
    note = r"constraint {id: /\d+/} not enforced by the gateway; Rails applies it (check it"
    default = "default {format: :json} is set by Rails, not the gateway (the new backend must set"
    constraint = block.index(
        f'    match: "GET /api/v2/projects/:id(.:format)"  # {note} before stage new); '
        f"{default} it too)"
    )
    assert block[constraint - 1] == "  - name: api.v2.projects.show"
    assert stat.S_IMODE(config.stat().st_mode) == 0o644

    check = strangler("check-config", str(config))
    assert check.returncode == 0, check.stderr
    assert "(2 backends, 220 routes, default backend 'legacy')" in check.stdout

    table = strangler("routes", "--config", str(config), "--json")
    rows = orjson.loads(table.stdout)
    assert [r["name"] for r in rows[:3]] == ["api.projects.show", "projects.show", "people.profile"]
    assert [r["stage"] for r in rows[:3]] == ["new", "shadow", "legacy"]
    assert {r["stage"] for r in rows[3:]} == {"legacy"}


def test_existing_routes_and_the_api_route_name_collision(config: Path) -> None:
    report = import_json(FIXTURES / "routes.txt", config)
    kept = {k["name"]: k for k in report["kept"]}
    assert kept["projects.show"]["match"] == "GET /projects/:id(.:format)"
    assert kept["users.show"]["match"] == "GET /users/:id(.:format)"
    added = {a["name"]: a for a in report["added"]}
    assert "projects.show" not in added
    assert added["projects.update"]["lines"] == [52, 53]


def test_a_second_run_adds_nothing_and_leaves_the_file_alone(config: Path) -> None:
    import_json(FIXTURES / "routes.txt", config)
    once = config.read_bytes()
    mtime = config.stat().st_mtime_ns

    report = import_json(FIXTURES / "routes_expanded.txt", config)

    assert report["counts"]["added"] == 0
    assert report["counts"]["kept"] == 220
    assert report["written"] is False
    assert config.read_bytes() == once
    assert config.stat().st_mtime_ns == mtime


def test_dry_run_reports_and_writes_nothing(config: Path) -> None:
    report = import_json(FIXTURES / "routes.txt", config, "--dry-run")
    assert report["dry_run"] is True
    assert report["written"] is False
    assert report["counts"]["added"] == 217
    assert config.read_text() == CONFIG
    assert [p.name for p in config.parent.iterdir()] == ["strangler.yaml"]


def test_terminal_report_lists_kept_and_skipped_lines(config: Path) -> None:
    result = strangler(
        "import-routes", str(FIXTURES / "routes.txt"), "--config", str(config), "--dry-run"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.splitlines()[0].endswith("added 217, kept 3, skipped 19 (dry run: nothing written)")
    assert "\nSkipped:\nLINE  WHAT" in out
    assert "199   GET /photos/:slug(.:format)" in out
    assert "development-only Rails route (rails/conductor/action_mailbox/reroutes#create)" in out
    assert "people.profile" in out


@pytest.mark.parametrize(
    ("routes_part", "expected_head"),
    [
        pytest.param("", ["routes:", "  # Imported from "], id="no-routes-key"),
        pytest.param(
            "routes: []   # none yet\n", ["routes: # none yet", "  # Imported from "], id="empty"
        ),
        pytest.param(
            "routes:\n- name: x\n  match: GET /x\n",
            ["routes:", "- name: x", "  match: GET /x", "# Imported from "],
            id="unindented-list",
        ),
    ],
)
def test_config_shapes(tmp_path: Path, routes_part: str, expected_head: list[str]) -> None:
    head = 'backends:\n  legacy: {url: "http://127.0.0.1:3000"}\n  new: {url: "http://127.0.0.1:8080"}\n'
    path = tmp_path / "strangler.yaml"
    path.write_text(head + routes_part)
    report = import_json(FIXTURES / "routes.txt", path)
    assert report["written"] is True
    lines = path.read_text().splitlines()
    assert lines[:3] == head.splitlines()
    assert [line[: len(e)] for line, e in zip(lines[3:], expected_head, strict=False)] == (
        expected_head
    )
    assert strangler("check-config", str(path)).returncode == 0


def test_unusable_routes_file_exits_2_and_writes_nothing(config: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("You don't have any routes defined!\n")
    result = strangler("import-routes", str(garbage), "--config", str(config))
    assert result.returncode == 2
    assert "no routes found" in result.stderr
    missing = strangler("import-routes", str(tmp_path / "nope.txt"), "--config", str(config))
    assert missing.returncode == 2
    assert "cannot read the routes file" in missing.stderr
    assert config.read_text() == CONFIG


def test_unusable_config_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "strangler.yaml"
    bad.write_text(CONFIG.replace("default: legacy", "defualt: legacy"))
    result = strangler("import-routes", str(FIXTURES / "routes.txt"), "--config", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {bad}:6: defualt: unknown key; did you mean `default`?"
    missing = tmp_path / "missing.yaml"
    result = strangler("import-routes", str(FIXTURES / "routes.txt"), "--config", str(missing))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {missing}: cannot read the file: No such file or directory"
    )


def test_a_result_that_would_not_load_is_not_written(config: Path, tmp_path: Path) -> None:
    # Route names are at most 200 characters; this controller path makes a longer one.
    routes = tmp_path / "routes.txt"
    namespace = "/".join(["deeply_nested_namespace"] * 9)
    routes.write_text(f"GET /deep(.:format) {namespace}/things#index\n")
    result = strangler("import-routes", str(routes), "--config", str(config))
    assert result.returncode == 2
    assert "routes[3].name" in result.stderr
    assert config.read_text() == CONFIG
    assert sorted(os.listdir(tmp_path)) == ["routes.txt", "strangler.yaml"]


OVERLAPS_ROUTES = """\
     Prefix Verb URI Pattern                   Controller#Action
new_project GET  /projects/new(.:format)       projects#new
 api_status GET  /status(.:format)             api/status#show {:subdomain=>"api"}
     status GET  /status(.:format)             pages#status
      about GET  /:locale/about                pages#about {:locale=>/en|fr/}
      photo GET  /photos/:id(.:format)         photos#show
    invoice GET  /invoices/:id(.:format)       invoices#show {:format=>:pdf}
"""
OVERLAPS_CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - name: projects.lookup
    match: "GET /projects/:id"
    stage: new
"""


@pytest.fixture
def overlaps(tmp_path: Path) -> tuple[Path, Path]:
    routes = tmp_path / "routes.txt"
    routes.write_text(OVERLAPS_ROUTES)
    config = tmp_path / "strangler.yaml"
    config.write_text(OVERLAPS_CONFIG)
    return routes, config


def test_routes_that_now_take_an_imported_routes_requests_are_warned_on_stderr(
    overlaps: tuple[Path, Path],
) -> None:
    routes, config = overlaps
    result = strangler("import-routes", str(routes), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        # The config's route comes first and takes `/projects/new` (not `/projects/new.json`).
        "warning: `projects.lookup` (GET /projects/:id) takes GET /projects/new before "
        "`projects.new`; move projects.new above it",
        # Rails' constraint kept `/photos/about` out of pages.about; the gateway drops it. Not
        # `/projects/about`: pages.about's own constraint keeps that from it in Rails too.
        "warning: `pages.about` (GET /:locale/about), whose constraint {locale: /en|fr/} Rails "
        "applies and the gateway does not, takes requests of 2 imported routes:",
        "  takes GET /photos/about before `photos.show`; move photos.show above it",
        "  takes GET /invoices/about before `invoices.show`; move invoices.show above it",
    ]
    # Each warning is true of the table that was written.
    for method, path, name in [
        ("GET", "/projects/new", "projects.lookup"),
        ("GET", "/projects/new.json", "projects.new"),
        ("GET", "/photos/about", "pages.about"),
    ]:
        shown = strangler("routes", "--config", str(config), "--match", f"{method} {path}")
        if shown.returncode == 2 and "--match" in shown.stderr:
            pytest.skip("`strangler routes --match` is not wired in yet")
        assert f" {name}: " in shown.stdout.splitlines()[1], shown.stdout


def test_every_dropped_constraint_is_noted_and_warnings_are_in_the_json(
    overlaps: tuple[Path, Path],
) -> None:
    routes, config = overlaps
    report = import_json(routes, config, "--dry-run")
    notes = {added["name"]: added["notes"] for added in report["added"]}
    assert notes["api.status.show"] == [
        'subdomain constraint "api" not enforced: the gateway routes by method and path, for '
        "any host (check it before stage new)"
    ]
    assert notes["pages.about"] == [
        "constraint {locale: /en|fr/} not enforced by the gateway; Rails applies it (check it "
        "before stage new)"
    ]
    assert notes["invoices.show"] == [
        "default {format: :pdf} is set by Rails, not the gateway (the new backend must set it too)"
    ]
    assert notes["projects.new"] == []
    [skipped] = report["skipped"]
    assert (skipped["line"], skipped["text"]) == (4, "GET /status(.:format)")
    assert (
        'by its constraint {subdomain: "api"}, which the gateway does not enforce'
        in (skipped["reason"])
    )
    assert report["counts"]["warnings"] == 3
    first = report["warnings"][0]
    assert first == {
        "route": "projects.new",
        "match": "GET /projects/new(.:format)",
        "taken_by": "projects.lookup",
        "taken_by_match": "GET /projects/:id",
        "is_taken_by_imported": False,
        "request": "GET /projects/new",
        "constraints": {},
        "can_move_above": True,
        "message": "`projects.lookup` (GET /projects/:id) takes GET /projects/new before "
        "`projects.new`; move projects.new above it",
    }
    assert [(w["route"], w["taken_by"], w["constraints"]) for w in report["warnings"][1:]] == [
        ("photos.show", "pages.about", {"locale": "/en|fr/"}),
        ("invoices.show", "pages.about", {"locale": "/en|fr/"}),
    ]
    # JSON mode keeps stderr for errors.
    result = strangler("import-routes", str(routes), "--config", str(config), "--json")
    assert result.stderr == ""


def test_a_route_a_config_route_covers_is_kept_not_added(tmp_path: Path) -> None:
    # `ANY /*path` takes every request of every imported route except the root `/`.
    config = tmp_path / "strangler.yaml"
    config.write_text(
        OVERLAPS_CONFIG.replace('"GET /projects/:id"', '"ANY /*path"').replace("new\n", "legacy\n")
    )
    routes = tmp_path / "routes.txt"
    routes.write_text(
        "Prefix Verb URI Pattern Controller#Action\n"
        "  root GET  /            home#index\n"
        "  page GET  /pages/:id   pages#show\n"
    )
    report = import_json(routes, config)
    assert [a["name"] for a in report["added"]] == ["home.index"]
    assert [(k["name"], k["reason"]) for k in report["kept"]] == [
        ("pages.show", "the config's 'projects.lookup' already takes these requests")
    ]
    assert strangler("check-config", str(config)).returncode == 0
