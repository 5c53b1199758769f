"""Every change of a route's stage or weight, whichever door it came in by (CLI, admin API,
analyzer): validated once, written as an override with its audit entry.

Rules:
- Nothing changes without an actor and a reason; the store writes the audit entry in the same
  transaction as the override.
- Each change decides inside the store's write transaction, on the unit's current override: a
  rollback by a person and a promotion by the analyzer never both win. What a stage change
  moves the unit to, or why it is refused, is the stage machine's (rollout.stages); the service
  reads the unit, measures what the machine can't (the shadow evidence gate, the config's new
  backend) and writes what the machine returns.
- Leaving `shadow` for `canary` needs the evidence gate (shadow parity); `force` passes it, and
  the audit entry keeps the gate that was forced.
- `reset` deletes the unit's override so the YAML stands again; the audit entry keeps what was
  dropped. Resetting a unit without an override is refused, never a silent no-op.
- A refusal names the step that does apply to the unit's stage as it really is (override
  included), as a command the user can run.
- A drill (`drill`) injects a fault into every route of a unit until it expires by itself; it
  is audited under the caller's actor like any change and moves the state version, but changes
  no stage: the analyzer judges what the drill does to the answers.
- Blocking (store I/O): call from a thread, never from an event loop.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from strangler.config import Config, FaultsConfig, RouteConfig
from strangler.control.effective import apply_overrides, unit_of
from strangler.control.slo_status import BudgetRefusal, budget_json, budget_refusals
from strangler.control.state import Change, Drill, Override, Proposal, Store
from strangler.data.gate import data_gate_refusals
from strangler.errors import StranglerError
from strangler.rollout import Gate, RolloutStatus, shadow_gate, stages
from strangler.rollout.stages import Refusal, StageState, Transition
from strangler.routing.canary import FULL_WEIGHT_BP, weight_to_bp
from strangler.routing.model import Stage


class ChangeRefused(StranglerError):
    """The change does not apply to the route as it is (wrong stage, gate closed, bad value).

    `status` is the HTTP status the admin API answers with."""

    def __init__(self, message: str, *, status: int = 409, gate: Gate | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.gate = gate


# A change of the stage machine (rollout.stages), bound to its arguments but the unit's state.
Move = Callable[[StageState], Transition | Refusal]


# A drill longer than this is refused: a forgotten fault must not outlive the working day.
MAX_DRILL_S = 12 * 3600.0


class UnknownRoute(ChangeRefused):
    def __init__(self, name: str) -> None:
        super().__init__(f"no route or rollout group named {name!r}", status=404)


@dataclass(frozen=True, slots=True)
class UnitState:
    """One rollout unit as it is in force: the YAML, and the override on top of it."""

    unit: str
    routes: tuple[str, ...]
    yaml_stage: Stage
    stage: Stage
    weight_bp: int  # the canary weight in force (0 outside stage canary)
    steps_bp: tuple[int, ...]
    status: str  # a RolloutStatus value; "" when no rollout runs
    override: Override | None

    def as_dict(self) -> dict[str, object]:
        override = self.override
        return {
            "unit": self.unit,
            "routes": list(self.routes),
            "yaml_stage": self.yaml_stage.value,
            "stage": self.stage.value,
            "weight": self.weight_bp / 100,
            "steps": [step / 100 for step in self.steps_bp],
            "status": self.status,
            "overridden": override is not None,
            "override": None if override is None else override.to_json(),
        }

    def stage_state(self) -> StageState:
        """The unit as the stage machine reads it."""
        return StageState(
            unit=self.unit,
            stage=self.stage,
            yaml_stage=self.yaml_stage,
            weight_bp=self.weight_bp,
            steps_bp=self.steps_bp,
            status=RolloutStatus(self.status) if self.status else None,
            override_by=None if self.override is None else self.override.actor,
        )


def _status_of(stage: Stage, override: Override | None) -> str:
    if override is not None and override.status:
        return override.status
    return RolloutStatus.RUNNING.value if stage is Stage.CANARY else ""


class ControlService:
    """Reads and changes the control state of one config file's routes."""

    def __init__(
        self, store: Store, base: Config, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.base = base
        self.clock = clock

    # -- reading -----------------------------------------------------------------------------

    def effective(self, overrides: Mapping[str, Override] | None = None) -> Config:
        return apply_overrides(
            self.base, self.store.overrides() if overrides is None else overrides
        )

    def units(self) -> list[UnitState]:
        return unit_states(self.base, self.store.overrides())

    def unit(self, name: str) -> UnitState:
        """The unit named `name`, or the unit of the route named `name`."""
        unit = self._yaml_unit(name)
        if unit is None:
            raise UnknownRoute(name)
        return next(state for state in self.units() if state.unit == unit)

    def audit(self, name: str | None = None, *, limit: int = 100) -> list[Change]:
        """The audit log, newest first: all of it, or that of the unit named `name` (a route
        name finds its unit). A unit the YAML no longer has is found by its history;
        UnknownRoute when neither knows the name."""
        if name is None:
            return self.store.audit(None, limit=limit)
        unit = self._yaml_unit(name)
        if unit is not None:
            return self.store.audit(unit, limit=limit)
        entries = self.store.audit(name, limit=limit)
        if not entries:
            raise UnknownRoute(name)
        return entries

    def _refuse_without_new_backend(self, state: UnitState) -> None:
        """Legacy and shadow lead to stages that send requests to the new backend; a file with
        none (day one of a migration) can't take that step, whoever asks."""
        if self.base.new_backend is not None or state.stage not in (Stage.LEGACY, Stage.SHADOW):
            return
        target = Stage.SHADOW if state.stage is Stage.LEGACY else Stage.CANARY
        for route in self.base.routes:
            if unit_of(route) == state.unit and Config.needs_new_backend(route, target):
                raise ChangeRefused(
                    f"{state.unit} stays in {state.stage.value}: the config has no new backend "
                    "to send its requests to; add a backend named `new` (or set `new_backend:`), "
                    "reload the gateway, then promote"
                )

    def _yaml_unit(self, name: str) -> str | None:
        for route in self.base.routes:
            if name in (route.name, unit_of(route)):
                return unit_of(route)
        return None

    def budget_gate(self, state: UnitState) -> list[BudgetRefusal]:
        """The SLOs whose `budget_gate` holds the unit's promotion now (none hold one out of
        stage legacy: shadowing never changes what clients receive, so it spends no budget)."""
        if state.stage is Stage.LEGACY or not self.base.slos:
            return []
        return budget_refusals(self.store, self.base, state.routes, self.clock())

    def data_gate(self, state: UnitState) -> list[str]:
        """Why the tables of the unit's routes (`data.tables[].routes`) keep it from moving to
        stage new now: one line per table; [] when nothing blocks."""
        return data_gate_refusals(self.store, self.base, state.routes, self.clock())

    def gate(self, state: UnitState) -> Gate:
        """The evidence gate for leaving `shadow`: the parity of the unit's shadowed routes."""
        totals = {t.route: t for t in self.store.routes()}
        compared = equal = 0
        for route in state.routes:
            found = totals.get(route)
            if found is not None:
                compared += found.compared
                equal += found.equal + found.equal_but_noise
        return shadow_gate(compared, equal)

    # -- changing ----------------------------------------------------------------------------

    def promote(
        self,
        name: str,
        *,
        actor: str,
        reason: str,
        weight: float | None = None,
        force: bool = False,
    ) -> Change:
        """One step forward: legacy → shadow → canary (first step, or `weight`) → next step →
        new. Leaving shadow needs the evidence gate unless `force`."""
        state = self.unit(name)
        self._refuse_without_new_backend(state)
        # Measured before the write transaction (it reads the shadow totals), also from legacy:
        # by the time the transaction runs, another change may have moved the unit to shadow.
        gate = self.gate(state) if state.stage in (Stage.LEGACY, Stage.SHADOW) else None
        target_bp = None if weight is None else _checked_weight(weight)
        budget = self.budget_gate(state)
        if budget and not force:
            raise ChangeRefused(
                f"{state.unit} stays in {state.stage.value}: "
                + "; ".join(refusal.why for refusal in budget)
                + " (pass --force with a reason to override the budget gate)"
            )
        # Read before the transaction, used inside it only if the step turns out to send every
        # request to new (stage new, or a canary at 100 %).
        data = self.data_gate(state) if state.stage is Stage.CANARY else []

        def decide(current: Override | None) -> Proposal:
            now_state = self._recheck(state.unit, current).stage_state()
            moved = stages.promote(now_state, weight_bp=target_bp, gate=gate, force=force)
            evidence: dict[str, object] = {}
            if gate is not None and now_state.stage is Stage.SHADOW:
                evidence = {"gate": _gate_json(gate), "forced": force and not gate.passed}
            if budget:
                evidence["budget_gate"] = budget_json(budget, forced=True)
            if data and isinstance(moved, Transition) and _answers_all_from_new(moved):
                if not force:
                    raise ChangeRefused(
                        f"{state.unit} stays in canary: its data disagrees or is not known to "
                        f"agree: {'; '.join(data)} (pass --force with a reason to override the "
                        "data gate)"
                    )
                evidence["data_gate"] = {"forced": True, "tables": data}
            return _proposal(moved, evidence=evidence or None)

        return self._change(state.unit, decide, actor=actor, reason=reason)

    def rollback(self, name: str, *, actor: str, reason: str, force: bool = False) -> Change:
        """Everyone back on legacy at once (stage legacy, weight 0). A retired unit only with
        `force`; the audit entry says it was forced."""
        unit = self.unit(name).unit

        def decide(current: Override | None) -> Proposal:
            now_state = self._recheck(unit, current).stage_state()
            moved = stages.rollback(now_state, force=force)
            forced = force and now_state.stage is Stage.RETIRED
            return _proposal(moved, evidence={"forced_from_retired": True} if forced else None)

        return self._change(unit, decide, actor=actor, reason=reason)

    def drill(
        self,
        name: str,
        fault: FaultsConfig | None,
        *,
        for_s: float | None,
        actor: str,
        reason: str,
    ) -> Change:
        """Inject `fault` into the answers of every route of the unit for `for_s` seconds, or
        with None, clear the unit's drill (refused when none is in force)."""
        unit = self.unit(name).unit
        if not reason.strip():
            raise ChangeRefused("a reason is required (it goes to the audit log)", status=400)
        now = self.clock()
        if fault is None:
            current = self.store.drills().get(unit)
            if current is None or current.expires_at <= now:
                raise ChangeRefused(f"{unit} has no drill in force to clear")
            return self.store.set_drill(unit, None, actor=actor, reason=reason, now=now)
        if for_s is None or not 0 < for_s <= MAX_DRILL_S:
            raise ChangeRefused(
                f"a drill needs a duration from 1 s to {MAX_DRILL_S / 3600:g} h (--for), "
                f"got {for_s}",
                status=400,
            )
        override = self.base.canary.override
        if fault.only_when_header is not None and not (
            override.networks or override.secret_env is not None
        ):
            raise ChangeRefused(
                "only_when_header would never be honoured: nobody is trusted to ask for a "
                "fault; set canary.override.networks or canary.override.secret_env",
                status=400,
            )
        drill = Drill(unit, fault.model_dump(mode="json", exclude_none=True), now + for_s)
        return self.store.set_drill(unit, drill, actor=actor, reason=reason, now=now)

    def pause(self, name: str, *, actor: str, reason: str) -> Change:
        """Stop the analyzer moving this unit; the weight in force stays."""
        return self._move(self.unit(name).unit, stages.pause, actor=actor, reason=reason)

    def resume(self, name: str, *, actor: str, reason: str) -> Change:
        return self._move(self.unit(name).unit, stages.resume, actor=actor, reason=reason)

    def set_weight(self, name: str, weight: float, *, actor: str, reason: str) -> Change:
        """Set the canary weight of a unit in stage canary (up or down)."""
        unit = self.unit(name).unit
        target_bp = _checked_weight(weight, allow_zero=True)
        move = functools.partial(stages.set_weight, weight_bp=target_bp)
        return self._move(unit, move, actor=actor, reason=reason)

    def reset(self, name: str, *, actor: str, reason: str) -> Change:
        """Drop the unit's override: the YAML's stage and weight stand again. The audit entry's
        `before` is the dropped override, its `after` the YAML's state, and its evidence who
        had set the override and why. A unit the YAML no longer has can be reset too (its
        orphaned override is dropped)."""
        unit = self._yaml_unit(name)
        if unit is None and name not in self.store.overrides():
            raise UnknownRoute(name)
        target = name if unit is None else unit

        def decide(current: Override | None) -> Proposal:
            if current is None:
                yaml = "" if unit is None else f" (stage {self._recheck(target, None).stage})"
                raise ChangeRefused(
                    f"{target} has no runtime override: the YAML{yaml} is in force already"
                )
            dropped = {"version": current.version, "actor": current.actor,
                       "reason": current.reason, "updated_at": current.updated_at}  # fmt: skip
            return Proposal(
                "reset", None, None, "",
                evidence={"dropped": dropped},
                baseline={} if unit is None else self.baseline(target),
                clears_override=True,
            )  # fmt: skip

        return self._change(target, decide, actor=actor, reason=reason)

    def apply(
        self,
        unit: str,
        expected_weight_bp: int,
        move: Move,
        *,
        reason: str,
        evidence: Mapping[str, object] | None = None,
    ) -> Change | None:
        """The analyzer's change, `move` (a function of rollout.stages): written only if the
        unit is still running at the weight it judged (a person may have paused, rolled back
        or moved it meanwhile) and the stage machine lets it move; else None."""

        def decide(current: Override | None) -> Proposal | None:
            now_state = self._recheck(unit, current)
            if now_state.stage is not Stage.CANARY or now_state.status != RolloutStatus.RUNNING:
                return None
            if now_state.weight_bp != expected_weight_bp:
                return None
            moved = move(now_state.stage_state())
            if isinstance(moved, Refusal):
                return None
            return _proposal(moved, evidence=evidence)

        return self.store.change(unit, decide, actor="analyzer", reason=reason, now=self.clock())

    # -- helpers -----------------------------------------------------------------------------

    def _move(self, unit: str, move: Move, *, actor: str, reason: str) -> Change:
        def decide(current: Override | None) -> Proposal:
            return _proposal(move(self._recheck(unit, current).stage_state()))

        return self._change(unit, decide, actor=actor, reason=reason)

    def _change(
        self, unit: str, decide: Callable[[Override | None], Proposal], *, actor: str, reason: str
    ) -> Change:
        if not reason.strip():
            raise ChangeRefused("a reason is required (it goes to the audit log)", status=400)

        def with_baseline(current: Override | None) -> Proposal:
            proposal = decide(current)
            if current is None and proposal.baseline is None:
                proposal = dataclasses.replace(proposal, baseline=self.baseline(unit))
            return proposal

        change = self.store.change(
            unit, with_baseline, actor=actor, reason=reason, now=self.clock()
        )
        assert change is not None  # decide never returns None here
        return change

    def baseline(self, unit: str) -> dict[str, object]:
        """The unit's state as the YAML has it, in an audit entry's shape."""
        state = self._recheck(unit, None)
        weight = state.weight_bp if state.stage is Stage.CANARY else None
        return {"stage": state.stage.value, "weight_bp": weight, "status": state.status}

    def _recheck(self, unit: str, current: Override | None) -> UnitState:
        """The unit as it is inside the write transaction (the override may have moved since
        `unit()` read it)."""
        overrides = {} if current is None else {unit: current}
        for state in unit_states(self.base, overrides):
            if state.unit == unit:
                return state
        raise UnknownRoute(unit)


def unit_states(base: Config, overrides: Mapping[str, Override]) -> list[UnitState]:
    """Every rollout unit of `base` with `overrides` applied, in the order of their first
    route."""
    config = apply_overrides(base, overrides)
    grouped: dict[str, list[tuple[RouteConfig, RouteConfig]]] = {}
    for yaml_route, route in zip(base.routes, config.routes, strict=True):
        grouped.setdefault(unit_of(route), []).append((yaml_route, route))
    groups = config.canary_groups()
    states = []
    for unit, pairs in grouped.items():
        yaml_route, route = pairs[0]
        override = overrides.get(unit)
        canary = groups.get(unit, route.canary)
        states.append(
            UnitState(
                unit=unit,
                routes=tuple(r.name for _, r in pairs),
                yaml_stage=yaml_route.stage,
                stage=route.stage,
                weight_bp=weight_to_bp(canary.weight) if route.stage is Stage.CANARY else 0,
                steps_bp=tuple(weight_to_bp(step) for step in canary.plan.steps),
                status=_status_of(route.stage, override),
                override=override,
            )
        )
    return states


def _proposal(
    moved: Transition | Refusal, *, evidence: Mapping[str, object] | None = None
) -> Proposal:
    """The store's Proposal for a transition of the stage machine; ChangeRefused for a
    refusal."""
    if isinstance(moved, Refusal):
        raise ChangeRefused(moved.message, status=moved.http_status, gate=moved.gate)
    return Proposal(
        moved.action.value,
        moved.stage.value,
        moved.weight_bp,
        "" if moved.status is None else moved.status.value,
        keeps_step_start=moved.keeps_step_start,
        evidence=evidence,
    )


def _answers_all_from_new(moved: Transition) -> bool:
    """Whether after `moved` the new backend answers every request of the unit: from then on
    nothing reads legacy's data for it, so its tables must agree first (the data gate)."""
    return moved.stage in (Stage.NEW, Stage.RETIRED) or (
        moved.stage is Stage.CANARY and moved.weight_bp == FULL_WEIGHT_BP
    )


def _checked_weight(weight: float, *, allow_zero: bool = False) -> int:
    low = 0.0 if allow_zero else 0.01
    message = f"weight must be from {low:g} to 100 in steps of 0.01, got {weight:g}"
    if not low <= weight <= 100:
        raise ChangeRefused(message, status=400)
    try:
        return weight_to_bp(weight)
    except ValueError:
        raise ChangeRefused(message, status=400) from None


def _gate_json(gate: Gate) -> dict[str, object]:
    return {
        "passed": gate.passed,
        "reason": gate.reason,
        "compared": gate.compared,
        "lower_bound": gate.lower_bound,
        "needed": gate.needed,
    }
