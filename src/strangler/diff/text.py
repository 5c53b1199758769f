"""Comparison of text bodies (HTML, plain text, anything that decodes): normalized, then equal.

Pure.

Rules:
- Both texts go through the `normalize` rules, then whitespace collapses: every run of
  whitespace, line breaks included, counts as one space, and leading and trailing whitespace
  does not count. Indentation and blank lines are noise; the words and markup are not.
- A difference is one Difference at path `body` (kind CHANGED). `primary` and `shadow` hold
  the normalized texts around the first character that differs (EXCERPT_BEFORE characters
  before it, EXCERPT_AFTER after), so a one-line minified page still shows where it differs;
  `detail` holds a unified diff of the normalized lines (blank lines dropped), at most
  MAX_DIFF_LINES lines and MAX_DIFF_CHARS characters.
- Bounded work: difflib sees at most MAX_LINES_DIFFED lines a side, each cut at 200 characters.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

from strangler.diff.model import Difference, DifferenceKind
from strangler.diff.normalize import Normalizer, normalize
from strangler.diff.values import MAX_STRING_CHARS

EXCERPT_BEFORE = 60
EXCERPT_AFTER = 140
MAX_DIFF_LINES = 20
MAX_DIFF_CHARS = 2048
MAX_LINES_DIFFED = 1000
_WHITESPACE = re.compile(r"\s+")


def compare_text(primary: str, shadow: str, normalizers: Sequence[Normalizer]) -> Difference | None:
    """The one difference between two text bodies, or None if they are equal once normalized."""
    lines_a = _lines(normalize(primary, normalizers))
    lines_b = _lines(normalize(shadow, normalizers))
    # Joining the collapsed lines with one space is the same as collapsing the whole text.
    flat_a = " ".join(lines_a)
    flat_b = " ".join(lines_b)
    if flat_a == flat_b:
        return None
    at = _first_difference(flat_a, flat_b)
    return Difference(
        path="body",
        kind=DifferenceKind.CHANGED,
        primary=_excerpt(flat_a, at),
        shadow=_excerpt(flat_b, at),
        rule_path="body",
        detail=_unified_diff(lines_a, lines_b),
    )


def _lines(text: str) -> list[str]:
    collapsed = (_WHITESPACE.sub(" ", line).strip() for line in text.splitlines())
    return [line for line in collapsed if line]


def _first_difference(a: str, b: str) -> int:
    """Length of the common prefix, by bisection so the comparing stays in C."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _excerpt(text: str, at: int) -> str:
    start = max(0, at - EXCERPT_BEFORE)
    end = at + EXCERPT_AFTER
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def _cut(line: str) -> str:
    return line if len(line) <= MAX_STRING_CHARS else line[:MAX_STRING_CHARS] + "…"


def _unified_diff(lines_a: list[str], lines_b: list[str]) -> str:
    diff = difflib.unified_diff(
        [_cut(line) for line in lines_a[:MAX_LINES_DIFFED]],
        [_cut(line) for line in lines_b[:MAX_LINES_DIFFED]],
        "primary",
        "shadow",
        n=1,
        lineterm="",
    )
    kept: list[str] = []
    size = 0
    for line in diff:
        if len(kept) == MAX_DIFF_LINES or size + len(line) + 1 > MAX_DIFF_CHARS:
            kept.append("…")
            break
        kept.append(line)
        size += len(line) + 1
    if not kept:
        return f"the first difference is past line {MAX_LINES_DIFFED}"
    return "\n".join(kept)
