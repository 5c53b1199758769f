"""wilson_interval: published values, edges, bad input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strangler.diff import wilson_interval


@pytest.mark.parametrize(
    ("successes", "total", "low", "high"),
    [
        # Values from the Wilson formula as tabulated by Newcombe (1998), Table I, method 3.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
        (50, 100, 0.4038, 0.5962),
        (10, 10, 0.7225, 1.0),
    ],
)
def test_known_intervals(successes: int, total: int, low: float, high: float) -> None:
    assert wilson_interval(successes, total) == pytest.approx((low, high), abs=1e-4)


def test_no_observations_say_nothing() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_edges_are_exact() -> None:
    assert wilson_interval(0, 1000)[0] == 0.0
    assert wilson_interval(1000, 1000)[1] == 1.0


def test_a_larger_z_widens_the_interval() -> None:
    low_95, high_95 = wilson_interval(90, 100)
    low_99, high_99 = wilson_interval(90, 100, z=2.576)
    assert low_99 < low_95 < 0.9 < high_95 < high_99


@pytest.mark.parametrize(
    ("successes", "total", "z"), [(-1, 10, 1.96), (11, 10, 1.96), (1, -1, 1.96), (1, 10, 0.0)]
)
def test_bad_input(successes: int, total: int, z: float) -> None:
    with pytest.raises(ValueError):
        wilson_interval(successes, total, z)


@given(total=st.integers(min_value=1, max_value=10**9), share=st.floats(min_value=0, max_value=1))
def test_interval_holds_the_observed_share(total: int, share: float) -> None:
    successes = round(share * total)
    low, high = wilson_interval(successes, total)
    assert 0.0 <= low <= successes / total <= high <= 1.0
