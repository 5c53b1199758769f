"""The path rules of a route compiled into one automaton the JSON walk steps through.

Pure. Built once per route at config load and never changed after, so concurrent walks share it.

How: a rule is a sequence of steps (paths.Step); a position is "this rule has matched its first
p steps". A state is the set of (rule, position) pairs alive at a node, and it knows in advance
- what the rules say about its own node: ignored, unordered (and by which key), tolerance;
- its children: `by_key[name]` for the member names some live rule spells out, `other_key` for
  every other name; `by_index[n]` and `other_index` likewise for array elements.
So walking into a child costs one dict lookup, and no string is built for a path the walk
does not report.

Rules:
- Where two rules of one kind match the same node, the first one written wins.
- Keys no rule names share the `other_*` child, so documents with unbounded key sets never grow
  the automaton. It has one state per distinct set of live positions, built eagerly; rule sets
  that need more than MAX_STATES (only many overlapping `..` rules can) are rejected at load.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from strangler.diff.paths import Step, Wildcard
from strangler.diff.tolerance import Tolerance

MAX_STATES = 2_000

Position = tuple[int, int]


class RuleKind(Enum):
    IGNORE = "ignore"
    UNORDERED = "unordered"
    TOLERANCE = "tolerance"


@dataclass(frozen=True, slots=True)
class PathRule:
    """One compiled path rule. `key` is the unordered key field (None: multiset)."""

    kind: RuleKind
    steps: tuple[Step, ...]
    key: str | None = None
    tolerance: Tolerance | None = None


class _Unnamed(Enum):
    """A member name or an index that no rule spells out: only wildcards select it."""

    KEY = "key"
    INDEX = "index"


class PathState:
    """What the rules say at one node, and where each child leads. Immutable once built."""

    __slots__ = (
        "by_index",
        "by_key",
        "is_ignored",
        "is_unordered",
        "other_index",
        "other_key",
        "tolerance",
        "unordered_key",
    )

    def __init__(self, rules: Sequence[PathRule], positions: frozenset[Position]) -> None:
        matched = sorted(rule for rule, at in positions if at == len(rules[rule].steps))
        here = [rules[rule] for rule in matched]
        self.is_ignored = any(rule.kind is RuleKind.IGNORE for rule in here)
        unordered = [rule for rule in here if rule.kind is RuleKind.UNORDERED]
        self.is_unordered = bool(unordered)
        self.unordered_key = unordered[0].key if unordered else None
        self.tolerance = next((rule.tolerance for rule in here if rule.tolerance is not None), None)
        # Filled by compile_rules; a state is never reachable before that is done.
        self.by_key: dict[str, PathState] = {}
        self.by_index: dict[int, PathState] = {}
        self.other_key: PathState = self
        self.other_index: PathState = self

    def __repr__(self) -> str:
        return (
            f"<PathState ignored={self.is_ignored} unordered={self.is_unordered}"
            f" keys={sorted(self.by_key)} indices={sorted(self.by_index)}>"
        )


def _selects(selector: object, element: str | int | _Unnamed) -> bool:
    if selector is Wildcard.ANY:
        return True
    if isinstance(element, _Unnamed):
        return False
    # type() and not ==: the member "1" is not the element [1].
    return type(selector) is type(element) and selector == element


def _advance(
    rules: Sequence[PathRule], positions: frozenset[Position], element: str | int | _Unnamed
) -> frozenset[Position]:
    after: set[Position] = set()
    for rule, at in positions:
        steps = rules[rule].steps
        if at == len(steps):
            continue
        step = steps[at]
        if step.is_descent:
            after.add((rule, at))
        if _selects(step.selector, element):
            after.add((rule, at + 1))
    return frozenset(after)


def compile_rules(rules: Sequence[PathRule]) -> PathState:
    """The root state of the automaton for `rules`; ValueError past MAX_STATES states."""
    states: dict[frozenset[Position], PathState] = {}
    pending: list[frozenset[Position]] = []

    def state_for(positions: frozenset[Position]) -> PathState:
        state = states.get(positions)
        if state is None:
            if len(states) >= MAX_STATES:
                raise ValueError(
                    f"the path rules combine into more than {MAX_STATES} matcher states;"
                    " use fewer overlapping '..' rules"
                )
            state = states[positions] = PathState(rules, positions)
            pending.append(positions)
        return state

    root = state_for(frozenset((rule, 0) for rule in range(len(rules))))
    while pending:
        positions = pending.pop()
        state = states[positions]
        names: set[str] = set()
        indices: set[int] = set()
        for rule, at in positions:
            if at < len(rules[rule].steps):
                selector = rules[rule].steps[at].selector
                if isinstance(selector, str):
                    names.add(selector)
                elif isinstance(selector, int):
                    indices.add(selector)
        state.by_key = {name: state_for(_advance(rules, positions, name)) for name in names}
        state.by_index = {index: state_for(_advance(rules, positions, index)) for index in indices}
        state.other_key = state_for(_advance(rules, positions, _Unnamed.KEY))
        state.other_index = state_for(_advance(rules, positions, _Unnamed.INDEX))
    return root
