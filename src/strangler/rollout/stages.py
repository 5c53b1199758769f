"""The stage machine of one rollout unit: which change applies to a unit as it is, and what it
moves the unit to, or why it does not apply.

Pure. No I/O, no store, no clock reads: each function maps a StageState to a Transition or a
Refusal. The ControlService calls them inside the store's write transaction, on the unit as it
is there, and writes what they return; every door (CLI, admin API, analyzer) goes through it.

Rules:
- promote: legacy → shadow → canary (the first step, or `weight_bp`) → the next step → new.
  Leaving shadow needs the evidence gate (shadow parity) unless forced. A promotion never
  lowers the weight; past the last step the unit completes to stage new.
- promote from new: to retired (legacy's code for the unit is gone). It needs nothing more
  than a reason: parity, the canary and the data gate were judged on the way to new, and
  retiring changes no request (new answers both stages); it only takes legacy away as a
  fallback.
- rollback: everyone back on legacy at once, from any stage but legacy. From retired only when
  forced: legacy may no longer have the code to answer.
- pause, resume, set_weight: a canary rollout only. A pause keeps the step's start; a resume
  starts the step over, so no interval measured before the pause is judged after it.
- complete: a canary rollout to stage new at 100 %. At 100 % legacy answers nothing, so
  nothing could be compared there: the step to 100 % is the move to stage new.
- A refusal names the step that does apply to the unit's stage as it really is (override
  included), as a command the user can run; its `http_status` is what the admin API answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from strangler.rollout.machine import FULL_BP, Gate, RolloutStatus, next_weight
from strangler.routing.model import Stage


class StageAction(StrEnum):
    """A change of a unit's stage, weight or status, by the name its audit entry keeps."""

    PROMOTE = "promote"
    ROLLBACK = "rollback"
    PAUSE = "pause"
    RESUME = "resume"
    SET_WEIGHT = "set_weight"
    COMPLETE = "complete"


@dataclass(frozen=True, slots=True)
class StageState:
    """One rollout unit as it is in force: the YAML's stage, and the override on top of it."""

    unit: str
    stage: Stage
    yaml_stage: Stage
    weight_bp: int  # the canary weight in force (0 outside stage canary)
    steps_bp: tuple[int, ...]  # the plan's steps, ascending
    status: RolloutStatus | None  # None when no rollout runs
    # Who set the runtime override in force; None while the YAML stands.
    override_by: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """What a change moves the unit to."""

    action: StageAction
    stage: Stage
    weight_bp: int | None  # None: the YAML's weight (a stage without one)
    status: RolloutStatus | None  # None: no rollout runs
    # Keep the current step's start: the weight does not move.
    keeps_step_start: bool = False


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a change does not apply to the unit as it is."""

    message: str
    http_status: int = 409
    # The closed evidence gate, when that is what refused.
    gate: Gate | None = None


def promote(
    state: StageState,
    *,
    weight_bp: int | None = None,
    gate: Gate | None = None,
    force: bool = False,
) -> Transition | Refusal:
    """One step forward. `weight_bp` is the canary weight to move to (default: the next step);
    `gate` is the shadow evidence, needed to leave shadow unless `force`."""
    unit = state.unit
    if weight_bp is not None and (refused := _refuse_weight(weight_bp, low_bp=1)) is not None:
        return refused
    match state.stage:
        case Stage.LEGACY:
            return Transition(StageAction.PROMOTE, Stage.SHADOW, None, None)
        case Stage.SHADOW:
            if gate is None:
                return Refusal(
                    f"{unit} stays in shadow: leaving it needs the evidence gate, none was given"
                )
            if not gate.passed and not force:
                return Refusal(
                    f"{unit} stays in shadow: {gate.reason} (pass --force with a reason to "
                    "override the evidence gate)",
                    gate=gate,
                )
            first = weight_bp if weight_bp is not None else state.steps_bp[0]
            return Transition(StageAction.PROMOTE, Stage.CANARY, first, RolloutStatus.RUNNING)
        case Stage.CANARY:
            if weight_bp is not None and weight_bp <= state.weight_bp:
                return Refusal(
                    f"promote raises the weight; {unit} is at {state.weight_bp / 100:g} % "
                    "(use `rollout weight` to lower it)",
                    http_status=400,
                )
            target = (
                weight_bp if weight_bp is not None else next_weight(state.steps_bp, state.weight_bp)
            )
            if target is None:
                return Transition(StageAction.PROMOTE, Stage.NEW, FULL_BP, RolloutStatus.COMPLETE)
            # A person's promotion keeps a pause; one that follows a finished rollout starts
            # another.
            status = state.status if state.status is RolloutStatus.PAUSED else RolloutStatus.RUNNING
            return Transition(StageAction.PROMOTE, Stage.CANARY, target, status)
        case Stage.NEW:
            if weight_bp is not None:
                return Refusal(
                    f"{unit} is in stage new: promote retires it, it takes no weight",
                    http_status=400,
                )
            return Transition(StageAction.PROMOTE, Stage.RETIRED, None, None)
        case Stage.RETIRED:
            return Refusal(
                f"{unit} is retired (legacy's code is gone): there is no later stage to "
                f"promote it to{_held_by_override(state)}"
            )
        case _:
            assert_never(state.stage)


def rollback(state: StageState, *, force: bool = False) -> Transition | Refusal:
    """Everyone back on legacy at once (stage legacy, weight 0); a retired unit only when
    `force`."""
    if state.stage is Stage.LEGACY:
        return Refusal(f"{state.unit} is already on legacy{_held_by_override(state)}")
    if state.stage is Stage.RETIRED and not force:
        return Refusal(
            f"{state.unit} is retired: legacy may no longer have the code to answer it "
            f"(pass --force with a reason if it still does){_held_by_override(state)}"
        )
    return Transition(StageAction.ROLLBACK, Stage.LEGACY, 0, RolloutStatus.ROLLED_BACK)


def pause(state: StageState) -> Transition | Refusal:
    """Stop the analyzer moving the rollout; the weight in force stays."""
    return _set_status(state, StageAction.PAUSE, RolloutStatus.PAUSED)


def resume(state: StageState) -> Transition | Refusal:
    """Let the analyzer move the rollout again; its current step starts over."""
    return _set_status(state, StageAction.RESUME, RolloutStatus.RUNNING)


def set_weight(state: StageState, weight_bp: int) -> Transition | Refusal:
    """The canary weight of a unit in stage canary, up or down."""
    if (refused := _refuse_weight(weight_bp, low_bp=0)) is not None:
        return refused
    if state.stage is not Stage.CANARY:
        return Refusal(
            f"{state.unit} is in stage {state.stage.value}, not canary: "
            f"{_way_to_canary(state)}{_held_by_override(state)}"
        )
    status = state.status or RolloutStatus.RUNNING
    return Transition(StageAction.SET_WEIGHT, Stage.CANARY, weight_bp, status)


def complete(state: StageState) -> Transition | Refusal:
    """A canary rollout to stage new, at 100 %."""
    if state.stage is not Stage.CANARY:
        return _not_canary(state, StageAction.COMPLETE)
    return Transition(StageAction.COMPLETE, Stage.NEW, FULL_BP, RolloutStatus.COMPLETE)


def _set_status(
    state: StageState, action: StageAction, status: RolloutStatus
) -> Transition | Refusal:
    if state.stage is not Stage.CANARY:
        return _not_canary(state, action)
    if state.status is status:
        return Refusal(f"{state.unit} is already {status.value}")
    return Transition(
        action,
        Stage.CANARY,
        state.weight_bp,
        status,
        keeps_step_start=status is RolloutStatus.PAUSED,
    )


def _not_canary(state: StageState, action: StageAction) -> Refusal:
    return Refusal(
        f"{state.unit} is in stage {state.stage.value}; only a canary rollout can "
        f"{action.value} ({_way_to_canary(state)}){_held_by_override(state)}"
    )


def _refuse_weight(weight_bp: int, *, low_bp: int) -> Refusal | None:
    if low_bp <= weight_bp <= FULL_BP:
        return None
    return Refusal(
        f"weight must be from {low_bp / 100:g} to 100 %, got {weight_bp / 100:g} %",
        http_status=400,
    )


def _way_to_canary(state: StageState) -> str:
    """The command that brings `state`'s unit into stage canary, from the stage it is in."""
    unit = state.unit
    match state.stage:
        case Stage.LEGACY:
            return f"`strangler promote {unit} -r why` starts its shadow, a second one its canary"
        case Stage.SHADOW:
            return f"`strangler promote {unit} --weight W -r why` starts its canary at W %"
        case Stage.CANARY:
            return f"it is in its canary at {state.weight_bp / 100:g} %"
        case Stage.NEW:
            return (
                f"new answers all of it; `strangler rollback {unit} -r why` sends it back to "
                "legacy, from where promote starts over"
            )
        case Stage.RETIRED:
            return (
                f"it is retired; `strangler rollback {unit} --force -r why` sends it back to "
                "legacy if legacy still has its code, from where promote starts over"
            )
        case _:
            assert_never(state.stage)


def _held_by_override(state: StageState) -> str:
    """Why the stage is not the YAML's, when an override holds it elsewhere; else ""."""
    if state.override_by is None or state.stage is state.yaml_stage:
        return ""
    return (
        f" (a runtime override by {state.override_by} holds it there; the YAML says "
        f"{state.yaml_stage.value}: `strangler reset {state.unit} -r why` lets the YAML stand)"
    )
