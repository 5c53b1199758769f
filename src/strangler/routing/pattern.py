"""Parse one route's `match` string, exactly as `bin/rails routes` prints it, into a RoutePattern.

Pure: no I/O, and the same string always gives the same pattern or the same PatternError.

Rules, taken from Rails (ActionDispatch::Journey and ActionDispatch::Routing::Mapper):

- `match` is a verb part, whitespace, then a path pattern: ``"GET|HEAD /projects/:id(.:format)"``.
- The verb part is `|`-separated uppercase HTTP methods Rails knows, or `ANY` (or `*`) alone for
  every method. Verbs are compared case-sensitively, as HTTP methods are (RFC 9110 §9.1).
- `:name` matches one or more characters other than `/`, `.` and `?`: Rails' default requirement,
  which is why `/projects/1.json` gives id=1, format=json and `/projects/1.2.json` matches nothing.
- `*name` matches one or more of any character, `/` included, shortest first: Rails makes globs
  non-greedy so that `/*path(.:format)` on `/a/b.json` gives path=a/b, format=json.
- `( ... )` is optional and may nest; `\\` makes the next character literal; the rest is literal.
- A segment may mix literals and params (`/:id.:format`, `/v:version`, `/files/:name-:rev`), and a
  glob may be followed by more pattern (`/*path/edit`, `/*path.:format`).
- A trailing `/` is dropped, as Rails' Mapper normalizes route paths; an empty segment (`//`) is an
  error, since no normalized request path can contain one where a route expects a segment.

Every error names what is wrong and the 1-based character of the whole `match` string where it is.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import assert_never

# Rails' default requirement for a named segment (Journey::Nodes::Symbol::DEFAULT_EXP).
PARAM_REGEX = r"[^/.?]+"
# Rails compiles globs to /.+?/m when the route may end in an optional format (the default).
GLOB_REGEX = r".+?"

# ActionDispatch::Request::HTTP_METHODS: RFC 9110 plus PATCH (RFC 5789) and the WebDAV family
# Rails accepts in `via:`. Anything else in a verb part is a typo, so it is an error.
KNOWN_VERBS = frozenset({
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "VERSION-CONTROL",
    "REPORT", "CHECKOUT", "CHECKIN", "UNCHECKOUT", "MKWORKSPACE", "UPDATE", "LABEL", "MERGE",
    "BASELINE-CONTROL", "MKACTIVITY", "ORDERPATCH", "ACL", "SEARCH", "MKCALENDAR",
})  # fmt: skip
ANY_VERB_TOKENS = frozenset({"ANY", "*"})

# Each optional group doubles the alternatives; real routes have at most a handful of groups.
MAX_ALTERNATIVES = 256

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
# Characters that cannot appear raw in a request path, so a pattern containing them is a typo.
_FORBIDDEN_CHARS = frozenset(" \t\r\n?#")
_ESCAPABLE_CHARS = frozenset("()*:\\")
_PLACEHOLDER_OPENERS = {"{": "}", "<": ">"}


class PatternError(ValueError):
    """A route's `match` string is not a valid verb plus Rails path pattern.

    `position` is the 0-based offset into the `match` string; the message shows it 1-based.
    """

    def __init__(self, reason: str, match: str, position: int) -> None:
        self.reason = reason
        self.match = match
        self.position = position
        super().__init__(f"{reason} at character {position + 1} of {match!r}")


class TokenKind(enum.Enum):
    """What one piece of a path pattern matches."""

    LITERAL = "literal"
    PARAM = "param"
    GLOB = "glob"


@dataclass(frozen=True, slots=True)
class Token:
    """One literal run, `:param` or `*glob`. `pos` is its 0-based offset in the `match` string."""

    kind: TokenKind
    text: str
    pos: int

    def regex(self) -> str:
        """This token as a non-capturing regex fragment."""
        match self.kind:
            case TokenKind.LITERAL:
                return re.escape(self.text)
            case TokenKind.PARAM:
                return PARAM_REGEX
            case TokenKind.GLOB:
                return GLOB_REGEX
            case _:
                assert_never(self.kind)


# One path segment (the text between two `/`), as the tokens it is made of; never holds a `/`.
Segment = tuple[Token, ...]
# One way through the optional groups: the segments after the leading `/`; () is the root path.
Alternative = tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class RoutePattern:
    """A parsed `match` string.

    `verbs` is None for ANY. `path` is the path pattern as written. `alternatives` lists every way
    through the optional groups, split into segments, for the trie in matcher.py. `regex` is the
    whole pattern as one regex (optional groups kept), used to capture params; its group i+1
    captures `param_names[i]`.
    """

    verbs: frozenset[str] | None
    path: str
    alternatives: tuple[Alternative, ...]
    regex: re.Pattern[str] = field(repr=False)
    param_names: tuple[str, ...]

    def accepts(self, method: str) -> bool:
        """Whether this route's verbs include `method` (no HEAD-as-GET here; see matcher.py)."""
        return self.verbs is None or method in self.verbs

    def capture(self, normalized_path: str) -> dict[str, str] | None:
        """The params `normalized_path` gives, or None if it does not match.

        Values are raw, as they appear in the path (Rails would percent-decode them). A param in
        an optional group that did not take part is absent, as in Rails' path_parameters.
        """
        found = self.regex.fullmatch(normalized_path)
        if found is None:
            return None
        return {
            name: value
            for name, value in zip(self.param_names, found.groups(), strict=True)
            if value is not None
        }


# A config's patterns are parsed by its validation, its reachability check and its route table;
# a reload parses the same strings again. The result is immutable, so one parse serves all.
@functools.lru_cache(maxsize=8192)
def parse_match(match: str) -> RoutePattern:
    """Parse ``"VERBS /path/pattern"``; raises PatternError naming the problem and its character."""
    verb_start = len(match) - len(match.lstrip())
    if verb_start == len(match):
        raise PatternError("empty match: expected a verb and a path", match, 0)
    if match[verb_start] in "/(":
        raise PatternError("missing verb before the path", match, verb_start)
    verb_end = verb_start
    while verb_end < len(match) and not match[verb_end].isspace():
        verb_end += 1
    path_start = verb_end
    while path_start < len(match) and match[path_start].isspace():
        path_start += 1
    if path_start == len(match):
        raise PatternError("missing path after the verb", match, verb_end)
    verbs = _parse_verbs(match, verb_start, verb_end)
    path = match[path_start:].rstrip()
    return _compile_path(match, path, path_start, verbs)


def fragment_regex(segments: Sequence[Segment]) -> str:
    """Non-capturing regex source for `segments` joined by `/`, to match the same joined text."""
    return "/".join("".join(token.regex() for token in segment) for segment in segments)


def _parse_verbs(match: str, start: int, end: int) -> frozenset[str] | None:
    verbs: set[str] = set()
    is_any = False
    pos = start
    for token in match[start:end].split("|"):
        if not token:
            raise PatternError("empty verb in the verb list", match, pos)
        if token in ANY_VERB_TOKENS:
            is_any = True
        elif token in KNOWN_VERBS:
            verbs.add(token)
        elif token.upper() in KNOWN_VERBS or token.upper() == "ANY":
            raise PatternError(f"verb {token!r} must be uppercase", match, pos)
        else:
            raise PatternError(f"unknown verb {token!r}", match, pos)
        pos += len(token) + 1
    if is_any and verbs:
        raise PatternError("ANY cannot be combined with other verbs", match, start)
    return None if is_any else frozenset(verbs)


@dataclass(frozen=True, slots=True)
class _Group:
    """An optional group while parsing: what is between its parentheses."""

    children: tuple[Token | _Group, ...]


class _PathParser:
    """Recursive descent over the path pattern; positions are offsets into the `match` string."""

    def __init__(self, match: str, path: str, offset: int) -> None:
        self.match = match
        self.path = path
        self.offset = offset
        self.i = 0

    def error(self, reason: str, i: int) -> PatternError:
        return PatternError(reason, self.match, self.offset + i)

    def _placeholder_hint(self, opener: str) -> str:
        # `{id}` (OpenAPI, Express' docs) and `<id>` (Flask) are the usual slips from other
        # frameworks; neither character is allowed unencoded in a URI path (RFC 3986 §2), so a
        # literal one can never be meant.
        closer = _PLACEHOLDER_OPENERS[opener]
        end = self.path.find(closer, self.i + 1)
        name = self.path[self.i + 1 : end] if end > self.i + 1 else ""
        if name and all(c in _NAME_CHARS for c in name):
            return f"`{opener}{name}{closer}` is not a Rails pattern: Rails patterns use `:{name}`"
        return f"character {opener!r} cannot appear in a path (Rails patterns use `:name`)"

    def parse(self) -> tuple[Token | _Group, ...]:
        nodes = self.sequence(depth=0)
        if self.i < len(self.path):
            raise self.error("unbalanced ')'", self.i)
        return nodes

    def sequence(self, depth: int) -> tuple[Token | _Group, ...]:
        path = self.path
        nodes: list[Token | _Group] = []
        literal: list[str] = []
        literal_start = 0

        def flush() -> None:
            if literal:
                text = "".join(literal)
                nodes.append(Token(TokenKind.LITERAL, text, self.offset + literal_start))
                literal.clear()

        while self.i < len(path):
            char = path[self.i]
            if char == "(":
                flush()
                open_at = self.i
                self.i += 1
                children = self.sequence(depth + 1)
                if self.i >= len(path):
                    raise self.error("unclosed '('", open_at)
                self.i += 1
                if not children:
                    raise self.error("empty optional group '()'", open_at)
                nodes.append(_Group(children))
            elif char == ")":
                if depth == 0:
                    raise self.error("unbalanced ')'", self.i)
                break
            elif char in ":*":
                flush()
                start = self.i
                self.i += 1
                while self.i < len(path) and path[self.i] in _NAME_CHARS:
                    self.i += 1
                name = path[start + 1 : self.i]
                what = "param" if char == ":" else "glob"
                if not name:
                    raise self.error(f"empty {what} name after '{char}'", start)
                kind = TokenKind.PARAM if char == ":" else TokenKind.GLOB
                nodes.append(Token(kind, name, self.offset + start))
            elif char == "\\":
                if self.i + 1 >= len(path) or path[self.i + 1] not in _ESCAPABLE_CHARS:
                    raise self.error("'\\' must be followed by one of ( ) * : \\", self.i)
                if not literal:
                    literal_start = self.i
                literal.append(path[self.i + 1])
                self.i += 2
            elif char in _PLACEHOLDER_OPENERS:
                raise self.error(self._placeholder_hint(char), self.i)
            elif char in _FORBIDDEN_CHARS:
                raise self.error(f"character {char!r} cannot appear in a path", self.i)
            else:
                if not literal:
                    literal_start = self.i
                literal.append(char)
                self.i += 1
        flush()
        return tuple(nodes)


def _compile_path(match: str, path: str, offset: int, verbs: frozenset[str] | None) -> RoutePattern:
    if path[0] not in "/(":
        raise PatternError("path must start with '/'", match, offset)
    # Rails' Mapper strips a trailing slash from route paths; requests lose theirs in matcher.py.
    body = path[:-1] if len(path) > 1 and path.endswith("/") else path
    nodes = _PathParser(match, body, offset).parse()

    names: dict[str, int] = {}
    _check_names(nodes, names, match)
    count = _count_alternatives(nodes)
    if count > MAX_ALTERNATIVES:
        raise PatternError(
            f"too many optional groups ({count} alternatives, at most {MAX_ALTERNATIVES})",
            match,
            offset,
        )
    alternatives: list[Alternative] = []
    for flat in _expand(nodes):
        alternative = _segment(flat, match, offset)
        if alternative is not None and alternative not in alternatives:
            alternatives.append(alternative)
    if not alternatives:
        raise PatternError(
            "path must start with '/' (with or without its optional groups)", match, offset
        )

    group_names: list[str] = []
    source = _capturing_regex(nodes, group_names)
    return RoutePattern(
        verbs=verbs,
        path=path,
        alternatives=tuple(alternatives),
        regex=re.compile(source, re.DOTALL),
        param_names=tuple(group_names),
    )


def _check_names(nodes: Sequence[Token | _Group], seen: dict[str, int], match: str) -> None:
    for node in nodes:
        if isinstance(node, _Group):
            _check_names(node.children, seen, match)
        elif node.kind is not TokenKind.LITERAL:
            if node.text in seen:
                raise PatternError(f"duplicate param name {node.text!r}", match, node.pos)
            seen[node.text] = node.pos


def _count_alternatives(nodes: Sequence[Token | _Group]) -> int:
    count = 1
    for node in nodes:
        if isinstance(node, _Group):
            count *= _count_alternatives(node.children) + 1
    return count


def _expand(nodes: Sequence[Token | _Group]) -> list[list[Token]]:
    """Every way through the optional groups, longest (every group taken) first."""
    results: list[list[Token]] = [[]]
    for node in nodes:
        if isinstance(node, _Group):
            inner = _expand(node.children)
            results = [head + tail for head in results for tail in [*inner, []]]
        else:
            for head in results:
                head.append(node)
    return results


def _segment(flat: Sequence[Token], match: str, offset: int) -> Alternative | None:
    """Split one alternative at its `/`s.

    None if it does not start with `/` (`(/a)(.:format)` without `/a`): no request path can match
    it, and Rails accepts such patterns too, so it is dropped; parse_match fails only when every
    alternative is dropped.
    """
    if not flat:
        return None
    segments: list[list[Token]] = [[]]
    slash_positions: list[int] = [offset]
    for token in flat:
        if token.kind is not TokenKind.LITERAL:
            segments[-1].append(token)
            continue
        at = 0
        for k, part in enumerate(token.text.split("/")):
            if k:
                segments.append([])
                slash_positions.append(token.pos + at - 1)
            if part:
                _append_literal(segments[-1], Token(TokenKind.LITERAL, part, token.pos + at))
            at += len(part) + 1
    if segments[0]:
        return None
    rest = segments[1:]
    if len(rest) == 1 and not rest[0]:
        return ()  # the root path "/"
    for segment, slash_pos in zip(rest, slash_positions[1:], strict=True):
        if not segment:
            raise PatternError(
                "empty path segment ('//', or a '/' ending an optional group)", match, slash_pos
            )
    return tuple(tuple(segment) for segment in rest)


def _append_literal(segment: list[Token], token: Token) -> None:
    # Literals from different groups meet after expansion (`new(.json)`); one run keeps the
    # matcher's shape test a single comparison.
    if segment and segment[-1].kind is TokenKind.LITERAL:
        previous = segment[-1]
        segment[-1] = Token(TokenKind.LITERAL, previous.text + token.text, previous.pos)
    else:
        segment.append(token)


def _capturing_regex(nodes: Sequence[Token | _Group], names: list[str]) -> str:
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, _Group):
            parts.append(f"(?:{_capturing_regex(node.children, names)})?")
        elif node.kind is TokenKind.LITERAL:
            parts.append(re.escape(node.text))
        else:
            names.append(node.text)
            parts.append(f"({node.regex()})")
    return "".join(parts)
