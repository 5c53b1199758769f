"""mann_whitney_u on bucketed latencies: direction, effect size, ties, published arithmetic."""

from __future__ import annotations

import math
import random

import pytest

from strangler.rollout import LatencyHistogram, MannWhitney, bucket_value, mann_whitney_u


def histogram_of(values: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def lognormal(seed: int, median_s: float, n: int, sigma: float = 0.4) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median_s), sigma) for _ in range(n)]


def brute_force(a: list[float], b: list[float]) -> tuple[float, float | None]:
    """U of b and the tie-corrected, continuity-corrected z (None when every value ties), pair by
    pair and value by value."""
    u = sum(1.0 if y > x else 0.5 if y == x else 0.0 for x in a for y in b)
    pooled = sorted(a + b)
    n = len(pooled)
    tie_sum = sum(pooled.count(v) ** 3 - pooled.count(v) for v in set(pooled))
    if tie_sum == n**3 - n:
        return u, None
    sigma = math.sqrt(len(a) * len(b) / 12 * ((n + 1) - tie_sum / (n * (n - 1))))
    return u, (u - len(a) * len(b) / 2 - 0.5) / sigma


def test_identical_samples_show_no_difference() -> None:
    values = lognormal(1, 0.010, 300)
    result = mann_whitney_u(histogram_of(values), histogram_of(values))
    assert result.effect == 0.5
    assert result.u == 300 * 300 / 2
    assert result.p_value > 0.4


def test_two_draws_of_one_distribution_are_not_significant() -> None:
    result = mann_whitney_u(
        histogram_of(lognormal(2, 0.010, 400)), histogram_of(lognormal(3, 0.010, 400))
    )
    assert result.p_value > 0.1
    assert result.effect == pytest.approx(0.5, abs=0.05)


def test_new_thirty_percent_slower_is_detected() -> None:
    # At sigma 0.25 a 30 % shift makes P(new > legacy) = Phi(ln 1.3 / (0.25 sqrt 2)) = 0.77.
    legacy = histogram_of(lognormal(4, 0.010, 200, sigma=0.25))
    new = histogram_of([value * 1.3 for value in lognormal(5, 0.010, 200, sigma=0.25)])
    result = mann_whitney_u(legacy, new)
    assert result.p_value < 0.001
    assert result.effect > 0.7
    assert result.z > 3


def test_a_faster_new_side_is_never_significant() -> None:
    legacy = histogram_of(lognormal(6, 0.010, 200))
    new = histogram_of([value * 0.7 for value in lognormal(7, 0.010, 200)])
    result = mann_whitney_u(legacy, new)
    assert result.p_value > 0.999
    assert result.effect < 0.3


@pytest.mark.parametrize("seed", range(8))
def test_matches_a_pairwise_count_with_exact_ties(seed: int) -> None:
    # Values are bucket representatives from a narrow range, so many of them tie exactly.
    rng = random.Random(seed)
    a = [bucket_value(rng.randint(500, 512)) for _ in range(rng.randint(1, 25))]
    b = [bucket_value(rng.randint(503, 515)) for _ in range(rng.randint(1, 25))]
    result = mann_whitney_u(histogram_of(a), histogram_of(b))
    u, z = brute_force(a, b)
    assert result.u == u
    assert result.effect == pytest.approx(u / (len(a) * len(b)))
    assert z is not None
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(0.5 * math.erfc(z / math.sqrt(2)))


@pytest.mark.parametrize(
    ("a", "b", "u", "p_value"),
    [
        # Reference values from scipy 1.17.1: mannwhitneyu(b, a, alternative="greater",
        # method="asymptotic", use_continuity=True) on the buckets' representative values.
        ({"100": 3, "101": 2, "103": 5}, {"101": 4, "103": 2, "105": 6}, 91.0, 0.0183425040158),
        (
            {"300": 40, "310": 25, "320": 10},
            {"300": 20, "310": 30, "320": 30},
            4075.0,
            2.05797568e-5,
        ),
        ({"50": 7, "60": 1}, {"40": 3, "50": 5}, 17.5, 0.98124299919223),
    ],
)
def test_matches_scipy(a: dict[str, int], b: dict[str, int], u: float, p_value: float) -> None:
    result = mann_whitney_u(LatencyHistogram.from_json(a), LatencyHistogram.from_json(b))
    assert result.u == u
    assert result.p_value == pytest.approx(p_value, rel=1e-9)


def test_all_values_tied_cannot_reject() -> None:
    result = mann_whitney_u(histogram_of([0.004] * 30), histogram_of([0.004] * 70))
    assert result == MannWhitney(u=1050.0, z=0.0, p_value=1.0, effect=0.5)


def test_one_value_each() -> None:
    result = mann_whitney_u(histogram_of([0.001]), histogram_of([0.002]))
    assert result.u == 1.0
    assert result.effect == 1.0
    # Two values can never be significant: the continuity-corrected z is 0.
    assert result.p_value == pytest.approx(0.5)


@pytest.mark.parametrize(("a_count", "b_count"), [(0, 5), (5, 0), (0, 0)])
def test_an_empty_side_is_refused(a_count: int, b_count: int) -> None:
    with pytest.raises(ValueError, match="both sides"):
        mann_whitney_u(histogram_of([0.01] * a_count), histogram_of([0.01] * b_count))


def test_large_counts_keep_their_precision() -> None:
    # Millions of requests per side: the statistic stays exact (integer arithmetic).
    a = LatencyHistogram.from_json({"400": 3_000_000, "401": 1_000_000})
    b = LatencyHistogram.from_json({"400": 1_000_000, "401": 3_000_000})
    result = mann_whitney_u(a, b)
    # b > a for the 3M x 3M pairs (401 over 400); ties: 3M x 1M + 1M x 3M, half each.
    assert result.u == 9e12 + 0.5 * (3e12 + 3e12)
    assert result.p_value == 0.0
