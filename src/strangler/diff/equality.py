"""Strict equality of parsed JSON values, the way the diff engine means "equal" with no rules.

Pure. Never raises, whatever the nesting.

Rules:
- Numbers are equal when numerically equal (1 == 1.0); a bool is never a number (true != 1).
- Objects are equal when they have the same keys with equal values, in any order.

Python's `==` gets the first rule wrong (True == 1, so [True] == [1]), so `is_same_tree`
confirms a `==` with orjson's encoding, which spells true and 1 differently; both run in C,
which is what lets the walk skip identical subtrees cheaply. Both give up on very deep values
(Python's == at ~1000 levels, orjson.dumps past 254): `is_same_tree` then answers False, which
only means "walk it", and `deep_equal`, an explicit-stack walk, gives the exact answer.

`deep_equal` counts the nodes it visits the way the JSON walk does (a container's members, on
both sides) and gives up before it would pass the caller's budget.
"""

from __future__ import annotations

import sys

import orjson

_NUMBER_TYPES = (int, float)


def is_same_tree(a: object, b: object) -> bool:
    """True only if a and b are certainly equal; False may also mean "could not tell cheaply"."""
    try:
        return a == b and orjson.dumps(a) == orjson.dumps(b)
    except (RecursionError, orjson.JSONEncodeError):
        return False


def deep_equal(a: object, b: object, max_nodes: int = sys.maxsize) -> tuple[bool | None, int]:
    """Exact equality per the module rules, for values of any depth, and the nodes visited to
    tell. None (not compared) once telling would need more than `max_nodes` nodes."""
    pending = [(a, b)]
    visited = 0
    while pending:
        x, y = pending.pop()
        if isinstance(x, dict):
            if not isinstance(y, dict) or len(x) != len(y):
                return False, visited
            if visited + 2 * len(x) > max_nodes:
                return None, visited
            visited += 2 * len(x)
            for key, value in x.items():
                if key not in y:
                    return False, visited
                pending.append((value, y[key]))
        elif isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y):
                return False, visited
            if visited + 2 * len(x) > max_nodes:
                return None, visited
            visited += 2 * len(x)
            pending.extend(zip(x, y, strict=True))
        elif type(x) in _NUMBER_TYPES:
            if type(y) not in _NUMBER_TYPES or x != y:
                return False, visited
        elif type(x) is not type(y) or x != y:
            return False, visited
    return True, visited
