"""`override_conflicts`: what a reloaded file says that a runtime override keeps from force."""

from __future__ import annotations

import pytest

from strangler.config import Config, parse_config
from strangler.control.effective import override_conflicts
from strangler.control.state import Override

FILE = """\
backends:
  legacy: {{url: "http://127.0.0.1:3000"}}
  new: {{url: "http://127.0.0.1:8080"}}
routes:
  - name: projects.show
    match: "GET /api/projects/:id"
    stage: {show}
  - name: tasks.index
    match: "GET /api/tasks"
    stage: canary
    canary: {{group: tasks, weight: {weight}}}
  - name: tasks.show
    match: "GET /api/tasks/:id"
    stage: canary
    canary: {{group: tasks}}
"""
ROLLBACK = Override("projects.show", "legacy", 0, "rolled_back", actor="cli:ana", reason="500s")
WEIGHT = Override("tasks", "canary", 500, "running", actor="analyzer")


def _file(show: str = "canary", weight: float = 10) -> Config:
    return parse_config(FILE.format(show=show, weight=weight), "strangler.yaml")


@pytest.mark.parametrize(
    ("old", "new", "overrides", "expected"),
    [
        # The edit moves the route, the override keeps it: named both ways, and the way out.
        (
            _file(show="canary"),
            _file(show="new"),
            {"projects.show": ROLLBACK},
            [
                "route projects.show: the file now says stage new, but a runtime override "
                "(by cli:ana at *: '500s') keeps it in legacy; `strangler reset projects.show "
                "-r why` lets the file stand"
            ],
        ),
        # The edit did not touch the overridden route: nothing new to say on a reload.
        (_file(weight=10), _file(weight=10), {"projects.show": ROLLBACK}, []),
        # The file now agrees with the override: nothing holds anything back.
        (_file(show="canary"), _file(show="legacy"), {"projects.show": ROLLBACK}, []),
        # A group's weight: one line for the group, naming its first route and the group.
        (
            _file(weight=10),
            _file(weight=25),
            {"tasks": WEIGHT},
            [
                "route tasks.index: the file now says canary weight 25 %, but a runtime "
                "override (by analyzer at *) keeps it at 5 %; `strangler reset tasks.index "
                "-r why` lets the file stand for its rollout group tasks"
            ],
        ),
        # Without the file before (check-config): every disagreement in force.
        (
            None,
            _file(weight=10),
            {"projects.show": ROLLBACK, "tasks": WEIGHT},
            [
                "route projects.show: the file says stage canary, but a runtime override "
                "(by cli:ana at *: '500s') keeps it in legacy; `strangler reset projects.show "
                "-r why` lets the file stand",
                "route tasks.index: the file says canary weight 10 %, but a runtime override "
                "(by analyzer at *) keeps it at 5 %; `strangler reset tasks.index -r why` lets "
                "the file stand for its rollout group tasks",
            ],
        ),
    ],
)
def test_override_conflicts(
    old: Config | None, new: Config, overrides: dict[str, Override], expected: list[str]
) -> None:
    found = override_conflicts(old, new, overrides)
    # The time is local wall-clock text; everything else is compared whole.
    assert [_without_time(line) for line in found] == expected


def _without_time(line: str) -> str:
    start = line.index(" at ") + 4
    end = line.index(")", start)
    colon = line.find(": '", start, end)
    return line[:start] + "*" + line[colon if colon != -1 else end :]
