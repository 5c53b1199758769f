"""The values the diff engine takes and gives: samples in, a Comparison of Differences out.

Pure data. Every class is a frozen, slotted dataclass (or an enum), so results can be shared
across tasks and stored without copying.

Rules:
- A Difference's `primary` and `shadow` are JSON-able and already shortened (values.shorten):
  strings cut at 200 characters with "…", containers whose JSON is longer summarized as
  "{…12 keys}" or "[…20 items]". The side that has no value (MISSING: shadow, EXTRA: primary)
  is None.
- `path` names one node (`status`, `header:content-type`, `$.projects[3].name`, `body`);
  `rule_path` is the same with array positions written `[*]`, so results aggregate by it and
  a user can paste it into an `ignore` rule.
- `detail` is free text for a human: for a text body the bounded unified diff, for a subtree
  below the depth limit why it was compared whole, for Set-Cookie which cookie names moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, StrEnum
from typing import TypeAlias

# A JSON-able value, already shortened. An alias, not `object` in the fields: mypyc compiles this
# module, and a compiled dataclass looks its field types up in the module's globals, where the
# builtin `object` is not (KeyError: 'object' at import).
Shortened: TypeAlias = object


@dataclass(frozen=True, slots=True)
class ResponseSample:
    """One captured response. Header names are kept as received; lookups fold case."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    # The capture stopped at its byte limit: the body is a prefix, so it is never compared.
    is_truncated: bool = False


class DifferenceKind(Enum):
    """How a node differs between the primary (legacy) and the shadow (new) answer."""

    CHANGED = "changed"
    MISSING = "missing"  # present in primary, absent in shadow
    EXTRA = "extra"  # absent in primary, present in shadow
    TYPE_CHANGED = "type_changed"


class BodyKind(StrEnum):
    """How the bodies were compared; SKIPPED when either body was truncated at capture,
    IDENTICAL when the whole answers were byte-identical and nothing was parsed, OVER_BUDGET
    when the JSON walk stopped at the rules' `max_nodes` (the body's differences are unknown)."""

    JSON = "json"
    TEXT = "text"
    BINARY = "binary"
    SKIPPED = "skipped"
    IDENTICAL = "identical"
    OVER_BUDGET = "over_budget"


@dataclass(frozen=True, slots=True)
class Difference:
    """One node that differs. See the module docstring for what each field holds."""

    path: str
    kind: DifferenceKind
    primary: Shortened
    shadow: Shortened
    rule_path: str
    detail: str = ""

    def as_dict(self) -> dict[str, object]:
        """A JSON-able dict, for stores and the admin API."""
        return {
            "path": self.path,
            "kind": self.kind.value,
            "primary": self.primary,
            "shadow": self.shadow,
            "rule_path": self.rule_path,
            "detail": self.detail,
        }


@dataclass(frozen=True, slots=True)
class Comparison:
    """The outcome of comparing one primary answer with its shadow.

    `is_equal` covers what was compared: status and headers always (as the rules say), the body
    only when `body_compared`. `is_truncated` means more differences existed than the rules'
    `max_differences`; those kept are the first found, in walk order. `nodes_visited` is the
    JSON walk's work (json_walk.py counts it), at most the rules' `max_nodes`.
    """

    is_equal: bool
    differences: tuple[Difference, ...]
    body_compared: bool
    kind: BodyKind
    is_truncated: bool = False
    nodes_visited: int = 0
