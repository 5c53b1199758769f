"""covers / escaping_request / taken_request / unreachable, checked against the real matcher.

The property tests put two generated routes in a RouteMatcher, earlier first, and send it
requests generated from the later route: covers() True must mean the earlier route gets every
one, and each example request these functions give must go where they say.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from strangler.routing import PatternError, RouteMatcher, RoutePattern, TokenKind, parse_match
from strangler.routing.overlap import (
    covers,
    covers_paths,
    escaping_request,
    first_cover,
    taken_request,
    takes_some,
    unreachable,
)


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        ("ANY /*path", "GET /projects/:id(.:format)", True),
        ("ANY /*path", "DELETE /a/*rest/edit", True),
        # A glob needs a character: `/` itself is left for the root route.
        ("ANY /*path", "GET /", False),
        ("ANY /(*path)", "GET /", True),
        ("GET /projects/:id(.:format)", "GET /projects/new(.:format)", True),
        # Without `(.:format)` the earlier route leaves `/projects/new.json` to the later one.
        ("GET /projects/:id", "GET /projects/new(.:format)", False),
        ("GET /projects/new", "GET /projects/:id", False),
        ("GET /photos/:id(.:format)", "GET /photos/:slug(.:format)", True),
        ("GET (/:locale)/articles(.:format)", "GET /blog/articles", True),
        ("GET /:a/:b", "GET /*path", False),
        ("GET /a/*p", "GET /a/:b/c", True),
        # A param never holds a `.`, a glob does.
        ("GET /files/:name", "GET /files/*path", False),
        ("GET /files/*path", "GET /files/:name.:format", True),
        # Methods: subsets, ANY, and methods no route names.
        ("GET|POST /x", "POST /x", True),
        ("GET /x", "GET|POST /x", False),
        ("ANY /x", "PATCH|PUT /x", True),
        ("PATCH|PUT|POST|DELETE|GET|OPTIONS /x", "ANY /x", False),
        # HEAD: a route naming HEAD wins HEAD before any GET route, whatever the order.
        ("GET /x", "GET /x", True),
        ("GET /x", "HEAD /x", False),
        ("GET /x", "GET|HEAD /x", False),
        ("GET|HEAD /x", "GET /x", True),
        ("ANY /x", "HEAD /x", False),
        ("HEAD /x", "GET /x", False),
        ("ANY /x", "ANY /x", True),
        # Optional groups on both sides.
        ("GET /posts(/:year(/:month))(.:format)", "GET /posts/:year/:month", True),
        ("GET /posts(/:year)", "GET /posts(/:year(/:month))", False),
        ("GET /v:version/x", "GET /v1/x", True),
        ("GET /v1/x", "GET /v:version/x", False),
    ],
)
def test_covers(earlier: str, later: str, expected: bool) -> None:
    assert covers(parse_match(earlier), parse_match(later)) is expected
    escape = escaping_request(parse_match(earlier), parse_match(later))
    assert (escape is None) is expected


@pytest.mark.parametrize(
    ("earlier", "later", "taken"),
    [
        ("GET /projects/:id(.:format)", "GET /projects/new(.:format)", ("GET", "/projects/new")),
        ("ANY /*path", "GET /projects/:id", ("GET", "/projects/1")),
        ("GET (/:locale)/articles(.:format)", "GET /blog/articles", ("GET", "/blog/articles")),
        ("GET /:a/:b", "GET /*path", ("GET", "/1/1")),
        ("GET /x", "GET|HEAD /x", ("GET", "/x")),
        ("GET|HEAD /x", "HEAD /x", ("HEAD", "/x")),
        # Nothing shared: other verbs, other paths, or HEAD that the later route wins first.
        ("POST /x", "GET /x", None),
        ("GET /projects/new", "GET /projects/edit", None),
        ("GET /x", "HEAD /x", None),
        ("ANY /*path", "GET /", None),
        ("GET /files/:name", "GET /files/:a.:b", None),
    ],
)
def test_taken_request(earlier: str, later: str, taken: tuple[str, str] | None) -> None:
    assert taken_request(parse_match(earlier), parse_match(later)) == taken
    path = takes_some(parse_match(earlier), parse_match(later))
    assert path == (None if taken is None else taken[1])


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        (["GET /projects/new", "GET /projects/:id"], []),
        (["GET /projects/:id(.:format)", "GET /projects/new"], [(1, 0)]),
        # The first covering route is named, never one that is unreachable itself.
        (["ANY /*path", "GET /a/*b", "GET /a/b/c"], [(1, 0), (2, 0)]),
        # HEAD keeps a GET|HEAD route alive after a GET route on the same path.
        (["GET /x", "GET|HEAD /x"], []),
        (["GET|HEAD /x", "GET /x", "HEAD /x"], [(1, 0), (2, 0)]),
        # Only pairs: together the first two take every request of the third.
        (["GET /x", "POST /x", "GET|POST /x"], []),
        # A literal route before it takes its sample, not all of its paths.
        (["GET /projects/1", "GET /projects/:id"], []),
        (["GET /", "ANY /(*path)", "GET /"], [(2, 0)]),
    ],
)
def test_unreachable(routes: list[str], expected: list[tuple[int, int]]) -> None:
    assert unreachable([parse_match(route) for route in routes]) == expected


def test_unreachable_on_a_large_table_names_the_first_cover() -> None:
    # 2,000 reachable routes, then one that both `/r7/:id` and the catch-all hide.
    routes = [f"GET /r{n}/:id(.:format)" for n in range(2000)]
    routes += ["ANY /*path", "GET /r7/new"]
    assert unreachable([parse_match(route) for route in routes]) == [(2001, 7)]


# -- properties --------------------------------------------------------------------------------

# Segment shapes from matcher.py's trie (literal, `:p`, `lit.:f`, `:p.:f`, mixed, globs). `#`
# marks where a unique param or glob name goes.
_SEGMENTS = ["a", "b", "new", ":#", "*#", ":#.:#", "a.:#", "v:#", ":#-:#", "*#.:#", "*#/b"]
_VERBS = st.one_of(
    st.just("ANY"),
    st.sets(st.sampled_from(["GET", "HEAD", "POST"]), min_size=1).map("|".join),
)


@st.composite
def patterns(draw: st.DrawFn) -> RoutePattern:
    pieces = draw(
        st.lists(st.tuples(st.sampled_from(_SEGMENTS), st.booleans()), min_size=0, max_size=3)
    )
    path = "".join(f"(/{seg})" if optional else f"/{seg}" for seg, optional in pieces)
    if draw(st.booleans()):
        path += "(.:#)"
    names = iter(f"p{n}" for n in range(100))
    path = re.sub("#", lambda _: next(names), path or "/")
    try:
        return parse_match(f"{draw(_VERBS)} {path}")
    except PatternError:
        assume(False)
        raise


# Characters a request path may hold: the patterns' literals, `.` and `/`, and others.
_PARAM_CHARS = "ab1-vnew"


@st.composite
def requests_of(draw: st.DrawFn, pattern: RoutePattern) -> tuple[str, str]:
    """A request `pattern` matches on its own: one of its methods and one of its paths."""
    alternative = draw(st.sampled_from(pattern.alternatives))
    segments: list[str] = []
    for segment in alternative:
        text = ""
        for token in segment:
            if token.kind is TokenKind.LITERAL:
                text += token.text
            elif token.kind is TokenKind.PARAM:
                text += draw(st.text(_PARAM_CHARS, min_size=1, max_size=3))
            else:
                text += draw(st.text(_PARAM_CHARS + "./", min_size=1, max_size=5))
        segments.append(text)
    path = "/" + "/".join(segments)
    assume(pattern.capture(path) is not None)
    # The matcher cuts one trailing slash, so that is the request for a path ending in one.
    if (len(path) > 1 and path.endswith("/")) or draw(st.booleans()):
        path += "/"
    verbs = pattern.verbs
    methods = ["GET", "HEAD", "DELETE", "PURGE"] if verbs is None else sorted(verbs)
    if verbs is not None and "GET" in verbs:
        methods.append("HEAD")  # HEAD falls back to GET routes
    return draw(st.sampled_from(methods)), path


def _winner(earlier: RoutePattern, later: RoutePattern, method: str, path: str) -> int | None:
    return RouteMatcher([earlier, later]).match(method, path)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), patterns(), patterns())
def test_covers_means_the_earlier_route_gets_every_request(
    data: st.DataObject, earlier: RoutePattern, later: RoutePattern
) -> None:
    if covers(earlier, later):
        for _ in range(10):
            method, path = data.draw(requests_of(later))
            assert _winner(earlier, later, method, path) == 0, (method, path)
    else:
        escape = escaping_request(earlier, later)
        assert escape is not None
        assert _winner(earlier, later, *escape) == 1, escape


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), patterns(), patterns())
def test_taken_request_is_one_the_earlier_route_really_takes(
    data: st.DataObject, earlier: RoutePattern, later: RoutePattern
) -> None:
    taken = taken_request(earlier, later)
    if taken is not None:
        method, path = taken
        normalized = path[:-1] if len(path) > 1 and path.endswith("/") else path
        assert later.capture(normalized) is not None
        assert _winner(earlier, later, method, path) == 0, taken
    else:
        # Nothing of the later route's goes to the earlier one.
        for _ in range(10):
            method, path = data.draw(requests_of(later))
            assert _winner(earlier, later, method, path) == 1, (method, path)


def test_first_cover_names_the_first_covering_route() -> None:
    earlier = [parse_match(m) for m in ("GET /users/:id", "GET /projects/:id", "ANY /*path")]
    assert first_cover(earlier, parse_match("GET /projects/:slug")) == 1
    assert first_cover(earlier, parse_match("POST /projects/:slug")) == 2
    assert first_cover(earlier, parse_match("GET /")) is None


@pytest.mark.parametrize(
    ("earlier", "later", "expected"),
    [
        # Methods do not count: the catch-all matches every path the GET route does.
        ("GET /*unmatched", "ANY /blog/*rest", True),
        ("GET /projects/:id", "GET /projects/new", True),
        ("GET /projects/new", "GET /projects/:id", False),
        ("GET (/:locale)/about", "GET /photos/:id", False),
    ],
)
def test_covers_paths(earlier: str, later: str, expected: bool) -> None:
    assert covers_paths(parse_match(earlier), parse_match(later)) is expected
