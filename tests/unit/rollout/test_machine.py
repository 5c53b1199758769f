"""The rollout stage machine and the shadow evidence gate."""

from __future__ import annotations

import pytest

from strangler.diff import wilson_interval
from strangler.rollout import (
    Action,
    Outcome,
    Policy,
    RolloutState,
    RolloutStatus,
    advance,
    next_weight,
    shadow_gate,
)

POLICY = Policy()


def running(weight_bp: int, passes: int = 0, inconclusive: int = 0) -> RolloutState:
    return RolloutState(RolloutStatus.RUNNING, weight_bp, passes, inconclusive)


@pytest.mark.parametrize(
    ("weight_bp", "expected"),
    [(0, 100), (100, 500), (300, 500), (2500, 5000), (5000, 10_000), (10_000, None)],
)
def test_next_weight(weight_bp: int, expected: int | None) -> None:
    assert next_weight(POLICY.steps_bp, weight_bp) == expected


def test_next_weight_after_a_short_ladder_ends() -> None:
    assert next_weight((100, 2000), 2000) is None
    assert next_weight((100, 2000), 5000) is None


@pytest.mark.parametrize(
    "status", [RolloutStatus.PAUSED, RolloutStatus.ROLLED_BACK, RolloutStatus.COMPLETE]
)
@pytest.mark.parametrize("verdict", list(Outcome))
def test_only_a_running_rollout_moves(status: RolloutStatus, verdict: Outcome) -> None:
    state = RolloutState(status, 500, passes=1, inconclusive=2, reason="by hand")
    step = advance(state, verdict, POLICY)
    assert step.action is Action.NONE
    assert step.state is state
    assert step.reason == f"rollout is {status.value}: intervals change nothing"


def test_a_failure_rolls_back_to_zero() -> None:
    step = advance(running(500, passes=2), Outcome.FAIL, POLICY)
    assert step.action is Action.ROLLBACK
    assert step.state == RolloutState(
        RolloutStatus.ROLLED_BACK, 0, reason="interval failed at 5 %: roll back to 0 %"
    )
    assert step.reason == step.state.reason


def test_a_failure_pauses_when_the_policy_says_so() -> None:
    step = advance(running(2500, passes=2, inconclusive=3), Outcome.FAIL, Policy(on_fail="pause"))
    assert step.action is Action.PAUSE
    assert step.state.status is RolloutStatus.PAUSED
    assert step.state.weight_bp == 2500
    assert (step.state.passes, step.state.inconclusive) == (0, 0)
    assert step.reason == "interval failed at 25 %: paused at 25 %"


def test_a_pass_promotes_one_step() -> None:
    step = advance(running(500), Outcome.PASS, POLICY)
    assert step.action is Action.PROMOTE
    assert step.state == RolloutState(
        RolloutStatus.RUNNING, 2500, reason="1 passing interval at 5 %: promote to 25 %"
    )


def test_promotion_waits_for_consecutive_passes() -> None:
    policy = Policy(passes_to_promote=2)
    first = advance(running(500, inconclusive=4), Outcome.PASS, policy)
    assert first.action is Action.NONE
    assert (first.state.weight_bp, first.state.passes, first.state.inconclusive) == (500, 1, 0)
    assert first.reason == "1 of 2 passing intervals at 5 %"
    second = advance(first.state, Outcome.PASS, policy)
    assert second.action is Action.PROMOTE
    assert (second.state.weight_bp, second.state.passes) == (2500, 0)
    assert second.reason == "2 passing intervals at 5 %: promote to 25 %"


def test_inconclusive_intervals_keep_the_passes() -> None:
    policy = Policy(passes_to_promote=2)
    step = advance(running(500, passes=1), Outcome.INCONCLUSIVE, policy)
    assert step.action is Action.NONE
    assert (step.state.passes, step.state.inconclusive) == (1, 1)
    assert step.reason == "1 of 10 inconclusive intervals at 5 %"
    assert advance(step.state, Outcome.PASS, policy).action is Action.PROMOTE


def test_too_many_inconclusive_intervals_pause() -> None:
    policy = Policy(max_inconclusive=3)
    state = running(100)
    actions = []
    for _ in range(3):
        step = advance(state, Outcome.INCONCLUSIVE, policy)
        actions.append(step.action)
        state = step.state
    assert actions == [Action.NONE, Action.NONE, Action.PAUSE]
    assert state.status is RolloutStatus.PAUSED
    assert state.weight_bp == 100
    assert state.reason == "3 inconclusive intervals in a row at 1 %: paused"


def test_a_pass_resets_the_inconclusive_count() -> None:
    policy = Policy(passes_to_promote=3, max_inconclusive=2)
    state = advance(running(100), Outcome.INCONCLUSIVE, policy).state
    state = advance(state, Outcome.PASS, policy).state
    step = advance(state, Outcome.INCONCLUSIVE, policy)
    assert step.action is Action.NONE
    assert step.state.inconclusive == 1


def test_passing_at_the_last_step_completes() -> None:
    step = advance(running(10_000), Outcome.PASS, POLICY)
    assert step.action is Action.COMPLETE
    assert step.state == RolloutState(
        RolloutStatus.COMPLETE, 10_000, reason="1 passing interval at 100 %: complete at 100 %"
    )


def test_a_ladder_that_stops_short_completes_at_full_weight() -> None:
    step = advance(running(2000), Outcome.PASS, Policy(steps_bp=(100, 2000)))
    assert step.action is Action.COMPLETE
    assert step.state.weight_bp == 10_000


def test_a_clean_rollout_walks_every_step() -> None:
    state = running(100)
    seen = [(Action.NONE, 100)]
    while state.status is RolloutStatus.RUNNING:
        step = advance(state, Outcome.PASS, POLICY)
        state = step.state
        seen.append((step.action, state.weight_bp))
    assert seen == [
        (Action.NONE, 100),
        (Action.PROMOTE, 500),
        (Action.PROMOTE, 2500),
        (Action.PROMOTE, 5000),
        (Action.COMPLETE, 10_000),
    ]
    assert state.reason == "1 passing interval at 50 %: complete: stage new"


@pytest.mark.parametrize(
    "bad",
    [
        {"steps_bp": ()},
        {"steps_bp": (0, 100)},
        {"steps_bp": (500, 100)},
        {"steps_bp": (100, 100)},
        {"steps_bp": (100, 20_000)},
        {"passes_to_promote": 0},
        {"on_fail": "panic"},
        {"max_inconclusive": 0},
    ],
)
def test_policy_refuses_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Policy(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("weight_bp", "passes", "inconclusive"),
    [(-1, 0, 0), (10_001, 0, 0), (100, -1, 0), (100, 0, -1)],
)
def test_rollout_state_refuses_nonsense(weight_bp: int, passes: int, inconclusive: int) -> None:
    with pytest.raises(ValueError):
        RolloutState(RolloutStatus.RUNNING, weight_bp, passes, inconclusive)


def test_gate_passes_with_enough_equal_comparisons() -> None:
    gate = shadow_gate(1000, 1000)
    assert gate.passed
    assert gate.needed == 0
    assert gate.lower_bound == pytest.approx(1000 / (1000 + 1.96**2))
    assert gate.reason == "parity lower bound 99.61 % >= 99.5 % over 1000 comparisons"


def test_gate_names_a_short_count() -> None:
    gate = shadow_gate(312, 312)
    assert not gate.passed
    assert gate.reason.startswith("312 of 500 comparisons")
    # All equal, the bound is n / (n + 1.96²): 99.5 % first at n = 765.
    assert gate.needed == 765 - 312
    assert gate.reason.endswith(": about 453 more equal comparisons in a row would pass")


def test_gate_with_no_comparisons() -> None:
    gate = shadow_gate(0, 0)
    assert gate.lower_bound is None
    assert (
        gate.reason == "0 of 500 comparisons: about 765 more equal comparisons in a row would pass"
    )
    assert not shadow_gate(0, 0, min_compared=0).passed


def test_gate_names_a_low_parity() -> None:
    gate = shadow_gate(1000, 995)
    assert not gate.passed
    assert gate.reason.startswith("parity lower bound 98.83 % < 99.5 %: about ")
    assert gate.needed > 0
    # The smallest number: one fewer equal comparison would still not pass.
    assert shadow_gate(1000 + gate.needed, 995 + gate.needed).passed
    assert not shadow_gate(999 + gate.needed, 994 + gate.needed).passed


def test_gate_needs_the_count_even_when_parity_is_high() -> None:
    gate = shadow_gate(1000, 1000, min_compared=2000)
    assert not gate.passed
    assert gate.needed == 1000
    assert (
        gate.reason
        == "1000 of 2000 comparisons: about 1000 more equal comparisons in a row would pass"
    )


def test_gate_sees_when_more_equal_answers_cannot_help() -> None:
    gate = shadow_gate(100_000, 90_000)
    assert not gate.passed
    assert gate.needed == -1
    assert (
        gate.reason
        == "parity lower bound 89.81 % < 99.5 %: not reachable by more equal answers alone"
    )


def test_gate_never_shows_a_failing_bound_as_the_floor() -> None:
    gate = shadow_gate(764, 764)
    assert gate.lower_bound is not None
    assert gate.lower_bound == pytest.approx(wilson_interval(764, 764)[0])
    assert 0.99495 < gate.lower_bound < 0.995  # would round to 99.50 %
    assert gate.reason == (
        "parity lower bound 99.49 % < 99.5 %: about 1 more equal comparison in a row would pass"
    )


@pytest.mark.parametrize(
    ("compared", "equal", "min_compared", "floor"),
    [(10, 11, 500, 0.995), (-1, 0, 500, 0.995), (10, 10, -1, 0.995), (10, 10, 500, 1.5)],
)
def test_gate_refuses_impossible_input(
    compared: int, equal: int, min_compared: int, floor: float
) -> None:
    with pytest.raises(ValueError):
        shadow_gate(compared, equal, min_compared=min_compared, floor=floor)
