"""Comparison of the response headers a route's rules name.

Pure: the only state is a bounded memo of canonical values, invisible to callers.

Rules:
- Only the configured names are compared (default: Content-Type, Location, Cache-Control,
  Set-Cookie), case-insensitively. Paths are `header:<lowercased name>`.
- A name present only in primary is MISSING, only in shadow EXTRA; both absent is equal.
- Repeated fields are joined with ", " in order (RFC 9110 §5.3). Values are compared after
  trimming, collapsing whitespace, dropping it around `;` and `,`, and the `normalize` rules.
- Content-Type and Cache-Control compare case-insensitively (RFC 9110 §8.3.1 and RFC 9111
  §5.2: media types, parameters names such as charset and cache directives are
  case-insensitive); Cache-Control directives compare in any order.
- Set-Cookie compares cookie NAMES only, never values: sessions, CSRF tokens and expiry dates
  differ on every response and are secrets that must not reach a stored difference. The
  difference holds the sorted name lists, and `detail` which names only one side sets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from strangler.diff.model import Difference, DifferenceKind
from strangler.diff.normalize import Normalizer, normalize
from strangler.diff.values import shorten

_SPACE_AROUND_SEPARATORS = re.compile(r"\s*([;,])\s*")
_WHITESPACE = re.compile(r"\s+")
_CASE_INSENSITIVE = frozenset({"content-type", "cache-control"})
# Canonical forms by (name, joined value). A backend sends the same few header values on every
# answer, so after warm-up canonicalizing costs one dict lookup; bounded, cleared when full.
_CANONICAL_CACHE_MAX = 4096
_canonical_cache: dict[tuple[str, str], str] = {}


def compare_headers(
    primary: Sequence[tuple[str, str]],
    shadow: Sequence[tuple[str, str]],
    names: Sequence[str],
    normalizers: Sequence[Normalizer],
) -> list[Difference]:
    """Differences in the headers named in `names` (lowercase), in that order."""
    wanted = frozenset(names)
    by_name_a = _values_by_name(primary, wanted)
    by_name_b = _values_by_name(shadow, wanted)
    differences: list[Difference] = []
    for name in names:
        values_a = by_name_a.get(name, [])
        values_b = by_name_b.get(name, [])
        if not values_a and not values_b:
            continue
        if name == "set-cookie":
            found = _compare_cookie_names(values_a, values_b)
        else:
            found = _compare_values(name, values_a, values_b, normalizers)
        if found is not None:
            differences.append(found)
    return differences


def _values_by_name(
    headers: Sequence[tuple[str, str]], wanted: frozenset[str]
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for key, value in headers:
        name = key.lower()
        if name in wanted:
            found.setdefault(name, []).append(value)
    return found


def _difference(
    name: str, kind: DifferenceKind, primary: object, shadow: object, detail: str = ""
) -> Difference:
    path = f"header:{name}"
    return Difference(path, kind, primary, shadow, path, detail)


def _compare_values(
    name: str, values_a: list[str], values_b: list[str], normalizers: Sequence[Normalizer]
) -> Difference | None:
    joined_a = ", ".join(values_a)
    joined_b = ", ".join(values_b)
    if not values_b:
        return _difference(name, DifferenceKind.MISSING, shorten(joined_a), None)
    if not values_a:
        return _difference(name, DifferenceKind.EXTRA, None, shorten(joined_b))
    if joined_a == joined_b:
        return None
    canonical_a = _canonical(name, joined_a)
    canonical_b = _canonical(name, joined_b)
    # Normalizers only make more values equal, so they run only on values still different.
    if canonical_a == canonical_b or (
        normalizers and normalize(canonical_a, normalizers) == normalize(canonical_b, normalizers)
    ):
        return None
    return _difference(name, DifferenceKind.CHANGED, shorten(joined_a), shorten(joined_b))


def _canonical(name: str, joined: str) -> str:
    key = (name, joined)
    text = _canonical_cache.get(key)
    if text is None:
        if len(_canonical_cache) >= _CANONICAL_CACHE_MAX:
            _canonical_cache.clear()
        text = _canonical_cache[key] = _canonicalize(name, joined)
    return text


def _canonicalize(name: str, joined: str) -> str:
    text = _WHITESPACE.sub(" ", joined).strip()
    # Split keeps the separators (the pattern captures them) and drops the spaces around them;
    # cheaper than sub() with a group reference, which expands a template in Python per match.
    text = "".join(_SPACE_AROUND_SEPARATORS.split(text))
    if name in _CASE_INSENSITIVE:
        text = text.lower()
    if name == "cache-control":
        text = ",".join(sorted(text.split(",")))
    return text


def _cookie_names(values: list[str]) -> list[str]:
    return sorted({value.split("=", 1)[0].strip() for value in values})


def _compare_cookie_names(values_a: list[str], values_b: list[str]) -> Difference | None:
    names_a = _cookie_names(values_a)
    names_b = _cookie_names(values_b)
    if not values_b:
        return _difference("set-cookie", DifferenceKind.MISSING, shorten(names_a), None)
    if not values_a:
        return _difference("set-cookie", DifferenceKind.EXTRA, None, shorten(names_b))
    if names_a == names_b:
        return None
    only_a = sorted(set(names_a) - set(names_b))
    only_b = sorted(set(names_b) - set(names_a))
    detail = "; ".join(
        part
        for part in (
            f"only in primary: {', '.join(only_a)}" if only_a else "",
            f"only in shadow: {', '.join(only_b)}" if only_b else "",
        )
        if part
    )
    return _difference(
        "set-cookie", DifferenceKind.CHANGED, shorten(names_a), shorten(names_b), detail
    )
