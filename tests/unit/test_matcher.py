"""RouteMatcher: first route in file order, Rails semantics, agreeing with a list of regexes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.routing import RouteMatcher, parse_match


def matcher(*matches: str) -> RouteMatcher:
    return RouteMatcher([parse_match(m) for m in matches])


RESOURCES = (
    "GET /projects(.:format)",  # 0 index
    "POST /projects(.:format)",  # 1 create
    "GET /projects/new(.:format)",  # 2 new
    "GET /projects/:id/edit(.:format)",  # 3 edit
    "GET /projects/:id(.:format)",  # 4 show
    "PATCH /projects/:id(.:format)",  # 5 update
    "PUT /projects/:id(.:format)",  # 6 update
    "DELETE /projects/:id(.:format)",  # 7 destroy
    "GET /projects/:project_id/tasks/:id(.:format)",  # 8 nested show
    "GET /",  # 9 root
)


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/projects", 0),
        ("GET", "/projects.json", 0),
        ("POST", "/projects", 1),
        ("GET", "/projects/new", 2),
        ("GET", "/projects/new.json", 2),
        ("GET", "/projects/42/edit", 3),
        ("GET", "/projects/42", 4),
        ("GET", "/projects/42.json", 4),
        ("PATCH", "/projects/42", 5),
        ("PUT", "/projects/42.xml", 6),
        ("DELETE", "/projects/42", 7),
        ("GET", "/projects/7/tasks/9.json", 8),
        ("GET", "/", 9),
        # A param never holds a `.`: neither side of `1.2.json` fits `:id(.:format)`.
        ("GET", "/projects/1.2.json", None),
        ("GET", "/projects/42.", None),
        ("GET", "/projects/.json", None),
        ("GET", "/projects//edit", None),
        ("GET", "/projects/42/edit/more", None),
        ("POST", "/projects/42", None),
        ("OPTIONS", "/projects", None),
        ("GET", "/nowhere", None),
        # One trailing slash is ignored; `/` stays `/`.
        ("GET", "/projects/", 0),
        ("GET", "/projects/42/", 4),
        ("GET", "//", 9),
        ("GET", "", 9),
        # Inner repeated slashes are not squeezed.
        ("GET", "//projects", None),
        # Case-sensitive and raw: no decoding, no folding.
        ("GET", "/Projects", None),
        ("get", "/projects", None),
        ("GET", "/projects/a%2Fb", 4),
        ("GET", "/projects%2F42", None),
        # Not an origin-form path.
        ("OPTIONS", "*", None),
    ],
)
def test_resources(method: str, path: str, expected: int | None) -> None:
    assert matcher(*RESOURCES).match(method, path) == expected


@pytest.mark.parametrize(
    ("routes", "method", "path", "expected"),
    [
        # File order breaks ties, whichever way round the routes are written.
        (("GET /projects/new", "GET /projects/:id"), "GET", "/projects/new", 0),
        (("GET /projects/:id", "GET /projects/new"), "GET", "/projects/new", 0),
        (("GET /projects/:id", "GET /projects/new"), "GET", "/projects/7", 0),
        (("GET /*path", "GET /projects"), "GET", "/projects", 0),
        (("GET /projects/:id", "GET /projects/:id.:format"), "GET", "/projects/7.json", 1),
        (("GET /a/:x/c", "GET /a/b/:y"), "GET", "/a/b/c", 0),
        (("GET /a/b/:y", "GET /a/:x/c"), "GET", "/a/b/c", 0),
        # A deeper literal branch that fails must not hide a later param branch.
        (("GET /a/b/c", "GET /a/:x/d"), "GET", "/a/b/d", 1),
        # Verbs.
        (("GET|HEAD /x",), "HEAD", "/x", 0),
        (("GET|HEAD /x",), "POST", "/x", None),
        (("ANY /x",), "DELETE", "/x", 0),
        (("ANY /x",), "PROPFIND", "/x", 0),
        (("* /x",), "HEAD", "/x", 0),
        (("POST /x", "ANY /x"), "POST", "/x", 0),
        (("POST /x", "ANY /x"), "GET", "/x", 1),
        # HEAD matches GET routes when no route names HEAD (Journey::Router#match_head_routes).
        (("GET /x",), "HEAD", "/x", 0),
        (("POST /x",), "HEAD", "/x", None),
        # ... but a route naming HEAD wins over an earlier GET route.
        (("GET /x", "HEAD /x"), "HEAD", "/x", 1),
        (("GET /x", "HEAD /y"), "HEAD", "/x", 0),
        (("ANY /x", "GET /x"), "HEAD", "/x", 0),
        (("ANY /x", "HEAD /x"), "HEAD", "/x", 1),
        # Globs: one or more characters, slashes included, and more pattern after them.
        (("GET /files/*path",), "GET", "/files/a/b/c.txt", 0),
        (("GET /files/*path",), "GET", "/files", None),
        (("GET /files/*path",), "GET", "/files/", None),
        (("GET /*path/edit",), "GET", "/a/b/edit", 0),
        (("GET /*path/edit",), "GET", "/edit", None),
        (("GET /*path.:format",), "GET", "/a/b.json", 0),
        (("GET /*path.:format",), "GET", "/a/b", None),
        (("GET /x-*rest",), "GET", "/x-a/b", 0),
        (("GET /*a/mid/*b",), "GET", "/1/2/mid/3/4", 0),
        (("GET /*path",), "GET", "/", None),
        # Mixed segments.
        (("GET /v:version/x",), "GET", "/v2/x", 0),
        (("GET /v:version/x",), "GET", "/v/x", None),
        (("GET /files/:name-:rev",), "GET", "/files/a-b", 0),
        (("GET /files/:name-:rev",), "GET", "/files/ab", None),
        (("GET /files/:name.json",), "GET", "/files/a.json", 0),
        (("GET /files/:name.json",), "GET", "/files/a.xml", None),
        (("GET /sitemap.xml(.:format)",), "GET", "/sitemap.xml.gz", 0),
        (("GET /(.:format)",), "GET", "/.json", 0),
        # Nested optional groups.
        (("GET /posts(/:year(/:month))(.:format)",), "GET", "/posts", 0),
        (("GET /posts(/:year(/:month))(.:format)",), "GET", "/posts/2024/05.json", 0),
        (("GET /posts(/:year(/:month))(.:format)",), "GET", "/posts/2024/05/01", None),
        (("GET (/:locale)/about",), "GET", "/fr/about", 0),
        (("GET (/:locale)/about",), "GET", "/about", 0),
        (("GET (/:locale)/about",), "GET", "/", None),
    ],
)
def test_precedence_verbs_and_shapes(
    routes: tuple[str, ...], method: str, path: str, expected: int | None
) -> None:
    assert matcher(*routes).match(method, path) == expected


@pytest.mark.parametrize(
    ("route", "path", "params"),
    [
        ("GET /projects/:id(.:format)", "/projects/42", {"id": "42"}),
        ("GET /projects/:id(.:format)", "/projects/42.json", {"id": "42", "format": "json"}),
        ("GET /projects/:id(.:format)", "/projects/42/", {"id": "42"}),
        ("GET /projects/:id", "/projects/a%20b", {"id": "a%20b"}),
        ("GET /posts(/:year(/:month))", "/posts/2024", {"year": "2024"}),
        ("GET /files/*path", "/files/a/b/c.txt", {"path": "a/b/c.txt"}),
        # Globs are shortest-first so a trailing optional format still captures.
        ("GET /*path(.:format)", "/a/b.json", {"path": "a/b", "format": "json"}),
        ("GET /*path(.:format)", "/a.b/c.d.json", {"path": "a.b/c.d", "format": "json"}),
        ("GET /*path(.:format)", "/a/b", {"path": "a/b"}),
        ("GET /*path/edit", "/a/b/edit", {"path": "a/b"}),
        ("GET /files/:name-:rev", "/files/a-b", {"name": "a", "rev": "b"}),
        ("GET /v:version/x", "/v2/x", {"version": "2"}),
        ("GET /", "/", {}),
    ],
)
def test_match_params(route: str, path: str, params: dict[str, str]) -> None:
    assert matcher(route).match_params("GET", path) == (0, params)


def test_match_params_miss() -> None:
    assert matcher("GET /projects/:id").match_params("GET", "/tasks/1") is None


def test_empty_matcher_matches_nothing() -> None:
    empty = matcher()
    assert (len(empty), empty.match("GET", "/"), empty.match("HEAD", "/x")) == (0, None, None)


def test_repr_shows_size() -> None:
    # One trie per method named (DELETE GET PATCH POST PUT) plus one for every other method.
    assert repr(matcher(*RESOURCES)).startswith("<RouteMatcher 10 routes in 6 tries,")


# Equivalence with the naive reference: every route compiled to one regex, tried in order.
# The generator builds each route as a small tree of Pieces and renders it twice, as `match`
# text for parse_match and as a regex straight from the tree, so the reference shares no code
# with the code under test. The alphabets are tiny on purpose: routes must collide often.


@dataclass(frozen=True)
class Piece:
    """One element of a generated path pattern: literal text, `:param`, `*glob` or `( ... )`."""

    kind: str
    text: str = ""
    children: tuple[Piece, ...] = ()


def lit(text: str) -> Piece:
    return Piece("lit", text)


PARAM, GLOB = Piece("param"), Piece("glob")
SEGMENTS: tuple[tuple[Piece, ...], ...] = (
    *((lit("/" + text),) for text in ("a", "b", "new", "x.y", "v1")),
    (lit("/"), PARAM),
    (lit("/"), PARAM, lit("-"), PARAM),
    (lit("/v"), PARAM),
    (lit("/"), PARAM, lit("."), PARAM),
    (lit("/new."), PARAM),
    (lit("/"), PARAM, lit(".json")),
    (lit("/"), GLOB),
    (lit("/"), GLOB, lit("/edit")),
    (lit("/"), GLOB, lit("."), PARAM),
    (lit("/x-"), GLOB),
)
FORMAT = Piece("group", children=(lit("."), PARAM))
PATH_WORDS = ("a", "b", "new", "x.y", "v1", "v2", "edit", "1", "1.json", "1.2.json", "x-y", "")
PARAM_VALUES = ("1", "a", "new", "x-y", "v1", "1.json", "a.b.c", "", "json")
GLOB_VALUES = ("a", "a/b", "a.b/c", "x-1", "/")


@dataclass(frozen=True)
class GeneratedRoute:
    verbs: tuple[str, ...] | None
    pieces: tuple[Piece, ...]

    def render(self) -> tuple[str, re.Pattern[str]]:
        """(`match` text, reference regex); params are named p0, p1, ... in order."""
        names = (f"p{i}" for i in range(1000))

        def walk(pieces: Sequence[Piece]) -> tuple[str, str]:
            text, regex = "", ""
            for piece in pieces:
                if piece.kind == "group":
                    inner_text, inner_regex = walk(piece.children)
                    text, regex = text + f"({inner_text})", regex + f"(?:{inner_regex})?"
                elif piece.kind == "lit":
                    text, regex = text + piece.text, regex + re.escape(piece.text)
                else:
                    name = next(names)
                    sigil, body = (":", r"[^/.?]+") if piece.kind == "param" else ("*", r".+?")
                    text, regex = text + sigil + name, regex + f"(?P<{name}>{body})"
            return text, regex

        text, regex = walk(self.pieces)
        verbs = "ANY" if self.verbs is None else "|".join(self.verbs)
        return f"{verbs} {text or '/'}", re.compile(regex or "/", re.DOTALL)


def flatten(segments: list[tuple[Piece, ...]]) -> tuple[Piece, ...]:
    return tuple(piece for segment in segments for piece in segment)


segments = st.sampled_from(SEGMENTS)
optional = st.lists(segments, min_size=1, max_size=2).map(
    lambda group: (Piece("group", children=flatten(group)),)
)
nested_optional = st.tuples(segments, optional).map(
    lambda pair: (Piece("group", children=pair[0] + pair[1]),)
)
routes = st.builds(
    lambda verbs, parts, has_format: GeneratedRoute(
        verbs, flatten(parts) + ((FORMAT,) if has_format and parts else ())
    ),
    st.sampled_from([("GET",), ("POST",), ("GET", "HEAD"), ("HEAD",), None]),
    st.lists(st.one_of(segments, optional, nested_optional), max_size=3),
    st.booleans(),
)
random_paths = st.builds(
    lambda words, has_slash: "/" + "/".join(words) + ("/" if has_slash else ""),
    st.lists(st.sampled_from(PATH_WORDS), max_size=5),
    st.booleans(),
)
methods = st.sampled_from(("GET", "HEAD", "POST", "DELETE", "PROPFIND"))


def shaped_path(route: GeneratedRoute, data: st.DataObject) -> str:
    """A request path shaped like `route`: each group taken or not, params filled from a pool."""

    def walk(pieces: Sequence[Piece]) -> str:
        out = ""
        for piece in pieces:
            if piece.kind == "group":
                out += walk(piece.children) if data.draw(st.booleans()) else ""
            elif piece.kind == "lit":
                out += piece.text
            else:
                out += data.draw(st.sampled_from(PARAM_VALUES if piece is PARAM else GLOB_VALUES))
        return out

    path = walk(route.pieces)
    # Requests always start with `/`, even when the groups taken don't give one.
    return path if path.startswith("/") else "/" + path


def reference_match(
    compiled: Sequence[tuple[tuple[str, ...] | None, re.Pattern[str]]], method: str, path: str
) -> tuple[int, dict[str, str]] | None:
    """The naive router: normalize, then try each full regex in file order.

    HEAD is two-phase as in Journey::Router#match_head_routes: routes naming HEAD first, then
    everything that accepts GET.
    """
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]

    def accepts(verbs: tuple[str, ...] | None, phase: str) -> bool:
        if phase == "HEAD":
            return verbs is not None and "HEAD" in verbs
        return verbs is None or phase in verbs

    for phase in ("HEAD", "GET") if method == "HEAD" else (method,):
        for index, (verbs, regex) in enumerate(compiled):
            found = regex.fullmatch(path) if accepts(verbs, phase) else None
            if found is not None:
                return index, {k: v for k, v in found.groupdict().items() if v is not None}
    return None


@settings(max_examples=400, deadline=None)
@given(route_list=st.lists(routes, min_size=1, max_size=12), data=st.data())
def test_matches_naive_regex_list(route_list: list[GeneratedRoute], data: st.DataObject) -> None:
    rendered = [route.render() for route in route_list]
    under_test = RouteMatcher([parse_match(text) for text, _ in rendered])
    compiled = [(r.verbs, regex) for r, (_, regex) in zip(route_list, rendered, strict=True)]
    for _ in range(20):
        if data.draw(st.booleans()):
            path = data.draw(random_paths)
        else:
            path = shaped_path(data.draw(st.sampled_from(route_list)), data)
            path += data.draw(st.sampled_from(("", "/")))
        method = data.draw(methods)
        expected = reference_match(compiled, method, path)
        assert under_test.match_params(method, path) == expected, (method, path, rendered)
        assert under_test.match(method, path) == (None if expected is None else expected[0])
