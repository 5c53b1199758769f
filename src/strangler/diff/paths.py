"""Rule paths (a JSONPath subset) parsed into steps, and walked paths formatted for people.

Pure.

Grammar of a rule path: `$` followed by any number of steps, each one of
- `.name`, `['name']` or `["name"]`: the object member `name` (in quotes, `\\` escapes the
  quote or a backslash; `.name` stops at `.`, `[`, `]`, quotes, `*` and whitespace);
- `[N]`: the array element at index N (N >= 0; negative indices are not supported);
- `.*` or `[*]`: any member of an object and any element of an array;
- `..` before any of those (`..name`, `..['name']`, `..[N]`, `..*`, `..[*]`): recursive descent,
  the selector at any depth below, one level down or more (as in JSONPath, `$..id` does not
  match the root itself).

A walked path is a tuple of object keys (str), array indices (int) and KeyMatch pairs (field,
value), each an element of an `unordered` array found by its key field. `format_path` writes
`$.projects[3].name` (keys that are not identifiers in brackets, matched elements as
`[?(@.id==42)]`); `format_rule_path` writes every index and match as `[*]`, which parses back
into a rule covering every element.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import orjson

# Longest key value spelled out in a `[?(@.id==…)]` step, so one huge key cannot bloat a path.
_MAX_MATCH_VALUE_CHARS = 60
_DOT_NAME = re.compile(r"[^.\[\]\s'\"*]+")
_INDEX = re.compile(r"[0-9]+")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class Wildcard(Enum):
    """`*`: any object member or array element."""

    ANY = "*"


Selector = str | int | Wildcard


@dataclass(frozen=True, slots=True)
class Step:
    """One step of a rule path: a selector, and whether it may sit at any depth below (`..`)."""

    selector: Selector
    is_descent: bool = False


# An element of an `unordered` array, named by its key field and that field's value
# (`[?(@.id==42)]`): a plain (field, value) tuple, because the walk makes one for every element
# it descends into and a class instance costs ten times as much to build.
KeyMatch = tuple[str, object]
PathElement = str | int | KeyMatch


def parse_path(text: str) -> tuple[Step, ...]:
    """Parse a rule path into steps; ValueError says what is wrong and at which column."""
    if not text.startswith("$"):
        raise ValueError("a path starts with '$'")
    steps: list[Step] = []
    at = 1
    while at < len(text):
        is_descent = text.startswith("..", at)
        if is_descent:
            at += 2
            if at < len(text) and text[at] == "[":
                selector, at = _bracket(text, at)
            else:
                selector, at = _dot_selector(text, at)
        elif text[at] == ".":
            selector, at = _dot_selector(text, at + 1)
        elif text[at] == "[":
            selector, at = _bracket(text, at)
        else:
            raise ValueError(f"column {at + 1}: expected '.', '..' or '[', got {text[at]!r}")
        steps.append(Step(selector, is_descent))
    return tuple(steps)


def _dot_selector(text: str, at: int) -> tuple[Selector, int]:
    if text.startswith("*", at):
        return Wildcard.ANY, at + 1
    found = _DOT_NAME.match(text, at)
    if found is None:
        raise ValueError(f"column {at + 1}: expected a member name or '*'")
    return found.group(), found.end()


def _bracket(text: str, at: int) -> tuple[Selector, int]:
    inner = at + 1
    if text.startswith("*]", inner):
        return Wildcard.ANY, inner + 2
    if inner < len(text) and text[inner] in "'\"":
        return _quoted(text, inner)
    found = _INDEX.match(text, inner)
    if found is None or not text.startswith("]", found.end()):
        raise ValueError(
            f"column {inner + 1}: expected a quoted name, an index >= 0 or '*' and then ']'"
        )
    return int(found.group()), found.end() + 1


def _quoted(text: str, at: int) -> tuple[str, int]:
    quote = text[at]
    chars: list[str] = []
    i = at + 1
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])
            i += 2
            continue
        if char == quote:
            if not text.startswith("]", i + 1):
                raise ValueError(f"column {i + 2}: expected ']' after the quoted name")
            return "".join(chars), i + 2
        chars.append(char)
        i += 1
    raise ValueError(f"column {at + 1}: unclosed quote")


def _quote(name: str) -> str:
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _member(name: str) -> str:
    return "." + name if _IDENTIFIER.match(name) else _quote(name)


def _match_step(match: KeyMatch) -> str:
    field, found = match
    try:
        value = orjson.dumps(found).decode()
    except orjson.JSONEncodeError:
        value = "…"
    if len(value) > _MAX_MATCH_VALUE_CHARS:
        value = value[:_MAX_MATCH_VALUE_CHARS] + "…"
    return f"[?(@{_member(field)}=={value})]"


def format_path(path: tuple[PathElement, ...]) -> str:
    """`$.projects[3].name`: the exact node, for people reading one difference."""
    parts = ["$"]
    for element in path:
        if isinstance(element, str):
            parts.append(_member(element))
        elif isinstance(element, int):
            parts.append(f"[{element}]")
        else:
            parts.append(_match_step(element))
    return "".join(parts)


def format_rule_path(path: tuple[PathElement, ...]) -> str:
    """`$.projects[*].name`: the node with positions erased, what differences aggregate by."""
    return "".join(
        ["$"] + [_member(element) if type(element) is str else "[*]" for element in path]
    )
