"""`strangler routes --match` as a user runs it: the route that takes a request, why the earlier
ones did not, the default backend when none does, and exit 2 for a request line it can't read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

STRANGLER = str(Path(sys.executable).parent / "strangler")

CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - name: projects.index
    match: "GET /projects(.:format)"
  - name: projects.show
    match: "GET /projects/:id"
    stage: new
  - name: projects.new
    match: "GET /projects/new(.:format)"
"""


def strangler(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [STRANGLER, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_match_names_the_route_and_why_the_earlier_one_missed(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(CONFIG)
    result = strangler("routes", "--config", str(config), "--match", "GET /projects/new")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == [
        "GET /projects/new",
        "-> route #2 projects.show: GET /projects/:id",
        "   the first route, in file order, whose method and path match",
        "   params: id=new",
        "   stage new: backend `new` answers",
    ]
    assert lines[6] == "Tried first, in file order:"
    assert " ".join(lines[7].split()) == (
        "#1 projects.index GET /projects(.:format) path: the path goes on after the pattern "
        "ends (`/new`)"
    )

    as_json = strangler("routes", "--config", str(config), "--match", "GET /x.json", "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = orjson.loads(as_json.stdout)
    assert (report["outcome"], report["route"], report["backend"]) == ("default", None, "legacy")
    assert len(report["tried"]) == 3


def test_an_unreadable_request_line_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "strangler.yaml"
    config.write_text(CONFIG)
    result = strangler("routes", "--config", str(config), "--match", "get /projects")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "'get' is not an HTTP method (methods are case-sensitive: GET)" in result.stderr
