"""LatencyHistogram: quantiles within 1 % of the exact ones, merging, the JSON form, edges."""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable

import pytest

from strangler.rollout import MAX_INDEX, MAX_S, MIN_S, LatencyHistogram, bucket_value

Sample = Callable[[], list[float]]
QUANTILES = (0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0)


def nearest_rank(ordered: list[float], q: float) -> float:
    """The ceil(q·n)-th smallest value (the smallest at q = 0), exactly."""
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[rank - 1]


def histogram_of(values: list[float]) -> LatencyHistogram:
    histogram = LatencyHistogram()
    for value in values:
        histogram.record(value)
    return histogram


def uniform_sample() -> list[float]:
    rng = random.Random(7)
    return [rng.uniform(0.001, 0.250) for _ in range(20_001)]


def lognormal_sample() -> list[float]:
    # Median 20 ms with a long tail: the shape real request latencies have.
    rng = random.Random(11)
    return [rng.lognormvariate(math.log(0.020), 1.0) for _ in range(20_001)]


@pytest.mark.parametrize("sample", [uniform_sample, lognormal_sample])
@pytest.mark.parametrize("q", QUANTILES)
def test_quantiles_are_within_one_percent_of_the_exact_ones(sample: Sample, q: float) -> None:
    values = sample()
    estimate = histogram_of(values).quantile(q)
    exact = nearest_rank(sorted(values), q)
    assert estimate is not None
    assert abs(estimate - exact) <= 0.01 * exact


@pytest.mark.parametrize("sample", [uniform_sample, lognormal_sample])
def test_the_median_and_percentiles_agree_with_statistics(sample: Sample) -> None:
    values = sample()
    histogram = histogram_of(values)
    # An odd count: statistics.median is then one of the values, the nearest-rank median.
    assert histogram.quantile(0.5) == pytest.approx(statistics.median(values), rel=0.01)
    # statistics.quantiles interpolates between neighbours, which are dense at 20,001 values.
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for percentile in (10, 50, 90, 99):
        estimate = histogram.quantile(percentile / 100)
        assert estimate == pytest.approx(cuts[percentile - 1], rel=0.01)


def test_every_value_reads_back_within_one_percent() -> None:
    # Sweep the whole range, bucket edges included (they are where rounding could bite).
    values = [MIN_S * 1.02**i for i in range(MAX_INDEX)] + [MIN_S, 0.0015, 1.0, MAX_S * 0.999]
    for value in values:
        histogram = histogram_of([value])
        estimate = histogram.quantile(0.5)
        assert estimate is not None
        assert abs(estimate - value) <= 0.01 * value, value


@pytest.mark.parametrize(
    ("value", "index"),
    [
        (0.0, 0),
        (-1.0, 0),
        (math.nan, 0),
        (1e-9, 0),
        (MIN_S, 0),
        (MAX_S, MAX_INDEX),
        (MAX_S * 10, MAX_INDEX),
        (math.inf, MAX_INDEX),
    ],
)
def test_out_of_range_values_are_clamped_not_dropped(value: float, index: int) -> None:
    histogram = histogram_of([value])
    assert histogram.count == 1
    assert histogram.buckets == {index: 1}


def test_quantiles_walk_the_ranks() -> None:
    histogram = histogram_of([0.001] * 90 + [0.100] * 10)
    assert histogram.quantile(0.9) == pytest.approx(0.001, rel=0.01)
    assert histogram.quantile(0.91) == pytest.approx(0.100, rel=0.01)
    assert histogram.quantile(0.0) == pytest.approx(0.001, rel=0.01)
    assert histogram.quantile(1.0) == pytest.approx(0.100, rel=0.01)


def test_float_noise_in_q_times_count_does_not_skip_a_rank() -> None:
    # 0.07 * 100 is 7.000000000000001 in floating point; the 7th value is still the answer.
    histogram = histogram_of([0.001] * 7 + [0.100] * 93)
    assert histogram.quantile(0.07) == pytest.approx(0.001, rel=0.01)


def test_an_empty_histogram_has_no_quantiles() -> None:
    histogram = LatencyHistogram()
    assert histogram.count == 0
    assert histogram.quantile(0.5) is None
    assert histogram.sorted_counts() == []


@pytest.mark.parametrize("q", [-0.01, 1.01, math.nan])
def test_quantile_outside_zero_to_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="quantile"):
        histogram_of([0.01]).quantile(q)


def test_merge_equals_recording_everything_in_one() -> None:
    values = lognormal_sample()
    first, second = histogram_of(values[:5000]), histogram_of(values[5000:])
    first.merge(second)
    assert first == histogram_of(values)
    assert first.count == len(values)
    assert second.count == len(values) - 5000


def test_merging_into_itself_doubles() -> None:
    histogram = histogram_of([0.001, 0.002, 0.002])
    histogram.merge(histogram)
    assert histogram.count == 6
    assert sorted(histogram.buckets.values()) == [2, 4]


def test_sorted_counts_ascend_and_sum_to_the_count() -> None:
    histogram = histogram_of([0.050, 0.001, 0.010, 0.001])
    counts = histogram.sorted_counts()
    assert [count for _, count in counts] == [2, 1, 1]
    assert [value for value, _ in counts] == sorted(value for value, _ in counts)
    assert counts[0][0] == pytest.approx(0.001, rel=0.01)


def test_bucket_value_is_the_geometric_midpoint() -> None:
    low, high = MIN_S * 1.02**412, MIN_S * 1.02**413
    assert bucket_value(412) == pytest.approx(math.sqrt(low * high), rel=1e-12)
    with pytest.raises(ValueError):
        bucket_value(MAX_INDEX + 1)
    with pytest.raises(ValueError):
        bucket_value(-1)


def test_json_round_trip() -> None:
    histogram = histogram_of(lognormal_sample()[:3000])
    data = histogram.to_json()
    assert all(key.isdigit() for key in data)
    assert [int(key) for key in data] == sorted(int(key) for key in data)
    assert LatencyHistogram.from_json(data) == histogram
    assert LatencyHistogram.from_json({}) == LatencyHistogram()


def test_from_json_drops_empty_buckets() -> None:
    histogram = LatencyHistogram.from_json({"3": 0, "4": 2})
    assert histogram.buckets == {4: 2}
    assert histogram.count == 2


@pytest.mark.parametrize(
    "data",
    [
        {"x": 1},
        {"-1": 1},
        {"1.5": 1},
        {" 3": 1},
        {str(MAX_INDEX + 1): 1},
        {"3": -1},
        {"3": 1.5},
        {"3": "2"},
        {"3": True},
        {"3": None},
        {3: 1},
        [("3", 1)],
        "3",
    ],
)
def test_from_json_rejects_garbage(data: object) -> None:
    with pytest.raises(ValueError):
        LatencyHistogram.from_json(data)  # type: ignore[arg-type]


def test_repr_shows_count_and_median() -> None:
    assert repr(histogram_of([0.002] * 3)) == (
        "<LatencyHistogram 3 values in 1 buckets, p50 1.99 ms>"
    )
    assert repr(LatencyHistogram()) == "<LatencyHistogram 0 values in 0 buckets, empty>"
