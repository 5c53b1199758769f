"""RouteTable: routes in, one precomputed Decision per route out, errors pointing at the route."""

from __future__ import annotations

import pytest

from strangler.routing import (
    Decision,
    DecisionReason,
    RouteSpec,
    RouteTable,
    RouteTableError,
    Stage,
)


def legacy(name: str, match: str) -> RouteSpec:
    return RouteSpec(name, match, Stage.LEGACY, "legacy", DecisionReason.STAGE_LEGACY)


def new(name: str, match: str) -> RouteSpec:
    return RouteSpec(name, match, Stage.NEW, "new", DecisionReason.STAGE_NEW)


ROUTES = (
    new("projects_index", "GET|HEAD /projects(.:format)"),
    legacy("projects_new", "GET /projects/new(.:format)"),
    new("projects_show", "GET /projects/:id(.:format)"),
    legacy("projects_create", "POST /projects(.:format)"),
    RouteSpec(
        "reports", "ANY /reports/*path", Stage.LEGACY, "reports", DecisionReason.ROUTE_BACKEND
    ),
    legacy("root", "GET /"),
)
TABLE = RouteTable.build(ROUTES, default_backend="legacy")
UNMATCHED = Decision(None, None, "legacy", DecisionReason.UNMATCHED_DEFAULT)


@pytest.mark.parametrize(
    ("method", "path", "route"),
    [
        ("GET", "/projects", "projects_index"),
        ("HEAD", "/projects.json", "projects_index"),
        ("GET", "/projects/new", "projects_new"),
        ("GET", "/projects/42.json", "projects_show"),
        ("HEAD", "/projects/42", "projects_show"),
        ("POST", "/projects", "projects_create"),
        ("DELETE", "/reports/2024/q1.csv", "reports"),
        ("GET", "/", "root"),
        # The query string is cut off before matching, whatever it holds.
        ("GET", "/projects?page=2", "projects_index"),
        ("GET", "/projects/?page=2", "projects_index"),
        ("GET", "/projects/42?format=/x/y.json", "projects_show"),
        ("GET", "/?", "root"),
        ("GET", "/reports?x", None),
        ("PUT", "/projects/42", None),
        ("GET", "/elsewhere", None),
    ],
)
def test_decide_picks_the_first_matching_route(method: str, path: str, route: str | None) -> None:
    assert TABLE.decide(method, path).route == route


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        (
            "GET",
            "/projects/7",
            Decision(
                "projects_show",
                Stage.NEW,
                "new",
                DecisionReason.STAGE_NEW,
                is_new_side=True,
                route_label="projects_show",
                stage_label="new",
            ),
        ),
        (
            "GET",
            "/projects/new",
            Decision(
                "projects_new",
                Stage.LEGACY,
                "legacy",
                DecisionReason.STAGE_LEGACY,
                route_label="projects_new",
                stage_label="legacy",
            ),
        ),
        (
            "PATCH",
            "/reports/x",
            Decision(
                "reports",
                Stage.LEGACY,
                "reports",
                DecisionReason.ROUTE_BACKEND,
                route_label="reports",
                stage_label="legacy",
            ),
        ),
        ("GET", "/nowhere", UNMATCHED),
    ],
)
def test_decision_carries_route_stage_backend_and_reason(
    method: str, path: str, expected: Decision
) -> None:
    assert TABLE.decide(method, path) == expected


def test_decisions_are_built_once() -> None:
    assert TABLE.decide("GET", "/projects/1") is TABLE.decide("GET", "/projects/2.json")
    assert TABLE.decide("GET", "/a") is TABLE.decide("POST", "/b")


def test_unmatched_uses_the_default_backend() -> None:
    table = RouteTable.build(ROUTES, default_backend="new")
    assert table.decide("GET", "/nowhere") == Decision(
        None, None, "new", DecisionReason.UNMATCHED_DEFAULT
    )


def test_empty_table_sends_everything_to_the_default() -> None:
    table = RouteTable.build([], default_backend="legacy")
    assert (len(table), table.decide("GET", "/"), table.rows()) == (0, UNMATCHED, ())


def test_len_and_rows_follow_file_order() -> None:
    rows = TABLE.rows()
    assert len(TABLE) == len(rows) == len(ROUTES)
    assert [row.index for row in rows] == list(range(len(ROUTES)))
    assert [row.spec for row in rows] == list(ROUTES)
    assert [row.decision.route for row in rows] == [spec.name for spec in ROUTES]
    assert rows[0].pattern.path == "/projects(.:format)"
    assert rows[4].decision.backend == "reports"


@pytest.mark.parametrize(
    ("matches", "index", "message"),
    [
        (("GET /ok", "GET /bad)"), 1, "unbalanced ')' at character 9"),
        (("FETCH /x",), 0, "unknown verb 'FETCH' at character 1"),
        (("GET /ok", "GET /fine", "/x"), 2, "missing verb"),
        (("GET /a/:",), 0, "empty param name"),
    ],
)
def test_build_error_names_the_route_and_field(
    matches: tuple[str, ...], index: int, message: str
) -> None:
    routes = [legacy(f"r{i}", match) for i, match in enumerate(matches)]
    with pytest.raises(RouteTableError) as caught:
        RouteTable.build(routes, default_backend="legacy")
    assert (caught.value.index, caught.value.field) == (index, "match")
    assert message in caught.value.message
    assert str(caught.value).startswith(f"routes[{index}].match: ")
    assert isinstance(caught.value, ValueError)
