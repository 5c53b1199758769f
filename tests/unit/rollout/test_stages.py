"""The stage machine of a rollout unit, without a store: each (stage, status, change) gives one
Transition or one Refusal, and a refusal's text names the step that does apply."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import pytest

from strangler.rollout import (
    Gate,
    Refusal,
    RolloutStatus,
    StageAction,
    StageState,
    Transition,
    shadow_gate,
    stages,
)
from strangler.routing.model import Stage

STEPS_BP = (500, 2500, 10_000)
OPEN_GATE = shadow_gate(1000, 1000)
CLOSED_GATE = shadow_gate(0, 0)

RUNNING = RolloutStatus.RUNNING
PAUSED = RolloutStatus.PAUSED
ROLLED_BACK = RolloutStatus.ROLLED_BACK
COMPLETE = RolloutStatus.COMPLETE

Change = Callable[[StageState], Transition | Refusal]


def at(
    stage: Stage,
    status: RolloutStatus | None = None,
    weight_bp: int = 0,
    *,
    yaml_stage: Stage | None = None,
    override_by: str | None = None,
) -> StageState:
    return StageState(
        unit="api",
        stage=stage,
        yaml_stage=stage if yaml_stage is None else yaml_stage,
        weight_bp=weight_bp,
        steps_bp=STEPS_BP,
        status=status,
        override_by=override_by,
    )


def promote(
    weight_bp: int | None = None, gate: Gate | None = OPEN_GATE, force: bool = False
) -> Change:
    return functools.partial(stages.promote, weight_bp=weight_bp, gate=gate, force=force)


def set_weight(weight_bp: int) -> Change:
    return functools.partial(stages.set_weight, weight_bp=weight_bp)


HELD = (
    " (a runtime override by ana holds it there; the YAML says canary: "
    "`strangler reset api -r why` lets the YAML stand)"
)
FROM_LEGACY = "`strangler promote api -r why` starts its shadow, a second one its canary"
FROM_SHADOW = "`strangler promote api --weight W -r why` starts its canary at W %"
FROM_NEW = (
    "new answers all of it; `strangler rollback api -r why` sends it back to legacy, from where "
    "promote starts over"
)
FROM_RETIRED = (
    "it is retired; `strangler rollback api --force -r why` sends it back to legacy if legacy "
    "still has its code, from where promote starts over"
)


def moved(
    action: StageAction,
    stage: Stage,
    weight_bp: int | None,
    status: RolloutStatus | None,
    *,
    keeps_step_start: bool = False,
) -> Transition:
    return Transition(action, stage, weight_bp, status, keeps_step_start)


P, RB, PA, RE, SW, CO = (
    StageAction.PROMOTE,
    StageAction.ROLLBACK,
    StageAction.PAUSE,
    StageAction.RESUME,
    StageAction.SET_WEIGHT,
    StageAction.COMPLETE,
)

CASES: list[tuple[str, Change, StageState, Transition | Refusal]] = [
    # promote: legacy → shadow → canary → the next step → new.
    ("promote legacy", promote(), at(Stage.LEGACY), moved(P, Stage.SHADOW, None, None)),
    (
        "promote shadow to the first step",
        promote(),
        at(Stage.SHADOW),
        moved(P, Stage.CANARY, 500, RUNNING),
    ),
    (
        "promote shadow to a weight",
        promote(weight_bp=1000),
        at(Stage.SHADOW),
        moved(P, Stage.CANARY, 1000, RUNNING),
    ),
    (
        "promote shadow past a closed gate, forced",
        promote(gate=CLOSED_GATE, force=True),
        at(Stage.SHADOW),
        moved(P, Stage.CANARY, 500, RUNNING),
    ),
    (
        "promote shadow with a closed gate",
        promote(gate=CLOSED_GATE),
        at(Stage.SHADOW),
        Refusal(
            f"api stays in shadow: {CLOSED_GATE.reason} (pass --force with a reason to override "
            "the evidence gate)",
            gate=CLOSED_GATE,
        ),
    ),
    (
        "promote shadow without a gate",
        promote(gate=None),
        at(Stage.SHADOW),
        Refusal("api stays in shadow: leaving it needs the evidence gate, none was given"),
    ),
    (
        "promote canary one step",
        promote(),
        at(Stage.CANARY, RUNNING, 500),
        moved(P, Stage.CANARY, 2500, RUNNING),
    ),
    (
        "promote a paused canary keeps the pause",
        promote(),
        at(Stage.CANARY, PAUSED, 500),
        moved(P, Stage.CANARY, 2500, PAUSED),
    ),
    (
        "promote a rolled-back canary runs again",
        promote(),
        at(Stage.CANARY, ROLLED_BACK, 500),
        moved(P, Stage.CANARY, 2500, RUNNING),
    ),
    (
        "promote canary to a weight",
        promote(weight_bp=5000),
        at(Stage.CANARY, RUNNING, 2500),
        moved(P, Stage.CANARY, 5000, RUNNING),
    ),
    (
        "promote canary never lowers the weight",
        promote(weight_bp=2500),
        at(Stage.CANARY, RUNNING, 2500),
        Refusal(
            "promote raises the weight; api is at 25 % (use `rollout weight` to lower it)",
            http_status=400,
        ),
    ),
    (
        "promote canary past the last step completes",
        promote(),
        at(Stage.CANARY, RUNNING, 10_000),
        moved(P, Stage.NEW, 10_000, COMPLETE),
    ),
    # new → retired needs nothing but the reason: the gates were judged on the way to new.
    (
        "promote new retires it",
        promote(),
        at(Stage.NEW, COMPLETE),
        moved(P, Stage.RETIRED, None, None),
    ),
    (
        "promote new, held by an override, retires it too",
        promote(gate=None),
        at(Stage.NEW, COMPLETE, yaml_stage=Stage.CANARY, override_by="ana"),
        moved(P, Stage.RETIRED, None, None),
    ),
    (
        "promote new to a weight",
        promote(weight_bp=5000),
        at(Stage.NEW, COMPLETE),
        Refusal("api is in stage new: promote retires it, it takes no weight", http_status=400),
    ),
    (
        "promote retired",
        promote(),
        at(Stage.RETIRED),
        Refusal("api is retired (legacy's code is gone): there is no later stage to promote it to"),
    ),
    (
        "promote retired, held by an override",
        promote(),
        at(Stage.RETIRED, yaml_stage=Stage.CANARY, override_by="ana"),
        Refusal(
            "api is retired (legacy's code is gone): there is no later stage to promote it "
            f"to{HELD}"
        ),
    ),
    (
        "promote to a weight out of range",
        promote(weight_bp=10_001),
        at(Stage.SHADOW),
        Refusal("weight must be from 0.01 to 100 %, got 100.01 %", http_status=400),
    ),
    # rollback: from anywhere but legacy.
    ("rollback legacy", stages.rollback, at(Stage.LEGACY), Refusal("api is already on legacy")),
    (
        "rollback legacy, held by an override",
        stages.rollback,
        at(Stage.LEGACY, ROLLED_BACK, yaml_stage=Stage.CANARY, override_by="ana"),
        Refusal(f"api is already on legacy{HELD}"),
    ),
    *(
        (
            f"rollback {stage}",
            stages.rollback,
            at(stage, status, weight_bp),
            moved(RB, Stage.LEGACY, 0, ROLLED_BACK),
        )
        for stage, status, weight_bp in [
            (Stage.SHADOW, None, 0),
            (Stage.CANARY, RUNNING, 2500),
            (Stage.CANARY, PAUSED, 2500),
            (Stage.NEW, COMPLETE, 0),
        ]
    ),
    # rollback of a retired unit: legacy may no longer have its code, so only when forced.
    (
        "rollback retired",
        stages.rollback,
        at(Stage.RETIRED),
        Refusal(
            "api is retired: legacy may no longer have the code to answer it (pass --force "
            "with a reason if it still does)"
        ),
    ),
    (
        "rollback retired, forced",
        functools.partial(stages.rollback, force=True),
        at(Stage.RETIRED),
        moved(RB, Stage.LEGACY, 0, ROLLED_BACK),
    ),
    (
        "rollback new, forced, is a plain rollback",
        functools.partial(stages.rollback, force=True),
        at(Stage.NEW, COMPLETE),
        moved(RB, Stage.LEGACY, 0, ROLLED_BACK),
    ),
    (
        "pause retired",
        stages.pause,
        at(Stage.RETIRED),
        Refusal(f"api is in stage retired; only a canary rollout can pause ({FROM_RETIRED})"),
    ),
    # pause and resume: a canary rollout only, and only a change of status.
    (
        "pause a running canary",
        stages.pause,
        at(Stage.CANARY, RUNNING, 2500),
        moved(PA, Stage.CANARY, 2500, PAUSED, keeps_step_start=True),
    ),
    (
        "pause a paused canary",
        stages.pause,
        at(Stage.CANARY, PAUSED, 2500),
        Refusal("api is already paused"),
    ),
    (
        "pause legacy",
        stages.pause,
        at(Stage.LEGACY),
        Refusal(f"api is in stage legacy; only a canary rollout can pause ({FROM_LEGACY})"),
    ),
    (
        "pause shadow",
        stages.pause,
        at(Stage.SHADOW),
        Refusal(f"api is in stage shadow; only a canary rollout can pause ({FROM_SHADOW})"),
    ),
    (
        "pause new, held by an override",
        stages.pause,
        at(Stage.NEW, COMPLETE, yaml_stage=Stage.CANARY, override_by="ana"),
        Refusal(f"api is in stage new; only a canary rollout can pause ({FROM_NEW}){HELD}"),
    ),
    (
        "resume a paused canary starts its step over",
        stages.resume,
        at(Stage.CANARY, PAUSED, 2500),
        moved(RE, Stage.CANARY, 2500, RUNNING),
    ),
    (
        "resume a rolled-back canary",
        stages.resume,
        at(Stage.CANARY, ROLLED_BACK, 0),
        moved(RE, Stage.CANARY, 0, RUNNING),
    ),
    (
        "resume a running canary",
        stages.resume,
        at(Stage.CANARY, RUNNING, 2500),
        Refusal("api is already running"),
    ),
    (
        "resume retired",
        stages.resume,
        at(Stage.RETIRED),
        Refusal(f"api is in stage retired; only a canary rollout can resume ({FROM_RETIRED})"),
    ),
    # set_weight: a canary rollout only, up or down, its status kept.
    (
        "weight down to 0",
        set_weight(0),
        at(Stage.CANARY, RUNNING, 2500),
        moved(SW, Stage.CANARY, 0, RUNNING),
    ),
    (
        "weight of a paused canary",
        set_weight(5000),
        at(Stage.CANARY, PAUSED, 2500),
        moved(SW, Stage.CANARY, 5000, PAUSED),
    ),
    (
        "weight of a canary without a rollout",
        set_weight(5000),
        at(Stage.CANARY, None, 2500),
        moved(SW, Stage.CANARY, 5000, RUNNING),
    ),
    (
        "weight of legacy",
        set_weight(1000),
        at(Stage.LEGACY),
        Refusal(f"api is in stage legacy, not canary: {FROM_LEGACY}"),
    ),
    (
        "weight of shadow",
        set_weight(1000),
        at(Stage.SHADOW),
        Refusal(f"api is in stage shadow, not canary: {FROM_SHADOW}"),
    ),
    (
        "weight of new, held by an override",
        set_weight(1000),
        at(Stage.NEW, COMPLETE, yaml_stage=Stage.CANARY, override_by="ana"),
        Refusal(f"api is in stage new, not canary: {FROM_NEW}{HELD}"),
    ),
    (
        "weight out of range",
        set_weight(-1),
        at(Stage.CANARY, RUNNING, 2500),
        Refusal("weight must be from 0 to 100 %, got -0.01 %", http_status=400),
    ),
    # complete: a canary rollout to stage new at 100 %.
    (
        "complete a canary",
        stages.complete,
        at(Stage.CANARY, RUNNING, 5000),
        moved(CO, Stage.NEW, 10_000, COMPLETE),
    ),
    (
        "complete shadow",
        stages.complete,
        at(Stage.SHADOW),
        Refusal(f"api is in stage shadow; only a canary rollout can complete ({FROM_SHADOW})"),
    ),
]


@pytest.mark.parametrize(
    ("change", "state", "expected"),
    [pytest.param(change, state, expected, id=name) for name, change, state, expected in CASES],
)
def test_each_change_of_each_state_moves_or_is_refused(
    change: Change, state: StageState, expected: Transition | Refusal
) -> None:
    assert change(state) == expected


def test_an_override_that_keeps_the_yamls_stage_is_not_named() -> None:
    # The hint explains a stage that differs from the YAML; an override at the YAML's own stage
    # has nothing to explain.
    state = at(Stage.LEGACY, ROLLED_BACK, override_by="ana")
    assert stages.rollback(state) == Refusal("api is already on legacy")


CHANGES: dict[str, Change] = {
    "promote": promote(),
    "promote --force": promote(gate=CLOSED_GATE, force=True),
    "rollback": stages.rollback,
    "pause": stages.pause,
    "resume": stages.resume,
    "set_weight": set_weight(5000),
    "complete": stages.complete,
}


@pytest.mark.parametrize(
    ("stage", "status"),
    list(itertools.product(Stage, [None, *RolloutStatus])),
)
def test_every_change_of_every_state_is_a_transition_or_a_refusal(
    stage: Stage, status: RolloutStatus | None
) -> None:
    state = at(stage, status, 2500 if stage is Stage.CANARY else 0)
    for name, change in CHANGES.items():
        result = change(state)
        if isinstance(result, Refusal):
            assert result.message.startswith(("api ", "promote ")), (name, result)
            assert result.http_status in (400, 409)
            continue
        assert isinstance(result, Transition), (name, result)
        # A rollout runs only in stage canary, at a weight; stage new is complete at 100 %.
        if result.stage is Stage.CANARY:
            assert result.weight_bp is not None and result.status is not None, (name, result)
        if result.stage is Stage.NEW:
            assert (result.weight_bp, result.status) == (10_000, COMPLETE), (name, result)
        # Only a change that keeps the weight may keep the step's start.
        if result.keeps_step_start:
            assert result.weight_bp == state.weight_bp, (name, result)
