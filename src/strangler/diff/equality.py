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
"""

from __future__ import annotations

import orjson

_NUMBER_TYPES = (int, float)


def is_same_tree(a: object, b: object) -> bool:
    """True only if a and b are certainly equal; False may also mean "could not tell cheaply"."""
    try:
        return a == b and orjson.dumps(a) == orjson.dumps(b)
    except (RecursionError, orjson.JSONEncodeError):
        return False


def deep_equal(a: object, b: object) -> bool:
    """Exact equality per the module rules, for values of any depth."""
    pending = [(a, b)]
    while pending:
        x, y = pending.pop()
        if isinstance(x, dict):
            if not isinstance(y, dict) or len(x) != len(y):
                return False
            for key, value in x.items():
                if key not in y:
                    return False
                pending.append((value, y[key]))
        elif isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y):
                return False
            pending.extend(zip(x, y, strict=True))
        elif type(x) in _NUMBER_TYPES:
            if type(y) not in _NUMBER_TYPES or x != y:
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True
