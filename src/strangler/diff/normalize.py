"""Normalizers: regex rewrites applied before strings are compared, so known noise is equal.

Pure.

Rules:
- Applied in the order written, each to the output of the one before, to JSON string values,
  to compared header values and to text bodies. Only ever called on strings that already
  differ, so identical values cost nothing.
- `replace` is literal text: backslashes and `\\g<1>` are not group references. Noise is
  replaced, not rearranged, and literal replacements cannot fail at compare time.
- A pattern that matches the empty string is rejected at config load: it would insert the
  replacement between every character and hide real differences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Normalizer:
    """One `{pattern, replace}` rule, compiled."""

    pattern: re.Pattern[str]
    replace: str

    @classmethod
    def compile(cls, pattern: str, replace: str) -> Normalizer:
        """Compile a rule; ValueError names a bad regex or one that matches ''."""
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from exc
        if compiled.fullmatch("") is not None:
            raise ValueError(f"pattern {pattern!r} matches the empty string")
        return cls(compiled, replace)

    def apply(self, text: str) -> str:
        """`text` with every match of the pattern replaced by the literal `replace`."""
        # A template without backslashes is taken literally by re's C fast path.
        return self.pattern.sub(self.replace.replace("\\", "\\\\"), text)


def normalize(text: str, normalizers: Sequence[Normalizer]) -> str:
    """Apply every normalizer in order."""
    for normalizer in normalizers:
        text = normalizer.apply(text)
    return text
