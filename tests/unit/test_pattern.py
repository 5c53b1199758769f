"""parse_match: Rails route strings in, RoutePattern or a PatternError naming the character out."""

from __future__ import annotations

import pytest

from strangler.routing import PatternError, RoutePattern, TokenKind, parse_match


def expansions(pattern: RoutePattern) -> list[str]:
    """The pattern's alternatives written back as text, to compare against readable rows."""
    sigil = {TokenKind.LITERAL: "", TokenKind.PARAM: ":", TokenKind.GLOB: "*"}
    return [
        "/" + "/".join("".join(sigil[t.kind] + t.text for t in segment) for segment in alternative)
        for alternative in pattern.alternatives
    ]


@pytest.mark.parametrize(
    ("match", "verbs"),
    [
        ("GET /projects", frozenset({"GET"})),
        ("POST /projects", frozenset({"POST"})),
        ("GET|HEAD /projects", frozenset({"GET", "HEAD"})),
        ("GET|POST|PATCH /projects", frozenset({"GET", "POST", "PATCH"})),
        ("DELETE /projects/:id", frozenset({"DELETE"})),
        ("PROPFIND /dav/*path", frozenset({"PROPFIND"})),
        ("ANY /projects", None),
        ("* /projects", None),
        ("GET    /projects", frozenset({"GET"})),
        ("  GET /projects  ", frozenset({"GET"})),
    ],
)
def test_verbs(match: str, verbs: frozenset[str] | None) -> None:
    assert parse_match(match).verbs == verbs


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        ("GET /", ["/"]),
        ("GET /projects", ["/projects"]),
        ("GET /projects/:id", ["/projects/:id"]),
        ("GET /projects(.:format)", ["/projects.:format", "/projects"]),
        ("GET /projects/:id(.:format)", ["/projects/:id.:format", "/projects/:id"]),
        (
            "GET /posts(/:year(/:month))(.:format)",
            [
                "/posts/:year/:month.:format",
                "/posts/:year/:month",
                "/posts/:year.:format",
                "/posts/:year",
                "/posts.:format",
                "/posts",
            ],
        ),
        ("GET /*path", ["/*path"]),
        ("GET /*path/edit", ["/*path/edit"]),
        ("GET /*path.:format", ["/*path.:format"]),
        ("GET /docs/*path(.:format)", ["/docs/*path.:format", "/docs/*path"]),
        ("GET /v:version/x", ["/v:version/x"]),
        ("GET /files/:name-:rev", ["/files/:name-:rev"]),
        ("GET (/:locale)/projects", ["/:locale/projects", "/projects"]),
        # Alternatives that cannot start with `/` can match no request; Rails keeps them too.
        ("GET (:locale)/projects", ["/projects"]),
        ("GET (/a)(.:format)", ["/a.:format", "/a"]),
        ("GET /(.:format)", ["/.:format", "/"]),
        # Literals from both sides of a group join into one run.
        ("GET /report(.csv)", ["/report.csv", "/report"]),
        # Rails strips a trailing slash from route paths.
        ("GET /projects/", ["/projects"]),
        ("GET /a\\(b\\)", ["/a(b)"]),
        ("GET /robots.txt", ["/robots.txt"]),
    ],
)
def test_alternatives(match: str, expected: list[str]) -> None:
    assert expansions(parse_match(match)) == expected


def test_path_keeps_the_pattern_as_written() -> None:
    assert parse_match("GET|HEAD /projects/:id(.:format)").path == "/projects/:id(.:format)"


@pytest.mark.parametrize(
    ("match", "names"),
    [
        ("GET /projects/:id(.:format)", ("id", "format")),
        ("GET /posts(/:year(/:month))", ("year", "month")),
        ("GET /*path/edit", ("path",)),
        ("GET /projects", ()),
    ],
)
def test_param_names_in_order(match: str, names: tuple[str, ...]) -> None:
    assert parse_match(match).param_names == names


@pytest.mark.parametrize(
    ("match", "reason", "position"),
    [
        ("", "empty match", 0),
        ("   ", "empty match", 0),
        ("/projects", "missing verb", 0),
        ("(/:locale)/x", "missing verb", 0),
        ("GET", "missing path", 3),
        ("GET ", "missing path", 3),
        ("get /projects", "verb 'get' must be uppercase", 0),
        ("any /projects", "verb 'any' must be uppercase", 0),
        ("FETCH /projects", "unknown verb 'FETCH'", 0),
        ("GET|FETCH /projects", "unknown verb 'FETCH'", 4),
        ("GET| /projects", "empty verb", 4),
        ("GET|ANY /projects", "ANY cannot be combined", 0),
        ("GET projects", "path must start with '/'", 4),
        ("GET (:locale)", "path must start with '/'", 4),
        ("GET (.:format)", "path must start with '/'", 4),
        ("GET /projects)", "unbalanced ')'", 13),
        ("GET /a(/b))", "unbalanced ')'", 10),
        ("GET /projects(.:format", "unclosed '('", 13),
        ("GET /a((/b)", "unclosed '('", 6),
        ("GET /projects()", "empty optional group", 13),
        ("GET /projects/:", "empty param name after ':'", 14),
        ("GET /projects/:/edit", "empty param name after ':'", 14),
        ("GET /files/*", "empty glob name after '*'", 11),
        ("GET /a//b", "empty path segment", 6),
        ("GET /a(/)", "empty path segment", 7),
        ("GET /a/:id/b/:id", "duplicate param name 'id'", 13),
        ("GET /a/*id(.:id)", "duplicate param name 'id'", 12),
        ("GET /a?b=1", "character '?' cannot appear", 6),
        ("GET /a#top", "character '#' cannot appear", 6),
        ("GET /a b", "character ' ' cannot appear", 6),
        ("GET /a\\b", "'\\' must be followed by", 6),
        ("GET " + "/a(/b)" * 9, "too many optional groups", 4),
    ],
)
def test_errors_say_what_and_where(match: str, reason: str, position: int) -> None:
    with pytest.raises(PatternError) as caught:
        parse_match(match)
    assert reason in caught.value.reason
    assert caught.value.position == position
    assert f"at character {position + 1}" in str(caught.value)


def test_pattern_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown verb"):
        parse_match("FETCH /x")
