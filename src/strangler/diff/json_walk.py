"""Structural comparison of two parsed JSON documents under a route's diff rules.

Pure. Never raises for values orjson.loads returns, however deep or large.

Rules:
- Objects compare by key: a key only in primary is MISSING, only in shadow EXTRA.
- Arrays compare by index, unless an `unordered` rule matches the array:
  - with a key field, elements pair up by equal key values (duplicates in order of
    appearance); an unpaired primary element is MISSING, an unpaired shadow one EXTRA, and a
    paired one is compared under the rules at `[?(@.id==42)]`. Elements without the field
    (or not objects) are matched among themselves as a multiset;
  - with null, as a multiset: each primary element takes the first unused shadow element equal
    to it under the rules. Leftovers are MISSING (primary index) and EXTRA (shadow index). Rule
    lookups use the primary index for paired and MISSING elements, the shadow's for EXTRA.
- Numbers: int and float are equal when numerically equal; a bool is never a number (true vs 1
  is TYPE_CHANGED); a `tolerance` rule widens equality at the numbers it matches.
- Strings: equal, or equal once both are normalized. null is a type of its own: null vs 0 is
  TYPE_CHANGED, and a key that is absent is MISSING, not null.
- `ignore` drops a node and its subtree, on either side, whatever the difference.
- Bounds: the (limit+1)th difference is not kept, the walk stops and `is_truncated` is set.
  At max_depth levels a differing subtree is reported as one CHANGED node, compared exactly and
  without rules (equality.deep_equal). An unordered multiset pairs by rules at most
  MAX_PAIR_PROBES times per array; beyond that, leftovers are reported as they are.
- Work: entering an object or array counts its members on both sides as visited (len(a) +
  len(b) nodes); a multiset counts again the elements a keyed match left to it, and probes and
  deep_equal count what they visit. Before the count would pass `max_nodes` the walk stops,
  with `is_over_budget` set and nodes_visited <= max_nodes: the differences found so far are
  not the answer, since the rest was not seen.
  Without the bound, 0.7 MB pairs shaped against the walk took up to 350 ms of CPU each in the
  compiled build, 256 multiset probes down deep elements the worst (bench_diff_adversarial.py).
  The strict-equality checks below run in C and are not counted: one may scan a subtree once
  per level above it, so their cost is bounded by the body's size times max_depth, not by
  max_nodes (~70 ms for a 0.7 MB pair of 63 nested levels; large pairs run off the loop).

Fast path: subtrees that are strictly equal (equality.is_same_tree) are equal under any rules,
because every rule only ever makes more values equal; the walk skips them without looking up a
rule or touching the path. With it, and compiled with mypyc (strangler.native), bench/bench_diff.py
compares ~21,000 pairs of ~2.3 KB documents per second on one core, both orjson parses included
(47 us a pair; 10,350 pairs/s in pure Python, measured one after the other on 2026-12-06).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from strangler.diff.automaton import PathState
from strangler.diff.equality import deep_equal, is_same_tree
from strangler.diff.model import Difference, DifferenceKind
from strangler.diff.normalize import Normalizer, normalize
from strangler.diff.paths import PathElement, format_path, format_rule_path
from strangler.diff.values import shorten

MAX_PAIR_PROBES = 256
_ABSENT: Any = object()
_DEPTH_DETAIL = "at the depth limit ({}): compared whole, without rules"
_CHANGED = DifferenceKind.CHANGED
_MISSING = DifferenceKind.MISSING
_EXTRA = DifferenceKind.EXTRA
_TYPE_CHANGED = DifferenceKind.TYPE_CHANGED


class _LimitReached(Exception):
    """The difference list is full: unwinds the whole walk in one step."""


class _BudgetSpent(Exception):
    """The walk would pass max_nodes: unwinds the whole walk (probes included) in one step."""


@dataclass(frozen=True, slots=True)
class JsonDiff:
    """What compare_json found: at most max_differences differences, whether more exist, and
    the work it took. When `is_over_budget`, the walk stopped early and found nothing final."""

    differences: list[Difference]
    is_truncated: bool
    is_over_budget: bool
    nodes_visited: int


def compare_json(
    primary: object,
    shadow: object,
    paths: PathState,
    normalizers: Sequence[Normalizer],
    *,
    max_differences: int,
    max_depth: int,
    max_nodes: int,
) -> JsonDiff:
    """The differences between two documents, visiting at most max_nodes nodes."""
    walk = _Walk(max_differences, max_depth, normalizers, max_nodes)
    if not paths.is_ignored and not _is_same(primary, shadow):
        try:
            walk.node(primary, shadow, paths, 0)
        except _LimitReached:
            pass  # the difference list is full; what it holds is the answer
        except _BudgetSpent:
            return JsonDiff([], False, True, walk.nodes_visited)
    return JsonDiff(walk.differences, walk.is_truncated, False, walk.nodes_visited)


def _is_same(a: object, b: object) -> bool:
    kind = type(a)
    if kind is not type(b):
        return False
    if kind is dict or kind is list:
        return is_same_tree(a, b)
    return a == b


def _hashable(value: object) -> object:
    """A dict key for an unordered key value or multiset element: equal values, equal keys."""
    kind = type(value)
    if kind is str or kind is int or kind is float or value is None:
        return value
    if kind is bool:
        return (bool, value)  # True == 1 in a dict; JSON true must not pair with 1
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return object()  # too deep to encode: pairs with nothing here, later only by probing


class _Walk:
    """One comparison in progress: the current path, the differences found, the budget."""

    __slots__ = (
        "_limit",
        "_max_depth",
        "_max_nodes",
        "_normalizers",
        "_path",
        "differences",
        "is_truncated",
        "nodes_visited",
    )

    def __init__(
        self, limit: int, max_depth: int, normalizers: Sequence[Normalizer], max_nodes: int
    ) -> None:
        self._limit = limit
        self._max_depth = max_depth
        self._normalizers = normalizers
        self._max_nodes = max_nodes
        self._path: list[PathElement] = []
        self.differences: list[Difference] = []
        self.is_truncated = False
        self.nodes_visited = 0

    def visit(self, count: int) -> None:
        """Count `count` nodes about to be visited, or stop the walk if they pass the budget."""
        visited = self.nodes_visited + count
        if visited > self._max_nodes:
            raise _BudgetSpent
        self.nodes_visited = visited

    def add(self, kind: DifferenceKind, primary: object, shadow: object, detail: str = "") -> None:
        if len(self.differences) >= self._limit:
            self.is_truncated = True
            raise _LimitReached
        path = tuple(self._path)
        self.differences.append(
            Difference(
                format_path(path),
                kind,
                shorten(primary),
                shorten(shadow),
                format_rule_path(path),
                detail,
            )
        )

    def node(self, a: Any, b: Any, state: PathState, depth: int) -> None:
        """Compare two values at the current path. The caller has checked `state.is_ignored`."""
        ta = type(a)
        tb = type(b)
        if ta is dict or ta is list:
            if tb is not ta:
                self.add(_TYPE_CHANGED, a, b)
            elif depth >= self._max_depth:
                is_equal, visited = deep_equal(a, b, self._max_nodes - self.nodes_visited)
                self.visit(visited)
                if is_equal is None:
                    raise _BudgetSpent
                if not is_equal:
                    self.add(_CHANGED, a, b, _DEPTH_DETAIL.format(depth))
            elif ta is dict:
                self._object(a, b, state, depth + 1)
            elif not state.is_unordered:
                self._by_index(a, b, state, depth + 1)
            elif state.unordered_key is None:
                self._multiset(a, range(len(a)), b, range(len(b)), state, depth + 1)
            else:
                self._by_key(a, b, state.unordered_key, state, depth + 1)
        elif ta is str:
            if tb is not str:
                self.add(_TYPE_CHANGED, a, b)
            elif a != b and not (
                self._normalizers
                and normalize(a, self._normalizers) == normalize(b, self._normalizers)
            ):
                self.add(_CHANGED, a, b)
        elif ta is int or ta is float:
            if tb is not int and tb is not float:
                self.add(_TYPE_CHANGED, a, b)
            elif a != b and (state.tolerance is None or not state.tolerance.allows(a, b)):
                self.add(_CHANGED, a, b)
        elif tb is not ta:  # bool or null against anything else
            self.add(_TYPE_CHANGED, a, b)
        elif a != b:
            self.add(_CHANGED, a, b)

    def _only(self, element: PathElement, kind: DifferenceKind, value: object) -> None:
        self._path.append(element)
        if kind is _MISSING:
            self.add(kind, value, None)
        else:
            self.add(kind, None, value)
        self._path.pop()

    def _object(self, a: dict[str, Any], b: dict[str, Any], state: PathState, depth: int) -> None:
        self.visit(len(a) + len(b))
        by_key = state.by_key
        other = state.other_key
        path = self._path
        absent = _ABSENT
        shared = 0
        for key, va in a.items():
            vb = b.get(key, absent)
            if vb is absent:
                if not by_key.get(key, other).is_ignored:
                    self._only(key, _MISSING, va)
                continue
            shared += 1
            kind = type(va)
            # Inline fast path: most members of similar documents are equal scalars.
            if kind is type(vb) and (
                is_same_tree(va, vb) if kind is dict or kind is list else va == vb
            ):
                continue
            child = by_key.get(key, other)
            if not child.is_ignored:
                path.append(key)
                self.node(va, vb, child, depth)
                path.pop()
        if shared < len(b):
            for key, vb in b.items():
                if key not in a and not by_key.get(key, other).is_ignored:
                    self._only(key, _EXTRA, vb)

    def _by_index(self, a: list[Any], b: list[Any], state: PathState, depth: int) -> None:
        self.visit(len(a) + len(b))
        by_index = state.by_index
        other = state.other_index
        path = self._path
        for i, (va, vb) in enumerate(zip(a, b, strict=False)):
            kind = type(va)
            if kind is type(vb) and (
                is_same_tree(va, vb) if kind is dict or kind is list else va == vb
            ):
                continue
            child = by_index.get(i, other) if by_index else other
            if not child.is_ignored:
                path.append(i)
                self.node(va, vb, child, depth)
                path.pop()
        for i in range(len(b), len(a)):
            if not by_index.get(i, other).is_ignored:
                self._only(i, _MISSING, a[i])
        for i in range(len(a), len(b)):
            if not by_index.get(i, other).is_ignored:
                self._only(i, _EXTRA, b[i])

    def _by_key(self, a: list[Any], b: list[Any], field: str, state: PathState, depth: int) -> None:
        self.visit(len(a) + len(b))
        by_index = state.by_index
        other = state.other_index
        path = self._path
        # Key value -> the first unpaired shadow element with it; duplicates queue in `later`
        # (rare, so the usual unique ids cost no list per element).
        waiting: dict[object, int] = {}
        later: dict[object, list[int]] = {}
        loose_b: list[int] = []
        for j, vb in enumerate(b):
            if type(vb) is dict and field in vb:
                key = vb[field]
                # Inline for the usual int and str ids; _hashable handles the rest.
                if type(key) is not int and type(key) is not str:
                    key = _hashable(key)
                if key in waiting:
                    later.setdefault(key, []).append(j)
                else:
                    waiting[key] = j
            else:
                loose_b.append(j)
        loose_a: list[int] = []
        is_deep = depth >= self._max_depth
        for i, va in enumerate(a):
            if type(va) is not dict or field not in va:
                loose_a.append(i)
                continue
            child = by_index.get(i, other) if by_index else other
            key = va[field]
            if type(key) is not int and type(key) is not str:
                key = _hashable(key)
            j = waiting.pop(key, -1)
            if j < 0:
                if not child.is_ignored:
                    self._only((field, va[field]), _MISSING, va)
                continue
            if later:
                queued = later.get(key)
                if queued:
                    waiting[key] = queued.pop(0)
            vb = b[j]
            # `==` first: most paired elements differ, and then is_same_tree is not called.
            if not child.is_ignored and not (va == vb and is_same_tree(va, vb)):
                path.append((field, va[field]))
                if is_deep:
                    self.node(va, vb, child, depth)
                else:  # both are objects: what node() would do, without its dispatch
                    self._object(va, vb, child, depth + 1)
                path.pop()
        extra = sorted([*waiting.values(), *(j for left in later.values() for j in left)])
        for j in extra:
            if not (by_index.get(j, other) if by_index else other).is_ignored:
                self._only((field, b[j][field]), _EXTRA, b[j])
        if loose_a or loose_b:
            self._multiset(a, loose_a, b, loose_b, state, depth)

    def _multiset(
        self,
        a: list[Any],
        a_indices: Sequence[int],
        b: list[Any],
        b_indices: Sequence[int],
        state: PathState,
        depth: int,
    ) -> None:
        def rules_at(i: int) -> PathState:
            return state.by_index.get(i, state.other_index)

        self.visit(len(a_indices) + len(b_indices))
        waiting: dict[object, list[int]] = {}
        for j in b_indices:
            if not rules_at(j).is_ignored:
                waiting.setdefault(_hashable(b[j]), []).append(j)
        left_a: list[int] = []
        for i in a_indices:
            if rules_at(i).is_ignored:
                continue
            exact = waiting.get(_hashable(a[i]))
            if exact:
                exact.pop(0)
            else:
                left_a.append(i)
        left_b = sorted(j for left in waiting.values() for j in left)
        if left_a and left_b and len(left_a) * len(left_b) <= MAX_PAIR_PROBES:
            unpaired: list[int] = []
            for i in left_a:
                for at, j in enumerate(left_b):
                    if self._is_equal_under_rules(a[i], b[j], rules_at(i), depth):
                        del left_b[at]
                        break
                else:
                    unpaired.append(i)
            left_a = unpaired
        for i in left_a:
            self._only(i, _MISSING, a[i])
        for j in left_b:
            self._only(j, _EXTRA, b[j])

    def _is_equal_under_rules(self, a: Any, b: Any, state: PathState, depth: int) -> bool:
        # A probe spends this walk's budget: 256 probes of deep elements, each nesting probes
        # of its own arrays, are what would otherwise multiply the work.
        probe = _Walk(0, self._max_depth, self._normalizers, self._max_nodes - self.nodes_visited)
        try:
            probe.node(a, b, state, depth)
        except _LimitReached:
            return False
        finally:
            self.nodes_visited += probe.nodes_visited
        return True
