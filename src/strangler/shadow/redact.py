"""Redaction of difference examples before they are stored or logged.

Rules:
- Pure. Filters work like Rails' `config.filter_parameters`: a key whose name contains a filter
  (case-insensitive, so "passw" covers "password" and "password_confirmation") has its value
  replaced by "[FILTERED]", at any depth of a JSON value.
- A difference whose path goes through such a key has both its values filtered.
- In text (HTML, form bodies), `name=value`, `"name": "value"` and `name="..." value="..."`
  pairs whose name matches are filtered too, so a CSRF token in a form never reaches the store.
- Headers never reach examples at all (only the request line and the two values do).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace

from strangler.diff import Difference

FILTERED = "[FILTERED]"

_PATH_KEY = re.compile(r"[A-Za-z0-9_\-]+")


class Redactor:
    """Applies one route's filters to differences."""

    def __init__(self, filters: Sequence[str]) -> None:
        self.filters = tuple(f.lower() for f in filters if f)
        names = "|".join(re.escape(f) for f in self.filters) or r"(?!)"
        # Key characters include brackets for Rails form names like user[password].
        key = rf"[\w\-\[\]]*(?:{names})[\w\-\[\]]*"
        self._text = re.compile(
            rf"""(?ix)
            ( ["']?{key}["']? \s* [:=] \s* ["']?          # token=..., "token": "...
            | name=["']{key}["'] [^>]*? value=["']        # <input name="..._token" value="...
            | name=["']{key}["'] [^>]*? content=["']      # <meta name="csrf-token" content="...
            )
            [^"'\s&<>,}}]+
            """
        )

    def is_secret(self, key: str) -> bool:
        lowered = key.lower()
        return any(f in lowered for f in self.filters)

    def value(self, value: object) -> object:
        if isinstance(value, dict):
            return {
                k: FILTERED if self.is_secret(str(k)) else self.value(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        return self._text.sub(lambda m: m.group(1) + FILTERED, text)

    def difference(self, difference: Difference) -> Difference:
        if any(self.is_secret(key) for key in _PATH_KEY.findall(difference.path)):
            return replace(difference, primary=FILTERED, shadow=FILTERED, detail="")
        return replace(
            difference,
            primary=self.value(difference.primary),
            shadow=self.value(difference.shadow),
            detail=self.text(difference.detail),
        )
