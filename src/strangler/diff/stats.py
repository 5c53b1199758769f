"""Confidence intervals for parity figures ("equal / compared" over a route's shadow traffic).

Pure.

Rules:
- wilson_interval is the Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001 show it
  keeps close to its nominal coverage where the normal "p ± z·sqrt(p(1-p)/n)" interval fails:
  at small n and at p near 0 or 1, which is exactly where a migration's parity sits).
- No observations say nothing: (0.0, 1.0). The bounds are clamped to [0, 1] and are exact at
  the edges: 0 successes give a lower bound of 0.0, all successes an upper bound of 1.0.
"""

from __future__ import annotations

import math


def wilson_interval(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for successes/total at z (1.96: 95%); ValueError on bad input."""
    if total < 0 or successes < 0 or successes > total:
        raise ValueError(f"need 0 <= successes <= total, got {successes}/{total}")
    if not (math.isfinite(z) and z > 0):
        raise ValueError(f"z must be a finite number > 0, got {z}")
    if total == 0:
        return (0.0, 1.0)
    p = successes / total
    z2 = z * z
    denominator = 1 + z2 / total
    center = (p + z2 / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total)) / denominator
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == total else min(1.0, center + half)
    return (low, high)
