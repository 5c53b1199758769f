"""Route overlap: does an earlier route take every request of a later one, or some of them?

Pure. No I/O; the same patterns always give the same answers and the same example requests.

Rules (the matcher's, matcher.py, which these answers must agree with):

- A route restricts requests by method and path only: a RoutePattern holds no host, no
  constraint and no condition, and the matcher reads nothing else. So "earlier takes a request"
  means the earlier route accepts its method and its path, and wins on order. Should routes
  gain a host or a constraint, an earlier route carrying one takes only what it restricts to,
  and this module must learn it before `covers` may say True for such a route.
- Methods, with HEAD's two phases: a method other than HEAD is taken by a route naming it or by
  an ANY route. HEAD is first offered to routes naming HEAD (phase 1), then to GET and ANY
  routes (phase 2); an earlier route wins HEAD over a later one only from the same phase or an
  earlier one. `ANY` also takes methods no route names, so no list of verbs covers it.
- Paths: a route's paths are a regular language over the characters of the normalized path
  (one trailing slash cut, which the matcher does before matching; every string that starts with
  `/` is the normalized form of some request path): a literal is itself, `:p` one or more
  characters other than `/` and `.`, `*g` one or more of any. Whether one language holds another
  is decided exactly, by walking both patterns' automata together over an alphabet of `/`, `.`,
  every literal character of the two patterns and one stand-in for every other character (no
  pattern can tell two such characters apart). The walk is breadth first, so an example request
  it finds is a shortest one.
- Pairwise only: `unreachable` names a route one earlier route covers. A route covered only by
  several earlier routes together (`GET /x`, then `POST /x`, then `GET|POST /x`) is not named;
  missing one is the safe side for a check that refuses a config.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import assert_never

from strangler.routing.matcher import RouteMatcher
from strangler.routing.pattern import KNOWN_VERBS, RoutePattern, TokenKind

# Verbs tried first when an example request needs one: the ones a reader expects to see.
_PREFERRED_VERBS = ("GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_VERB_ORDER = (*_PREFERRED_VERBS, *sorted(KNOWN_VERBS - {*_PREFERRED_VERBS, "HEAD"}))
# A method no route can name (pattern.py refuses unknown verbs), so only ANY routes take it:
# the matcher sends it to its trie of ANY routes.
_UNNAMED_METHOD = "PURGE"
# The stand-in for "any character no literal names", picked so example paths read naturally
# (`/projects/1`); the first one neither pattern uses.
_STAND_INS = "1xyzq0_~"
# Bound on the joint states one question may visit. Real patterns stay in the hundreds; past
# this the answer is "not covered" and "no example", which is the safe side for both.
_MAX_STATES = 50_000

_LITERAL, _PARAM, _GLOB = 0, 1, 2


@dataclass(frozen=True, slots=True)
class _Automaton:
    """A pattern's paths as a nondeterministic automaton without empty moves.

    `edges[state]` lists (kind, character, next state): a literal edge reads its character, a
    param edge any character but `/` and `.`, a glob edge any character.
    """

    starts: frozenset[int]
    accepts: frozenset[int]
    edges: tuple[tuple[tuple[int, str, int], ...], ...]
    characters: frozenset[str]

    def step(self, states: frozenset[int], char: str) -> frozenset[int]:
        out: set[int] = set()
        is_param_char = char not in "/."
        for state in states:
            for kind, edge_char, target in self.edges[state]:
                if kind == _GLOB or (kind == _PARAM and is_param_char) or edge_char == char:
                    out.add(target)
        return frozenset(out)

    def accepts_any(self, states: frozenset[int]) -> bool:
        return not self.accepts.isdisjoint(states)


def _automaton(pattern: RoutePattern) -> _Automaton:
    edges: list[list[tuple[int, str, int]]] = []
    characters: set[str] = {"/"}

    def new_state() -> int:
        edges.append([])
        return len(edges) - 1

    def literal(state: int, text: str) -> int:
        for char in text:
            target = new_state()
            edges[state].append((_LITERAL, char, target))
            characters.add(char)
            state = target
        return state

    def repeated(state: int, kind: int) -> int:
        # One or more: a first step out, then a loop on the new state.
        target = new_state()
        edges[state].append((kind, "", target))
        edges[target].append((kind, "", target))
        return target

    starts: set[int] = set()
    accepts: set[int] = set()
    for alternative in pattern.alternatives:
        state = new_state()
        starts.add(state)
        if not alternative:
            state = literal(state, "/")
        for segment in alternative:
            state = literal(state, "/")
            for token in segment:
                match token.kind:
                    case TokenKind.LITERAL:
                        state = literal(state, token.text)
                    case TokenKind.PARAM:
                        state = repeated(state, _PARAM)
                    case TokenKind.GLOB:
                        state = repeated(state, _GLOB)
                    case _:
                        assert_never(token.kind)
        accepts.add(state)
    return _Automaton(
        frozenset(starts),
        frozenset(accepts),
        tuple(tuple(state_edges) for state_edges in edges),
        frozenset(characters),
    )


def _alphabet(a: _Automaton, b: _Automaton) -> tuple[str, ...]:
    named = a.characters | b.characters | {"."}
    stand_in = next((c for c in _STAND_INS if c not in named), None)
    if stand_in is None:
        stand_in = next(chr(code) for code in range(0xA1, 0x2000) if chr(code) not in named)
    rest = sorted(named - {"/", "."})
    return (stand_in, *rest, "/", ".")


# The states both automata are in after the same characters.
_Pair = tuple[frozenset[int], frozenset[int]]


class _Undecided(Exception):
    """The walk went past _MAX_STATES."""


def _first_path(later: _Automaton, earlier: _Automaton, *, wants_both: bool) -> str | None:
    """The shortest normalized path `later` accepts and `earlier` accepts too (`wants_both`) or
    does not (not `wants_both`); None if there is none. Raises _Undecided past the bound."""
    start: _Pair = (later.starts, earlier.starts)
    parents: dict[_Pair, tuple[_Pair, str] | None] = {start: None}
    queue = deque([start])
    alphabet = _alphabet(later, earlier)
    while queue:
        pair = queue.popleft()
        later_states, earlier_states = pair
        if later.accepts_any(later_states) and earlier.accepts_any(earlier_states) == wants_both:
            chars: list[str] = []
            step = parents[pair]
            while step is not None:
                previous, char = step
                chars.append(char)
                step = parents[previous]
            return "".join(reversed(chars))
        for char in alphabet:
            next_later = later.step(later_states, char)
            if not next_later:
                continue
            next_earlier = earlier.step(earlier_states, char)
            if wants_both and not next_earlier:
                continue
            following = (next_later, next_earlier)
            if following in parents:
                continue
            if len(parents) >= _MAX_STATES:
                raise _Undecided
            parents[following] = (pair, char)
            queue.append(following)
    return None


# -- methods -----------------------------------------------------------------------------------


def _head_phase(verbs: frozenset[str] | None) -> int | None:
    """When a route is offered HEAD: 1 if it names HEAD, 2 if it takes HEAD as GET, else None."""
    if verbs is None:
        return 2
    if "HEAD" in verbs:
        return 1
    return 2 if "GET" in verbs else None


def _ordered(verbs: frozenset[str]) -> list[str]:
    return [verb for verb in _VERB_ORDER if verb in verbs]


def _escaping_method(earlier: frozenset[str] | None, later: frozenset[str] | None) -> str | None:
    """A method the later route takes that the earlier one does not take first, or None."""
    if later is None:
        if earlier is not None:
            missing = [verb for verb in _VERB_ORDER if verb not in earlier]
            return missing[0] if missing else _UNNAMED_METHOD
    elif earlier is not None:
        missing = _ordered(later - earlier - {"HEAD"})
        if missing:
            return missing[0]
    later_phase, earlier_phase = _head_phase(later), _head_phase(earlier)
    if later_phase is not None and (earlier_phase is None or earlier_phase > later_phase):
        return "HEAD"
    return None


def _shared_method(earlier: frozenset[str] | None, later: frozenset[str] | None) -> str | None:
    """A method both routes take with the earlier one first, or None."""
    if earlier is None and later is None:
        return "GET"
    if earlier is None and later is not None:
        shared = _ordered(later - {"HEAD"})
    elif later is None and earlier is not None:
        shared = _ordered(earlier - {"HEAD"})
    else:
        shared = _ordered((earlier or frozenset()) & (later or frozenset()) - {"HEAD"})
    if shared:
        return shared[0]
    later_phase, earlier_phase = _head_phase(later), _head_phase(earlier)
    if later_phase is not None and earlier_phase is not None and earlier_phase <= later_phase:
        return "HEAD"
    return None


def _request_path(normalized: str) -> str:
    """A request path the matcher normalizes to `normalized` (it cuts one trailing slash)."""
    return normalized + "/" if len(normalized) > 1 and normalized.endswith("/") else normalized


# -- the questions -----------------------------------------------------------------------------


def escaping_request(earlier: RoutePattern, later: RoutePattern) -> tuple[str, str] | None:
    """A request (method, path) that `later` takes although `earlier` comes first, or None when
    `earlier` takes every request of `later` (or the question is past the bound: see covers)."""
    method = _escaping_method(earlier.verbs, later.verbs)
    if method is not None:
        return method, _request_path(_sample_path(later)[0])
    try:
        path = _first_path(_automaton(later), _automaton(earlier), wants_both=False)
    except _Undecided:
        return None
    if path is None:
        return None
    shared = _shared_method(earlier.verbs, later.verbs)
    if shared is None:
        # No escaping method means `earlier` takes every method of `later`.
        raise RuntimeError(f"no shared method for {earlier.path!r} and {later.path!r}")
    return shared, _request_path(path)


def _first_segments(pattern: RoutePattern) -> frozenset[str] | None:
    """Every first path segment the pattern allows, when each is one literal ("" for `/`)."""
    firsts: set[str] = set()
    for alternative in pattern.alternatives:
        if not alternative:
            firsts.add("")
        elif len(alternative[0]) == 1 and alternative[0][0].kind is TokenKind.LITERAL:
            firsts.add(alternative[0][0].text)
        else:
            return None
    return frozenset(firsts)


def _are_apart(a: RoutePattern, b: RoutePattern) -> bool:
    """True when no path can match both because their literal first segments differ: the cheap
    test that settles most pairs of a real route table (`/projects/...` and `/users/...`)."""
    a_firsts, b_firsts = _first_segments(a), _first_segments(b)
    return a_firsts is not None and b_firsts is not None and a_firsts.isdisjoint(b_firsts)


def covers(earlier: RoutePattern, later: RoutePattern) -> bool:
    """True when `earlier`, placed before `later`, takes every request `later` could match, so
    `later` never matches. Exact for method and path; False when undecided (past the bound)."""
    return _escaping_method(earlier.verbs, later.verbs) is None and covers_paths(earlier, later)


def covers_paths(earlier: RoutePattern, later: RoutePattern) -> bool:
    """True when `earlier` matches every path `later` does, whatever their methods: `later`,
    moved above `earlier`, would take all of `earlier`'s requests in the methods they share."""
    if _are_apart(earlier, later):
        return False
    try:
        path = _first_path(_automaton(later), _automaton(earlier), wants_both=False)
    except _Undecided:
        return False
    return path is None


def taken_request(earlier: RoutePattern, later: RoutePattern) -> tuple[str, str] | None:
    """A request (method, path) of `later` that `earlier`, placed before it, takes; None if
    `earlier` takes none of them (or the question is past the bound)."""
    method = _shared_method(earlier.verbs, later.verbs)
    if method is None or _are_apart(earlier, later):
        return None
    try:
        path = _first_path(_automaton(later), _automaton(earlier), wants_both=True)
    except _Undecided:
        return None
    return None if path is None else (method, _request_path(path))


def takes_some(earlier: RoutePattern, later: RoutePattern) -> str | None:
    """An example request path of `later` that `earlier` takes first (`/projects/:id` takes
    `/projects/new` of `/projects/new`), or None. `taken_request` also gives its method."""
    found = taken_request(earlier, later)
    return None if found is None else found[1]


# -- a whole route list ------------------------------------------------------------------------

# Fills params and globs in sample paths: one character every `:p` and `*g` accepts.
_FILL = "1"


def _sample_path(pattern: RoutePattern) -> list[str]:
    """One normalized path per alternative, params and globs filled with `_FILL`."""
    out: list[str] = []
    for alternative in pattern.alternatives:
        segments = [
            "".join(token.text if token.kind is TokenKind.LITERAL else _FILL for token in segment)
            for segment in alternative
        ]
        out.append("/" + "/".join(segments))
    return out


def _sample_method(verbs: frozenset[str] | None) -> str:
    if verbs is None:
        return "GET"
    ordered = _ordered(verbs - {"HEAD"})
    return ordered[0] if ordered else "HEAD"


def unreachable(patterns: Sequence[RoutePattern]) -> list[tuple[int, int]]:
    """(later index, earlier index) for every route an earlier route covers, naming the first
    route that covers it (never itself unreachable: whatever covers it covers the later one too).

    From a config: ``unreachable([parse_match(route.match) for route in config.routes])``; from a
    built table: ``unreachable(table.patterns)``. Cost: one match per route, since a sample
    request the route itself wins proves it reachable; only a route losing its samples is
    compared with the earlier routes that take them.
    """
    matcher = RouteMatcher(patterns)
    found: list[tuple[int, int]] = []
    for later_index, later in enumerate(patterns):
        method = _sample_method(later.verbs)
        if any(matcher.match(method, path) == later_index for path in _sample_path(later)):
            continue
        earlier_index = first_cover(patterns[:later_index], later)
        if earlier_index is not None:
            found.append((later_index, earlier_index))
    return found


def first_cover(earlier: Sequence[RoutePattern], later: RoutePattern) -> int | None:
    """The index of the first of `earlier` that covers `later` (see covers), or None.

    Each candidate must first take `later`'s sample paths, a regex match each; only the few
    that do are compared exactly.
    """
    samples = _sample_path(later)
    for index, pattern in enumerate(earlier):
        if _escaping_method(pattern.verbs, later.verbs) is not None:
            continue
        if any(pattern.capture(path) is None for path in samples):
            continue
        if covers(pattern, later):
            return index
    return None


__all__ = [
    "covers",
    "covers_paths",
    "escaping_request",
    "first_cover",
    "taken_request",
    "takes_some",
    "unreachable",
]
