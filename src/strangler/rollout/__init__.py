"""Rollout: judge canary intervals and move a rollout group's weight through its steps.

Pure: no I/O, no clock reads, no asyncio. The proxy records latencies into LatencyHistograms;
the analyzer merges one interval's figures per side, asks `judge_interval` for a verdict and
`advance` for the next step, then applies and stores what they return. `stages` is the stage
machine every change of a unit's stage goes through (promote, rollback, pause, resume,
set_weight, complete), whoever asks.
"""

from strangler.rollout.histogram import MAX_INDEX, MAX_S, MIN_S, LatencyHistogram, bucket_value
from strangler.rollout.judge import (
    CheckResult,
    Checks,
    IntervalVerdict,
    Outcome,
    Parity,
    SideWindow,
    judge_interval,
)
from strangler.rollout.machine import (
    Action,
    Gate,
    Policy,
    RolloutState,
    RolloutStatus,
    Step,
    advance,
    next_weight,
    shadow_gate,
)
from strangler.rollout.mann_whitney import MannWhitney, mann_whitney_u
from strangler.rollout.stages import Refusal, StageAction, StageState, Transition

__all__ = [
    "MAX_INDEX",
    "MAX_S",
    "MIN_S",
    "Action",
    "CheckResult",
    "Checks",
    "Gate",
    "IntervalVerdict",
    "LatencyHistogram",
    "MannWhitney",
    "Outcome",
    "Parity",
    "Policy",
    "Refusal",
    "RolloutState",
    "RolloutStatus",
    "SideWindow",
    "StageAction",
    "StageState",
    "Step",
    "Transition",
    "advance",
    "bucket_value",
    "judge_interval",
    "mann_whitney_u",
    "next_weight",
    "shadow_gate",
]
