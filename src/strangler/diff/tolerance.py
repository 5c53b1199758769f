"""Numeric tolerance of a diff rule: absolute (`0.01`) or relative to the larger value (`"1%"`).

Pure.

Rules:
- A number in the config is an absolute tolerance: |a - b| <= amount.
- A string "N%" is relative: |a - b| <= N/100 * max(|a|, |b|).
- Both are inclusive, with a slack of a few ulps of the operands: config values such as 0.01
  and JSON values such as 0.31 are binary approximations, and 0.31 - 0.3 is
  0.010000000000000009 in floating point, which a user who wrote 0.01 means to allow.
- Negative, infinite or non-numeric amounts (and booleans, which YAML makes easy to write by
  mistake) are rejected at config load.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Relative slack for float rounding: ~4500 ulps, far below any tolerance a user would write.
_FLOAT_SLACK = 1e-12
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%\s*\Z")


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far apart two numbers may be and still count as equal."""

    amount: float
    is_relative: bool = False

    @classmethod
    def parse(cls, value: object) -> Tolerance:
        """From a config value: a number (absolute) or "N%" (relative); ValueError otherwise."""
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError(
                f"expected a number or a percentage like '1%', got {type(value).__name__}"
            )
        if isinstance(value, str):
            found = _PERCENT.match(value)
            if found is None:
                raise ValueError(f"expected a number or a percentage like '1%', got {value!r}")
            return cls(float(found.group(1)) / 100.0, is_relative=True)
        amount = float(value)
        if not math.isfinite(amount) or amount < 0:
            raise ValueError(f"expected a finite number >= 0, got {value!r}")
        return cls(amount)

    def allows(self, a: float, b: float) -> bool:
        """Whether a and b are within this tolerance of each other."""
        scale = max(abs(a), abs(b))
        limit = self.amount * scale if self.is_relative else self.amount
        return abs(a - b) <= limit + _FLOAT_SLACK * scale

    def __str__(self) -> str:
        return f"{self.amount * 100:g}%" if self.is_relative else f"{self.amount:g}"
