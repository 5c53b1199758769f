"""Values kept in a Difference, shortened so one comparison's result stays small.

Pure.

Rules:
- Strings longer than MAX_STRING_CHARS are cut there and end with "…".
- Containers are kept as they are when their compact JSON fits in MAX_STRING_CHARS, and
  otherwise summarized as "{…12 keys}" or "[…20 items]".
- Everything else (numbers, booleans, null) is kept as is.
"""

from __future__ import annotations

import orjson

MAX_STRING_CHARS = 200


def shorten(value: object) -> object:
    """`value`, small enough to store with a difference (see the module rules)."""
    kind = type(value)
    if kind is str:
        text = str(value)
        return text if len(text) <= MAX_STRING_CHARS else text[:MAX_STRING_CHARS] + "…"
    if kind is dict or kind is list:
        try:
            if len(orjson.dumps(value)) <= MAX_STRING_CHARS:
                return value
        except orjson.JSONEncodeError:
            pass  # nested past orjson's limit: certainly too big to keep, so summarize
        return summarize(value)
    return value


def summarize(value: object) -> object:
    """ "{…12 keys}" for an object, "[…20 items]" for an array; other values unchanged."""
    if isinstance(value, dict):
        return f"{{…{len(value)} keys}}"
    if isinstance(value, list):
        return f"[…{len(value)} items]"
    return value
