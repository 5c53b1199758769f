"""The rollout stage machine of one rollout group, and the evidence gate for leaving shadow.

Pure. No I/O, no clock reads: `advance` maps (state, one interval's outcome, policy) to the next
state and what the analyzer should do; the analyzer applies the weight and stores the state.

Rules:
- Only a RUNNING rollout moves. PAUSED, ROLLED_BACK and COMPLETE states come back unchanged with
  Action.NONE: a human resumes or restarts a rollout, never an interval.
- FAIL rolls back to weight 0 (ROLLED_BACK) or pauses at the current weight, per `on_fail`.
- PASS counts consecutive passes at the current step; at `passes_to_promote` the weight moves up
  one step (the counters restart there), or the rollout completes (stage new, 100 %) when that
  step is 100 % or it already sits at or above the last step.
- INCONCLUSIVE counts consecutive inconclusive intervals and keeps the passes (quiet traffic is
  not evidence against the canary); at `max_inconclusive` the rollout pauses, because a canary
  nobody can judge should not sit at its weight unwatched.
- shadow_gate passes only with at least `min_compared` comparisons and a Wilson 95 % lower bound
  of the parity at or above `floor`. Its reason names what blocks and how far away passing is.
  With every comparison equal the bound is n / (n + 1.96²), so the default floor of 99.5 % needs
  765 comparisons even at perfect parity: past the default 500, the floor is what binds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import assert_never

from strangler.diff import wilson_interval
from strangler.rollout.judge import Outcome

FULL_BP = 10_000
ON_FAIL_CHOICES = ("rollback", "pause")
# How far shadow_gate searches for "N more equal comparisons would pass".
MAX_MORE_COMPARISONS = 1_000_000


class RolloutStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    ROLLED_BACK = "rolled_back"
    COMPLETE = "complete"


class Action(StrEnum):
    NONE = "none"
    PROMOTE = "promote"
    COMPLETE = "complete"
    ROLLBACK = "rollback"
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class Policy:
    """How a rollout group climbs; ValueError on steps that do not climb within (0, 100 %]."""

    steps_bp: tuple[int, ...] = (100, 500, 2500, 5000, 10_000)  # basis points (1 % = 100)
    passes_to_promote: int = 1  # consecutive passing intervals to move up one step
    on_fail: str = "rollback"  # or "pause"
    max_inconclusive: int = 10  # consecutive inconclusive intervals that pause the rollout

    def __post_init__(self) -> None:
        if not self.steps_bp:
            raise ValueError("steps_bp must name at least one step")
        if any(not 0 < step <= FULL_BP for step in self.steps_bp):
            raise ValueError(f"steps must be in (0, {FULL_BP}] basis points, got {self.steps_bp}")
        if any(low >= high for low, high in zip(self.steps_bp, self.steps_bp[1:], strict=False)):
            raise ValueError(f"steps must strictly increase, got {self.steps_bp}")
        if self.passes_to_promote < 1:
            raise ValueError(f"passes_to_promote must be >= 1, got {self.passes_to_promote}")
        if self.on_fail not in ON_FAIL_CHOICES:
            raise ValueError(f"on_fail must be one of {ON_FAIL_CHOICES}, got {self.on_fail!r}")
        if self.max_inconclusive < 1:
            raise ValueError(f"max_inconclusive must be >= 1, got {self.max_inconclusive}")


@dataclass(frozen=True, slots=True)
class RolloutState:
    status: RolloutStatus
    weight_bp: int  # current canary weight
    passes: int = 0  # consecutive passes at this step
    inconclusive: int = 0  # consecutive inconclusive intervals
    reason: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.weight_bp <= FULL_BP:
            raise ValueError(f"weight_bp must be in [0, {FULL_BP}], got {self.weight_bp}")
        if self.passes < 0 or self.inconclusive < 0:
            raise ValueError("passes and inconclusive count up from 0")


@dataclass(frozen=True, slots=True)
class Step:
    """What the analyzer should do after one verdict."""

    action: Action
    state: RolloutState  # the state after the action
    reason: str  # "2 passing intervals at 5 %: promote to 25 %"


def next_weight(steps_bp: Sequence[int], weight_bp: int) -> int | None:
    """The first step above `weight_bp`; None at or after the last step. Steps ascend."""
    for step in steps_bp:
        if step > weight_bp:
            return step
    return None


def advance(state: RolloutState, verdict: Outcome, policy: Policy) -> Step:
    """The next state of a rollout after one interval's verdict (see the module rules)."""
    if state.status is not RolloutStatus.RUNNING:
        reason = f"rollout is {state.status.value}: intervals change nothing"
        return Step(Action.NONE, state, reason)
    match verdict:
        case Outcome.FAIL:
            return _after_fail(state, policy)
        case Outcome.PASS:
            return _after_pass(state, policy)
        case Outcome.INCONCLUSIVE:
            return _after_inconclusive(state, policy)
        case _:
            assert_never(verdict)


def _after_fail(state: RolloutState, policy: Policy) -> Step:
    at = _percent(state.weight_bp)
    if policy.on_fail == "pause":
        reason = f"interval failed at {at}: paused at {at}"
        paused = RolloutState(RolloutStatus.PAUSED, state.weight_bp, 0, 0, reason)
        return Step(Action.PAUSE, paused, reason)
    reason = f"interval failed at {at}: roll back to 0 %"
    rolled_back = RolloutState(RolloutStatus.ROLLED_BACK, 0, 0, 0, reason)
    return Step(Action.ROLLBACK, rolled_back, reason)


def _after_pass(state: RolloutState, policy: Policy) -> Step:
    at = _percent(state.weight_bp)
    passes = state.passes + 1
    if passes < policy.passes_to_promote:
        reason = f"{passes} of {policy.passes_to_promote} passing intervals at {at}"
        return Step(
            Action.NONE, replace(state, passes=passes, inconclusive=0, reason=reason), reason
        )
    counted = f"{passes} passing interval{'s' if passes != 1 else ''} at {at}"
    target = next_weight(policy.steps_bp, state.weight_bp)
    if target is None or target >= FULL_BP:
        # At 100 % legacy answers nothing, so nothing could be compared there: the step to
        # 100 % is the move to stage new.
        done_text = "complete at 100 %" if target is None else "complete: stage new"
        reason = f"{counted}: {done_text}"
        done = RolloutState(RolloutStatus.COMPLETE, FULL_BP, 0, 0, reason)
        return Step(Action.COMPLETE, done, reason)
    reason = f"{counted}: promote to {_percent(target)}"
    promoted = RolloutState(RolloutStatus.RUNNING, target, 0, 0, reason)
    return Step(Action.PROMOTE, promoted, reason)


def _after_inconclusive(state: RolloutState, policy: Policy) -> Step:
    at = _percent(state.weight_bp)
    inconclusive = state.inconclusive + 1
    if inconclusive >= policy.max_inconclusive:
        reason = f"{inconclusive} inconclusive intervals in a row at {at}: paused"
        paused = replace(
            state, status=RolloutStatus.PAUSED, inconclusive=inconclusive, reason=reason
        )
        return Step(Action.PAUSE, paused, reason)
    reason = f"{inconclusive} of {policy.max_inconclusive} inconclusive intervals at {at}"
    return Step(Action.NONE, replace(state, inconclusive=inconclusive, reason=reason), reason)


@dataclass(frozen=True, slots=True)
class Gate:
    """Whether a route's shadow evidence allows leaving stage shadow, and why (not)."""

    passed: bool
    reason: str
    compared: int
    lower_bound: float | None  # Wilson 95 % lower bound of equal/compared; None before any
    # More comparisons, all equal, after which the gate would pass: 0 once it passes, -1 when
    # no number up to MAX_MORE_COMPARISONS would (the differences already seen weigh too much).
    needed: int


# The evidence gate's defaults: comparisons needed, and the Wilson lower bound to reach.
MIN_COMPARED = 500
PARITY_FLOOR = 0.995


def shadow_gate(
    compared: int, equal: int, *, min_compared: int = MIN_COMPARED, floor: float = PARITY_FLOOR
) -> Gate:
    """The evidence gate for leaving stage shadow; ValueError on impossible counts."""
    if not 0 <= equal <= compared:
        raise ValueError(f"need 0 <= equal <= compared, got {equal}/{compared}")
    if min_compared < 0:
        raise ValueError(f"min_compared must be >= 0, got {min_compared}")
    if not 0.0 <= floor <= 1.0:
        raise ValueError(f"floor must be in [0, 1], got {floor}")
    # Wilson's bound is 0.0 with no comparisons: no evidence passes no floor above 0.
    bound = _lower(equal, compared)
    lower = bound if compared else None
    floor_text = f"{round(floor * 100, 4):g} %"
    if compared >= min_compared and bound >= floor:
        reason = (
            f"parity lower bound {_pct_down(bound)} >= {floor_text} over {compared} comparisons"
        )
        return Gate(True, reason, compared, lower, 0)
    blockers = []
    if compared < min_compared:
        blockers.append(f"{compared} of {min_compared} comparisons")
    if bound < floor and compared:
        blockers.append(f"parity lower bound {_pct_down(bound)} < {floor_text}")
    elif bound < floor and not blockers:
        blockers.append("no comparisons yet")
    needed = _more_equal_needed(compared, equal, min_compared, floor)
    if needed < 0:
        tail = "not reachable by more equal answers alone"
    else:
        noun = "comparison" if needed == 1 else "comparisons"
        tail = f"about {needed} more equal {noun} in a row would pass"
    return Gate(False, f"{', '.join(blockers)}: {tail}", compared, lower, needed)


def _pct_down(fraction: float) -> str:
    # Rounded down, so a bound just under the floor never reads as equal to it.
    return f"{math.floor(fraction * 10_000) / 100:.2f} %"


def _percent(weight_bp: int) -> str:
    return f"{weight_bp / 100:g} %"


def _lower(equal: int, compared: int) -> float:
    return wilson_interval(equal, compared)[0]


def _more_equal_needed(compared: int, equal: int, min_compared: int, floor: float) -> int:
    """The smallest k with compared + k >= min_compared and the lower bound of
    (equal + k)/(compared + k) >= floor; -1 past MAX_MORE_COMPARISONS."""
    low = max(0, min_compared - compared)
    if low > MAX_MORE_COMPARISONS:
        return -1

    def passes(k: int) -> bool:
        return compared + k > 0 and _lower(equal + k, compared + k) >= floor

    if not passes(MAX_MORE_COMPARISONS):
        return -1
    # Adding equal comparisons raises both p and n, so the lower bound only grows with k: the
    # first passing k is found by bisection.
    high = MAX_MORE_COMPARISONS
    while low < high:
        middle = (low + high) // 2
        if passes(middle):
            high = middle
        else:
            low = middle + 1
    return low
