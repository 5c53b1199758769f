"""The command line on config files: `check-config` points at FILE:LINE: field: problem and exits
2, `routes` prints the table in file order, and `run` refuses a bad file before binding its port.

Each bad file is the good one below with one line replaced, so every expected line number is
the number of the line that was changed (or, for a missing field, its parent's line).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

GOOD = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new:
    url: "http://127.0.0.1:8080"
    connect_timeout_s: 0.5
default: legacy
routes:
  - name: projects.show
    match: "GET|HEAD /api/projects/:id(.:format)"
    stage: new
  - name: projects.index
    match: "GET /api/projects(.:format)"
  - name: reports
    match: "ANY /reports/*path"
    backend: new
limits:
  drain_timeout_s: 5
"""


def _strangler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "strangler", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _with_line(tmp_path: Path, line: int, text: str) -> Path:
    lines = GOOD.splitlines()
    lines[line - 1] = text
    path = tmp_path / "strangler.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_good_file_passes(tmp_path: Path) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(GOOD)
    result = _strangler("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (f"{path}: ok (2 backends, 3 routes, default backend 'legacy')")


@pytest.mark.parametrize(
    ("line", "text", "error_line", "where", "message"),
    [
        # YAML syntax: the line the parser stopped at, and no field.
        pytest.param(11, "\tstage: new", 11, "", "not valid YAML: found character '\\t'", id="tab"),
        pytest.param(
            12, "  - name: projects.index: oops", 12, "", "not valid YAML: mapping", id="yaml"
        ),
        # Unknown keys.
        pytest.param(7, "defualt: legacy", 7, "defualt", "unknown key", id="top-level-key"),
        pytest.param(
            16, "    backend_name: new", 16, "routes[2].backend_name", "unknown key", id="route-key"
        ),
        # Wrong types and values.
        pytest.param(
            6,
            '    connect_timeout_s: "fast"',
            6,
            "backends.new.connect_timeout_s",
            "Input should be a valid number",
            id="wrong-type",
        ),
        pytest.param(
            18,
            "  drain_timeout_s: -1",
            18,
            "limits.drain_timeout_s",
            "Input should be greater than 0",
            id="out-of-range",
        ),
        pytest.param(
            3,
            '  legacy: {url: "ftp://x:3000"}',
            3,
            "backends.legacy.url",
            "expected an http:// or https:// URL",
            id="ftp-url",
        ),
        # A missing field points at its parent.
        pytest.param(
            5, "    pool_size: 3", 4, "backends.new.url", "this field is required", id="missing"
        ),
        # References between sections.
        pytest.param(
            16,
            "    backend: nope",
            16,
            "routes[2].backend",
            "names backend 'nope', which is not in backends (legacy, new)",
            id="route-backend-missing",
        ),
        pytest.param(
            7,
            "default: old",
            7,
            "default",
            "names backend 'old', which is not in backends",
            id="default-backend-missing",
        ),
        pytest.param(
            14,
            "  - name: projects.show",
            14,
            "routes[2].name",
            "route name 'projects.show' is already used by routes[0]",
            id="duplicate-route-name",
        ),
        # Routes.
        pytest.param(
            15,
            '    match: "ANY /reports/(*path"',
            15,
            "routes[2].match",
            "unclosed '(' at character 14",
            id="unbalanced-paren",
        ),
        pytest.param(
            11,
            "    stage: bogus",
            11,
            "routes[0].stage",
            "expected one of: legacy, shadow, canary, new, retired (got 'bogus')",
            id="bogus",
        ),
    ],
)
def test_bad_file_names_file_line_and_field_and_exits_2(
    tmp_path: Path, line: int, text: str, error_line: int, where: str, message: str
) -> None:
    path = _with_line(tmp_path, line, text)
    result = _strangler("check-config", str(path))
    assert result.returncode == 2, result
    assert result.stdout == ""
    (printed,) = result.stderr.strip().splitlines()
    field = f"{where}: " if where else ""
    assert printed.startswith(f"error: {path}:{error_line}: {field}{message}"), printed
    # "(got ...)" shows the offending value, never the whole document.
    assert "{'listen'" not in printed, printed


def test_missing_file_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    result = _strangler("check-config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: cannot read the file")


def test_routes_prints_the_table_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(GOOD)
    result = _strangler("routes", "--config", str(path))
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.strip().splitlines()]
    assert rows[0] == ["#", "NAME", "MATCH", "STAGE", "BACKEND"]
    assert rows[1:] == [
        ["1", "projects.show", "GET|HEAD", "/api/projects/:id(.:format)", "new", "new"],
        ["2", "projects.index", "GET", "/api/projects(.:format)", "legacy", "legacy"],
        ["3", "reports", "ANY", "/reports/*path", "legacy", "new"],
        ["*", "(unmatched)", "ANY", "*", "-", "legacy"],
    ]


def test_routes_json_parses_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(GOOD)
    result = _strangler("routes", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    assert orjson.loads(result.stdout) == [
        {
            "name": "projects.show",
            "match": "GET|HEAD /api/projects/:id(.:format)",
            "stage": "new",
            "yaml_stage": "new",
            "override": None,
            "backend": "new",
            "reason": "stage_new",
        },
        {
            "name": "projects.index",
            "match": "GET /api/projects(.:format)",
            "stage": "legacy",
            "yaml_stage": "legacy",
            "override": None,
            "backend": "legacy",
            "reason": "stage_legacy",
        },
        {
            "name": "reports",
            "match": "ANY /reports/*path",
            "stage": "legacy",
            "yaml_stage": "legacy",
            "override": None,
            "backend": "new",
            "reason": "route_backend",
        },
    ]


def test_routes_on_a_bad_file_exits_2(tmp_path: Path) -> None:
    path = _with_line(tmp_path, 11, "    stage: bogus")
    result = _strangler("routes", "--config", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}:11: routes[0].stage: ")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_run_with_a_bad_file_exits_2_before_binding_its_port(tmp_path: Path, workers: str) -> None:
    # The port is taken: had `run` tried to bind before validating, it would exit 1 naming the
    # address instead of 2 naming the config line.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        path = _with_line(tmp_path, 1, f"listen: 127.0.0.1:{port}")
        text = path.read_text().replace("    stage: new", "    stage: bogus")
        path.write_text(text)
        result = _strangler("run", "--config", str(path), "--workers", workers)
    assert result.returncode == 2, result
    assert "strangler listening" not in result.stdout
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {path}:11: routes[0].stage: expected one of")
    )
    assert "cannot listen" not in result.stderr


@pytest.mark.parametrize(
    ("store", "message"),
    [
        pytest.param(
            "  url: mysql://ann:hunter2@db/strangler",
            "expected postgresql://user@host:5432/database (or postgresql+psycopg://), "
            "got 'mysql://ann:***@db/strangler'",
            id="other-database",
        ),
        pytest.param(
            "  url: postgresql://ann:hunter2@db:99999/strangler",
            "bad port",
            id="bad-port",
        ),
        pytest.param(
            "  url: postgresql://ann:hunter2@db:5432",
            "expected one database name after the host",
            id="no-database",
        ),
        pytest.param(
            "  path: results.db\n  url: postgresql://ann:hunter2@db/strangler",
            "give store.url (PostgreSQL) or store.path (SQLite), not both",
            id="path-and-url",
        ),
    ],
)
def test_a_bad_store_url_names_its_line_and_hides_the_password(
    tmp_path: Path, store: str, message: str
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(f"{GOOD}store:\n{store}\n")
    url_line = GOOD.count("\n") + 1 + store.count("\n") + 1
    result = _strangler("check-config", str(path))
    assert result.returncode == 2, result
    (printed,) = result.stderr.strip().splitlines()
    assert printed.startswith(f"error: {path}:{url_line}: store.url: {message}"), printed
    assert "hunter2" not in printed


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://strangler@db.internal:5432/strangler",
        "postgresql+psycopg://strangler:s3cret@db.internal/strangler?sslmode=require",
        "postgresql://strangler@/strangler?host=/var/run/postgresql",
        "postgresql:///strangler",
    ],
)
def test_a_postgres_store_url_passes_without_connecting(tmp_path: Path, url: str) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(f"{GOOD}store:\n  url: {url}\n")
    result = _strangler("check-config", str(path))
    assert result.returncode == 0, result.stderr


def test_check_config_warns_when_an_override_keeps_the_file_from_taking_effect(
    tmp_path: Path,
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(GOOD)
    rolled = _strangler("rollback", "projects.show", "-r", "broken", "--config", str(path))
    assert rolled.returncode == 0, rolled.stderr
    assert _strangler("check-config", str(path)).stderr.startswith(
        "warning: route projects.show: the file says stage new, but a runtime override"
    )
    # The file is edited; the override still holds the route on legacy.
    path.write_text(GOOD.replace("    stage: new", "    stage: shadow"))
    result = _strangler("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith(
        "warning: route projects.show: the file says stage shadow, but a runtime override"
    ), result.stderr
    assert "keeps it in legacy; `strangler reset projects.show -r why` lets the file stand" in (
        result.stderr
    )


def test_check_config_notes_a_file_without_a_new_backend(tmp_path: Path) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(
        'backends:\n  legacy: {url: "http://127.0.0.1:3000"}\nroutes: [{name: a, match: GET /a}]\n'
    )
    result = _strangler("check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("note: no new backend yet;")
