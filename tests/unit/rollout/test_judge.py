"""judge_interval: what passes, what fails, what is too thin to say, and the verdict's forms."""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from typing import Any

import pytest

from strangler.rollout import (
    CheckResult,
    Checks,
    IntervalVerdict,
    LatencyHistogram,
    Outcome,
    Parity,
    SideWindow,
    judge_interval,
)

CHECKS = Checks()


def side(
    requests: int, errors: int, median_s: float, *, seed: int, sigma: float = 0.3
) -> SideWindow:
    """`requests` answers with lognormal latencies around `median_s`."""
    rng = random.Random(seed)
    latency = LatencyHistogram()
    for _ in range(requests):
        latency.record(rng.lognormvariate(math.log(median_s), sigma))
    return SideWindow(requests=requests, errors=errors, latency=latency)


def outcomes(verdict: IntervalVerdict) -> dict[str, Outcome]:
    return {check.name: check.outcome for check in verdict.checks}


def failed(verdict: IntervalVerdict) -> set[str]:
    return {check.name for check in verdict.checks if check.outcome is Outcome.FAIL}


def test_healthy_equal_sides_pass() -> None:
    verdict = judge_interval(side(500, 2, 0.010, seed=1), side(480, 1, 0.010, seed=2), CHECKS)
    assert verdict.outcome is Outcome.PASS
    assert list(outcomes(verdict)) == [
        "requests",
        "error_rate",
        "error_ratio",
        "p50",
        "p99",
        "mann_whitney",
    ]
    assert set(outcomes(verdict).values()) == {Outcome.PASS}
    assert verdict.summary.startswith("pass: new 480 vs legacy 500 requests, p99 ")
    assert verdict.new["requests"] == 480
    assert verdict.new["error_rate"] == pytest.approx(1 / 480)
    assert verdict.legacy["p50_s"] == pytest.approx(0.010, rel=0.05)


def test_a_fifth_of_new_answers_failing_fails_on_error_rate() -> None:
    verdict = judge_interval(side(500, 2, 0.010, seed=1), side(500, 100, 0.010, seed=2), CHECKS)
    assert verdict.outcome is Outcome.FAIL
    assert failed(verdict) == {"error_rate", "error_ratio"}
    assert verdict.summary == "fail: error_rate 20.0 % > 5.0 % (also error_ratio)"
    error_rate = verdict.checks[1]
    assert (error_rate.observed, error_rate.limit) == (0.2, 0.05)
    assert error_rate.detail == "new error rate 20.0 % (100 of 500 requests) > 5.0 %"


def test_one_error_against_a_clean_legacy_is_not_a_regression() -> None:
    # Legacy's 0 % counts as the 1 % floor, so new may have up to 2 % before the ratio fails.
    verdict = judge_interval(side(500, 0, 0.010, seed=1), side(500, 1, 0.010, seed=2), CHECKS)
    assert verdict.outcome is Outcome.PASS
    ratio = next(check for check in verdict.checks if check.name == "error_ratio")
    assert ratio.limit == pytest.approx(0.02)
    assert ratio.detail == "new error rate 0.20 % <= 2 x the floor 1.0 % (legacy 0.0 %)"


@pytest.mark.parametrize(
    ("legacy_errors", "new_errors", "failing"),
    [
        (0, 10, {"error_ratio"}),  # 1 % floor: 2.0 % is the limit, 2.5 % > it
        (5, 10, set()),  # legacy 1.25 % -> limit 2.5 %; new at 2.5 % is at it, not over it
        (5, 11, {"error_ratio"}),
        (12, 20, set()),  # legacy 3 %, new 5 %: under 2x, at (not over) the ceiling
        (12, 21, {"error_rate"}),  # 5.25 % > 5 % ceiling, still under 2 x 3 %
        (40, 60, {"error_rate"}),  # a broken legacy does not excuse new past the ceiling
    ],
)
def test_error_rate_and_ratio(legacy_errors: int, new_errors: int, failing: set[str]) -> None:
    legacy, new = side(400, legacy_errors, 0.010, seed=1), side(400, new_errors, 0.010, seed=2)
    verdict = judge_interval(legacy, new, CHECKS)
    assert failed(verdict) == failing
    assert verdict.outcome is (Outcome.FAIL if failing else Outcome.PASS)


def test_new_three_times_slower_fails_on_latency() -> None:
    verdict = judge_interval(side(400, 0, 0.010, seed=1), side(400, 0, 0.030, seed=2), CHECKS)
    assert verdict.outcome is Outcome.FAIL
    assert failed(verdict) == {"p50", "p99", "mann_whitney"}
    assert verdict.summary.startswith("fail: p50 ")
    assert verdict.summary.endswith(" (also p99, mann_whitney)")
    p50 = next(check for check in verdict.checks if check.name == "p50")
    assert p50.observed == pytest.approx(0.030, rel=0.05)
    assert p50.limit == pytest.approx(1.5 * 0.010 + 0.005, rel=0.05)
    assert re.fullmatch(r"new p50 (29|30)\.\d ms > 1\.5 x legacy (9|10)\.\d ms \+ 5 ms", p50.detail)


def test_a_tiny_absolute_difference_passes() -> None:
    # 60 % slower in ratio and beyond doubt statistically, but 0.6 ms is not worth a rollback.
    legacy, new = side(400, 0, 0.0010, seed=1), side(400, 0, 0.0016, seed=2)
    verdict = judge_interval(legacy, new, CHECKS)
    assert verdict.outcome is Outcome.PASS
    mann_whitney = next(check for check in verdict.checks if check.name == "mann_whitney")
    assert mann_whitney.observed is not None
    assert mann_whitney.observed < CHECKS.mw_alpha
    assert re.search(r"p50 \+0\.(5|6)\d\d ms \(<= 5 ms\)$", mann_whitney.detail)


def test_the_same_difference_without_slack_fails() -> None:
    legacy, new = side(400, 0, 0.0010, seed=1), side(400, 0, 0.0016, seed=2)
    verdict = judge_interval(legacy, new, Checks(latency_slack_s=0.0))
    assert failed(verdict) == {"p50", "mann_whitney"}


def test_a_slower_tail_alone_fails_p99_only() -> None:
    legacy = side(1000, 0, 0.010, seed=1)
    new = side(1000, 0, 0.010, seed=2)
    for _ in range(30):  # 3 % of answers take half a second
        new.latency.record(0.5)
    verdict = judge_interval(legacy, new, CHECKS)
    assert failed(verdict) == {"p99"}


def test_low_traffic_is_inconclusive() -> None:
    verdict = judge_interval(side(400, 0, 0.010, seed=1), side(12, 0, 0.010, seed=2), CHECKS)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert outcomes(verdict) == {"requests": Outcome.INCONCLUSIVE}
    assert verdict.summary == "inconclusive: 12 of 50 requests on new"


def test_low_traffic_on_both_sides_names_both() -> None:
    verdict = judge_interval(side(30, 0, 0.010, seed=1), side(12, 0, 0.010, seed=2), CHECKS)
    assert verdict.summary == (
        "inconclusive: 12 of 50 requests on new, 30 of 50 requests on legacy"
    )


def test_a_broken_backend_fails_even_at_low_traffic() -> None:
    verdict = judge_interval(side(400, 0, 0.010, seed=1), side(12, 10, 0.010, seed=2), CHECKS)
    assert verdict.outcome is Outcome.FAIL
    assert outcomes(verdict) == {"requests": Outcome.INCONCLUSIVE, "error_rate": Outcome.FAIL}
    assert verdict.summary == "fail: error_rate 83.3 % > 5.0 %"


@pytest.mark.parametrize(
    ("requests", "errors", "outcome"),
    [
        (12, 10, Outcome.FAIL),
        (10, 3, Outcome.FAIL),  # the smallest low-traffic failure: 10 requests, 3 errors
        (9, 9, Outcome.INCONCLUSIVE),  # below 10 requests nothing is judged
        (12, 2, Outcome.INCONCLUSIVE),  # 2 errors could be bad luck
        (49, 2, Outcome.INCONCLUSIVE),  # 4.1 %: under the ceiling anyway
        (40, 3, Outcome.FAIL),  # 7.5 % with 3 errors
        (49, 3, Outcome.FAIL),
    ],
)
def test_low_traffic_error_rule(requests: int, errors: int, outcome: Outcome) -> None:
    verdict = judge_interval(
        side(400, 0, 0.010, seed=1), side(requests, errors, 0.010, seed=2), CHECKS
    )
    assert verdict.outcome is outcome


def test_the_low_traffic_rule_follows_a_lower_min_requests() -> None:
    checks = Checks(min_requests=5)
    verdict = judge_interval(side(400, 0, 0.010, seed=1), side(4, 4, 0.010, seed=2), checks)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    verdict = judge_interval(side(3, 0, 0.010, seed=1), side(6, 4, 0.010, seed=2), checks)
    assert verdict.outcome is Outcome.FAIL


def test_latency_missing_on_one_side_is_inconclusive() -> None:
    legacy = side(400, 0, 0.010, seed=1)
    new = SideWindow(requests=400, errors=0, latency=LatencyHistogram())
    verdict = judge_interval(legacy, new, CHECKS)
    assert verdict.outcome is Outcome.INCONCLUSIVE
    assert outcomes(verdict)["p99"] is Outcome.INCONCLUSIVE
    assert outcomes(verdict)["mann_whitney"] is Outcome.INCONCLUSIVE
    assert "no p50 latency on one side to compare" in verdict.summary


@pytest.mark.parametrize(
    ("parity", "verdict_outcome", "parity_outcome"),
    [
        (Parity(compared=1000, equal=980), Outcome.FAIL, Outcome.FAIL),
        (Parity(compared=1000, equal=1000), Outcome.PASS, Outcome.PASS),
        (Parity(compared=2000, equal=1990), Outcome.PASS, Outcome.PASS),
        (Parity(compared=1000, equal=993), Outcome.FAIL, Outcome.FAIL),  # 99.3 %, bound 98.6 %
        # Too few comparisons: reported, but the verdict does not wait for them.
        (Parity(compared=60, equal=30), Outcome.PASS, Outcome.INCONCLUSIVE),
    ],
)
def test_parity(parity: Parity, verdict_outcome: Outcome, parity_outcome: Outcome) -> None:
    verdict = judge_interval(
        side(400, 0, 0.010, seed=1), side(400, 0, 0.010, seed=2), CHECKS, parity
    )
    assert verdict.outcome is verdict_outcome
    assert outcomes(verdict)["parity"] is parity_outcome


def test_parity_below_the_floor_says_so() -> None:
    verdict = judge_interval(
        side(400, 0, 0.010, seed=1), side(400, 0, 0.010, seed=2), CHECKS, Parity(1000, 980)
    )
    # Wilson 95 % interval of 980/1000: [0.9693, 0.9870].
    assert verdict.summary == "fail: parity 96.93 % < 99.00 %"
    check = verdict.checks[-1]
    assert check.detail == "parity lower bound 96.93 % (980 of 1000 equal) < 99.0 %"


def test_parity_is_skipped_when_not_asked_for() -> None:
    legacy, new = side(400, 0, 0.010, seed=1), side(400, 0, 0.010, seed=2)
    assert "parity" not in outcomes(judge_interval(legacy, new, CHECKS))
    unchecked = judge_interval(legacy, new, Checks(min_parity=None), Parity(1000, 0))
    assert "parity" not in outcomes(unchecked)
    assert unchecked.outcome is Outcome.PASS


@pytest.mark.parametrize(
    ("legacy", "new", "parity"),
    [
        (side(500, 2, 0.010, seed=1), side(480, 1, 0.010, seed=2), None),
        (side(400, 0, 0.010, seed=1), side(400, 0, 0.030, seed=2), Parity(1000, 980)),
        (side(400, 0, 0.010, seed=1), side(12, 10, 0.010, seed=2), None),
        (side(0, 0, 0.010, seed=1), side(0, 0, 0.010, seed=2), Parity(10, 10)),
    ],
)
def test_verdict_json_round_trips(
    legacy: SideWindow, new: SideWindow, parity: Parity | None
) -> None:
    verdict = judge_interval(legacy, new, CHECKS, parity)
    data = json.loads(json.dumps(verdict.to_json(), allow_nan=False))
    assert sorted(data) == ["checks", "legacy", "new", "outcome", "summary"]
    assert data["summary"] == verdict.summary
    assert IntervalVerdict.from_json(data) == verdict


@pytest.mark.parametrize(
    "mangle",
    [
        lambda data: data.pop("checks"),
        lambda data: data.update(outcome="maybe"),
        lambda data: data.update(checks="none"),
        lambda data: data["checks"][0].update(name="vibes"),
        lambda data: data["checks"][0].update(observed="12"),
        lambda data: data["checks"][0].update(outcome=None),
        lambda data: data["checks"][0].update(detail=3),
        lambda data: data.update(new=[]),
        lambda data: data["legacy"].update(requests="many"),
        lambda data: data["legacy"].update(requests=True),
    ],
)
def test_verdict_from_json_rejects_garbage(mangle: Callable[[dict[str, Any]], object]) -> None:
    verdict = judge_interval(side(500, 2, 0.010, seed=1), side(480, 1, 0.010, seed=2), CHECKS)
    data = json.loads(json.dumps(verdict.to_json()))
    mangle(data)
    with pytest.raises(ValueError):
        IntervalVerdict.from_json(data)


def test_check_result_compact_form() -> None:
    check = CheckResult("p99", Outcome.FAIL, 0.182, 0.0852, "new p99 182.0 ms > ...")
    assert check.compact == "p99 182.0 ms > 85.2 ms"
    passing = CheckResult("parity", Outcome.PASS, 0.9962, 0.99, "...")
    assert passing.compact == "parity 99.62 % >= 99.00 %"


@pytest.mark.parametrize(
    "bad",
    [
        {"min_requests": 0},
        {"max_error_rate": 1.5},
        {"max_error_ratio": 0.0},
        {"error_rate_floor": -0.1},
        {"max_p99_ratio": math.inf},
        {"latency_slack_s": -0.001},
        {"mw_alpha": 0.0},
        {"mw_min_effect": 2.0},
        {"min_parity": 1.01},
    ],
)
def test_checks_refuse_impossible_thresholds(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Checks(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("requests", "errors"), [(10, 11), (-1, 0), (10, -1)])
def test_side_window_refuses_impossible_counts(requests: int, errors: int) -> None:
    with pytest.raises(ValueError):
        SideWindow(requests=requests, errors=errors, latency=LatencyHistogram())


def test_parity_refuses_impossible_counts() -> None:
    with pytest.raises(ValueError):
        Parity(compared=10, equal=11)
