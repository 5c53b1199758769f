"""mann_whitney_u: is the new side's latency stochastically larger than legacy's?

Pure. Works on bucketed counts, so it costs O(buckets), not O(requests), however busy the route.

Rules:
- Values that share a bucket are ties: they take the bucket's mid-rank. At 2 % bucket width that
  only merges latencies a human could not tell apart.
- One-sided: the alternative is "b (new) tends to be larger than a (legacy)". A faster new
  backend gives a p-value near 1, never a failure.
- The normal approximation with the tie-corrected variance and a continuity correction of 1/2.
  Source: Wikipedia, "Mann-Whitney U test", sections "Calculations" (U from rank sums) and
  "Normal approximation and tie correction" (the variance below); the same formulas as
  scipy.stats.mannwhitneyu(method="asymptotic", use_continuity=True, alternative="greater").
  The interval sizes the judge asks for (50 requests per side and up) are where the
  approximation is good.
- All arithmetic up to the final square root is on integers (twice the rank sums), so a busy
  route's millions of requests lose no precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from strangler.rollout.histogram import LatencyHistogram


@dataclass(frozen=True, slots=True)
class MannWhitney:
    """The test's figures for b (new) against a (legacy)."""

    u: float  # U of b: pairs (a_i, b_j) with b_j > a_i, plus half the tied pairs
    z: float  # the continuity-corrected standard score of u
    p_value: float  # one-sided: P(a result this large | b is not stochastically greater)
    effect: float  # common-language effect size P(b > a) + 0.5·P(b = a) = u / (n_a·n_b)


def mann_whitney_u(a: LatencyHistogram, b: LatencyHistogram) -> MannWhitney:
    """Test whether b's values tend to be larger than a's; ValueError when either side is empty."""
    n_a, n_b = a.count, b.count
    if n_a == 0 or n_b == 0:
        raise ValueError(f"Mann-Whitney needs values on both sides, got {n_a} and {n_b}")
    n = n_a + n_b
    below = 0  # values of both sides in lower buckets
    twice_rank_sum_b = 0
    tie_sum = 0  # sum over buckets of t**3 - t, t the values in the bucket
    for index in sorted(a.buckets.keys() | b.buckets.keys()):
        count_a = a.buckets.get(index, 0)
        count_b = b.buckets.get(index, 0)
        tied = count_a + count_b
        # The bucket's values hold ranks below+1 .. below+tied; their mid-rank is
        # below + (tied + 1) / 2, doubled here to stay an integer.
        twice_rank_sum_b += count_b * (2 * below + tied + 1)
        tie_sum += tied**3 - tied
        below += tied
    # U_b = R_b - n_b(n_b + 1)/2.
    twice_u = twice_rank_sum_b - n_b * (n_b + 1)
    u = twice_u / 2
    effect = twice_u / (2 * n_a * n_b)
    # sigma² = n_a·n_b/12 · ((n + 1) - Σ(t³ - t) / (n(n - 1))), over one denominator.
    variance_numerator = n_a * n_b * ((n + 1) * n * (n - 1) - tie_sum)
    if variance_numerator <= 0:
        # Every value in one bucket: both sides are the same, there is nothing to detect.
        return MannWhitney(u=u, z=0.0, p_value=1.0, effect=effect)
    sigma = math.sqrt(variance_numerator / (12 * n * (n - 1)))
    # (U - mean - 1/2) / sigma, mean = n_a·n_b/2; the 1/2 is the continuity correction toward
    # the null for an upper-tail test.
    z = (twice_u - n_a * n_b - 1) / (2 * sigma)
    p_value = 0.5 * math.erfc(z / math.sqrt(2.0))
    return MannWhitney(u=u, z=z, p_value=p_value, effect=effect)
