"""The canary analyzer: judges each finished interval of every running rollout and promotes,
rolls back or pauses it through the ControlService.

Rules:
- One analyzer acts per store, whatever the number of workers and replicas: each gateway
  process runs one, and only the holder of the store lease "analyzer" works.
- Which rollouts: units promoted into canary by a person (`strangler promote`, the API), and
  YAML canaries whose group sets `plan:`. A YAML canary without a plan keeps its weight.
- Intervals are aligned on the step's start (when the weight in force took effect), so nothing
  measured at an earlier weight counts. An interval is judged once its end is FLUSH_GRACE_S in
  the past, the time workers take to flush their windows; an analyzer that was away judges
  only the latest finished interval, never a backlog.
- Consecutive passes and inconclusive intervals are not stored: they are replayed from the
  verdicts of the current step, so the state changes (and the workers rebuild) only when the
  weight or stage moves.
- Every verdict is stored with the action taken; every action is an audited change whose
  evidence is the verdict with its numbers.
- A step that sends more users to new (a promotion, the move to stage new) is first confirmed
  by the plan's gates (control/gates.py). A gate that says no holds the step: the verdict keeps
  every gate's answer and the reason names the gate, and the next passing interval asks again.
  A slow gate may outlast the lease; the write still checks the weight judged, so two analyzers
  never both move a unit.
- Blocking (store I/O); `run` loops on its own thread.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import assert_never

from strangler.config import CanaryRolloutConfig, Config
from strangler.control.background import Background
from strangler.control.effective import apply_overrides, unit_of
from strangler.control.gates import GateAnswer, ask_gates
from strangler.control.service import ControlService, Move, UnitState, unit_states
from strangler.control.slo_status import budget_json
from strangler.control.state import Proposal, Store, VerdictRecord, WindowTotals
from strangler.control.store import StoreUnavailable
from strangler.rollout import (
    Action,
    Checks,
    LatencyHistogram,
    Outcome,
    Parity,
    Policy,
    RolloutState,
    RolloutStatus,
    SideWindow,
    Step,
    advance,
    judge_interval,
    stages,
)
from strangler.rollout.judge import IntervalVerdict
from strangler.rollout.stages import StageAction, Transition
from strangler.routing.canary import weight_to_bp
from strangler.routing.model import Stage

log = logging.getLogger("strangler.analyzer")

LEASE_NAME = "analyzer"
LEASE_TTL_S = 5.0
TICK_S = 0.5
# Workers flush their windows every second; a second more covers a slow flush.
FLUSH_GRACE_S = 2.0
# Windows older than this are pruned (a day of intervals at the longest plan is plenty).
WINDOW_RETENTION_S = 6 * 3600
# The changes a plan's confirm gates are asked about: those that send more users to new.
CONFIRMED_ACTIONS = frozenset({StageAction.PROMOTE, StageAction.COMPLETE})


def checks_of(plan: CanaryRolloutConfig, *, is_shadowed: bool = False) -> Checks:
    given = plan.checks
    return Checks(
        min_requests=plan.min_requests,
        max_error_rate=given.max_error_rate,
        max_error_ratio=given.max_error_ratio,
        error_rate_floor=given.error_rate_floor,
        max_p50_ratio=given.max_p50_ratio,
        max_p99_ratio=given.max_p99_ratio,
        latency_slack_s=given.latency_slack_ms / 1000,
        mw_alpha=given.mann_whitney_alpha,
        mw_min_effect=given.mann_whitney_min_effect,
        min_parity=given.min_parity if is_shadowed else None,
    )


def policy_of(plan: CanaryRolloutConfig) -> Policy:
    return Policy(
        steps_bp=tuple(weight_to_bp(step) for step in plan.steps),
        passes_to_promote=plan.passes,
        on_fail=plan.on_fail,
        max_inconclusive=plan.max_inconclusive,
    )


def side_window(totals: WindowTotals | None) -> SideWindow:
    if totals is None:
        return SideWindow(0, 0, LatencyHistogram())
    return SideWindow(totals.requests, totals.errors, LatencyHistogram.from_json(totals.latency))


class Analyzer:
    """Judges intervals for the rollouts of one config's routes."""

    def __init__(
        self,
        store: Store,
        base: Callable[[], Config],
        *,
        holder: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.base = base
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self.clock = clock
        self._next_prune = 0.0

    def run_once(self) -> list[VerdictRecord]:
        """One pass over every running rollout; the verdicts it stored."""
        now = self.clock()
        config = self.base()
        overrides = self.store.overrides()
        effective = apply_overrides(config, overrides)
        plans = effective.canary_groups()
        if not plans:
            return []
        if not self.store.try_lease(LEASE_NAME, self.holder, LEASE_TTL_S, now):
            return []
        service = ControlService(self.store, config, clock=self.clock)
        shadowed = {unit_of(route) for route in effective.routes if route.canary.shadow}
        records = []
        for state in unit_states(config, overrides):
            if state.stage is not Stage.CANARY or state.unit not in plans:
                continue
            plan = plans[state.unit].plan
            if state.override is None:
                # A canary from the YAML keeps the weight a person wrote, unless its group
                # names a rollout plan: then the analyzer takes it from there.
                if "plan" in plans[state.unit].model_fields_set:
                    self._start(service, state, plan)
                continue
            if state.status != RolloutStatus.RUNNING.value:
                continue
            record = self._judge(service, state, plan, now, is_shadowed=state.unit in shadowed)
            if record is not None:
                records.append(record)
        if now >= self._next_prune:
            self._next_prune = now + 600
            self.store.prune_windows(now - WINDOW_RETENTION_S)
        return records

    def _start(self, service: ControlService, state: UnitState, plan: CanaryRolloutConfig) -> None:
        """A canary from the YAML with no rollout yet: start one at its weight (or the first
        step, when the YAML says 0), so its intervals have a start."""
        weight = state.weight_bp or weight_to_bp(plan.steps[0])
        baseline = service.baseline(state.unit)
        start = Proposal(
            "start", Stage.CANARY.value, weight, RolloutStatus.RUNNING.value, baseline=baseline
        )
        started = service.store.change(
            state.unit,
            lambda current: None if current is not None else start,
            actor="analyzer",
            reason=f"rollout started from the config at {weight / 100:g} %",
            now=self.clock(),
        )
        if started is not None:
            log.info(
                "canary %s: rollout started at %s, from the config", _named(state), _pct(weight)
            )

    def _judge(
        self,
        service: ControlService,
        state: UnitState,
        plan: CanaryRolloutConfig,
        now: float,
        *,
        is_shadowed: bool = False,
    ) -> VerdictRecord | None:
        assert state.override is not None
        origin = math.ceil(state.override.step_started_at)
        interval = plan.interval_s
        finished = math.floor((now - FLUSH_GRACE_S - origin) / interval)
        if finished < 1:
            return None
        end = origin + finished * interval
        start = end - interval
        latest = self.store.verdicts(state.unit, limit=1)
        if latest and latest[0].started_at >= origin and latest[0].ended_at >= end:
            return None  # judged already: the common case, every tick but one per interval
        every = self.store.verdicts(state.unit, limit=1000)
        history = [v for v in every if v.started_at >= origin]
        totals = self.store.window_totals(state.routes, start, end)
        parity, shadow_totals = None, None
        if is_shadowed:
            parity, shadow_totals = self._interval_parity(state, every[0] if every else None)
        verdict = judge_interval(
            side_window(totals.get("legacy")),
            side_window(totals.get("new")),
            checks_of(plan, is_shadowed=is_shadowed),
            parity,
        )
        policy = policy_of(plan)
        rollout = RolloutState(RolloutStatus.RUNNING, state.weight_bp)
        for earlier in reversed(history):
            if _was_held(earlier):
                # A gate held that step: the weight stayed, and the next pass asks again.
                rollout = dataclasses.replace(rollout, inconclusive=0)
                continue
            rollout = advance(rollout, Outcome(earlier.outcome), policy).state
            if rollout.status is not RolloutStatus.RUNNING:
                # An earlier action did not take (a person moved the unit meanwhile).
                rollout = RolloutState(RolloutStatus.RUNNING, state.weight_bp)
        step = advance(rollout, verdict.outcome, policy)
        move = _move_of(step) if plan.auto else None
        reason = step.reason
        asked: dict[str, object] = {}
        proposed = None if move is None else move(state.stage_state())
        is_increase = isinstance(proposed, Transition) and proposed.action in CONFIRMED_ACTIONS
        budget = service.budget_gate(state) if is_increase else []
        is_to_new = isinstance(proposed, Transition) and proposed.stage is Stage.NEW
        data = service.data_gate(state) if is_to_new and not budget else []
        if budget:
            # An SLO's budget is too low to send more users to new: held like a gate's no,
            # asked again at the next passing interval (a rollback or pause is never held).
            move = None
            asked = {"budget_gate": budget_json(budget, forced=False)}
            reason = f"{step.reason}; held by the budget gate: " + "; ".join(
                refusal.why for refusal in budget
            )
        elif data:
            # The route's tables are not known to agree: it must not stop reading legacy's.
            move = None
            asked = {"data_gate": {"forced": False, "tables": data}}
            reason = f"{step.reason}; held by the data gate: " + "; ".join(data)
        if budget or data:
            log.info(
                "canary held: %s stays at %s: %s (%s)",
                _named(state),
                _pct(state.weight_bp),
                reason,
                verdict.summary,
            )
        # Only a step that sends more users to new is confirmed: a rollback or a pause must
        # never wait on an outside system (a gate that is down would keep a failing canary in
        # front of users).
        if move is not None and plan.gates and isinstance(proposed, Transition) and is_increase:
            answers = ask_gates(plan.gates, _confirm_step(state, proposed, verdict), at=now)
            asked = {"gates": [answer.to_json() for answer in answers]}
            refused = next((answer for answer in answers if not answer.is_ok), None)
            if refused is not None:
                move = None
                reason = f"{step.reason}; held by gate {refused.url}: {refused.why()}"
                _log_hold(state, refused, step.reason, verdict.summary)
        taken = Action.NONE
        if move is not None:
            change = service.apply(
                state.unit,
                state.weight_bp,
                move,
                reason=f"{reason} ({verdict.summary})",
                evidence={"verdict": verdict.to_json(), **asked},
            )
            if change is not None:
                taken = step.action
                _log_action(state, taken, step.state.weight_bp, step.reason, verdict.summary)
        record = VerdictRecord(
            unit=state.unit,
            started_at=start,
            ended_at=end,
            weight_bp=state.weight_bp,
            outcome=verdict.outcome.value,
            action=taken.value,
            verdict={
                **verdict.to_json(),
                "reason": reason,
                **asked,
                **({"shadow_totals": shadow_totals} if shadow_totals is not None else {}),
            },
        )
        self.store.add_verdict(record)
        return record

    def _interval_parity(
        self, state: UnitState, previous: VerdictRecord | None
    ) -> tuple[Parity | None, list[int]]:
        """The shadow comparisons of the unit's routes since the previous verdict: the store
        keeps running totals, so each verdict records them and the next takes the difference.
        None for the first verdict, which has nothing to subtract."""
        compared = equal = 0
        for totals in self.store.routes():
            if totals.route in state.routes:
                compared += totals.compared
                equal += totals.equal + totals.equal_but_noise
        current = [compared, equal]
        before = previous.verdict.get("shadow_totals") if previous is not None else None
        if not isinstance(before, list) or len(before) != 2:
            return None, current
        delta_compared = max(0, compared - int(before[0]))
        delta_equal = min(delta_compared, max(0, equal - int(before[1])))
        return Parity(delta_compared, delta_equal), current

    def run(
        self,
        stop: threading.Event,
        on_verdict: Callable[[VerdictRecord], None] | None = None,
    ) -> None:
        """Loop until `stop` is set; store outages are logged once and retried. `on_verdict`
        hears of each verdict stored (the worker counts them for /metrics)."""
        failing = False
        while not stop.wait(TICK_S):
            try:
                records = self.run_once()
                if on_verdict is not None:
                    for record in records:
                        on_verdict(record)
            except StoreUnavailable as exc:
                if not failing:
                    log.warning(
                        "canary analyzer paused: the control store is unavailable (%s); "
                        "retrying every %g s",
                        exc,
                        TICK_S,
                    )
                failing = True
                continue
            except Exception:
                log.exception("canary analyzer: this pass failed; the next runs in %g s", TICK_S)
                continue
            if failing:
                log.info("canary analyzer resumed: the control store is reachable again")
                failing = False


def _pct(weight_bp: int) -> str:
    return f"{weight_bp / 100:g} %"


def _named(state: UnitState) -> str:
    """The unit as a user wrote it: a route, or a group with its routes."""
    if state.routes == (state.unit,):
        return f"route {state.unit}"
    return f"group {state.unit} ({', '.join(state.routes)})"


def _log_action(
    state: UnitState, action: Action, weight_bp: int, reason: str, summary: str
) -> None:
    """One line per action the analyzer took. A step up is news (INFO); a rollback or a pause
    stops the rollout until a person looks (WARNING, with the reason)."""
    unit, before = _named(state), _pct(state.weight_bp)
    match action:
        case Action.PROMOTE:
            log.info("canary step %s → %s: %s (%s)", before, _pct(weight_bp), unit, summary)
        case Action.COMPLETE:
            log.info("canary complete: %s moves from %s to stage new (%s)", unit, before, summary)
        case Action.ROLLBACK:
            log.warning(
                "canary rolled back: %s is on legacy again, from %s: %s (%s)",
                unit,
                before,
                reason,
                summary,
            )
        case Action.PAUSE:
            log.warning("canary paused: %s stays at %s: %s (%s)", unit, before, reason, summary)
        case Action.NONE:
            pass
        case _:
            assert_never(action)


def _confirm_step(
    state: UnitState, proposed: Transition, verdict: IntervalVerdict
) -> dict[str, object]:
    """What the gates are asked to confirm (weights in %, as the admin API gives them)."""
    return {
        "unit": state.unit,
        "routes": list(state.routes),
        "from_weight": state.weight_bp / 100,
        "to_weight": None if proposed.weight_bp is None else proposed.weight_bp / 100,
        "to_stage": proposed.stage.value,
        "verdict": verdict.to_json(),
    }


def _was_held(record: VerdictRecord) -> bool:
    """Whether a gate, the budget gate or the data gate held the step this verdict called for
    (so its weight never moved)."""
    if record.action != Action.NONE.value:
        return False
    answers = record.verdict.get("gates")
    held_by = [record.verdict.get(key) for key in ("budget_gate", "data_gate")]
    return (
        isinstance(answers, list)
        and any(isinstance(answer, dict) and not answer.get("ok") for answer in answers)
    ) or any(isinstance(gate, dict) and gate.get("forced") is False for gate in held_by)


def _log_hold(state: UnitState, refused: GateAnswer, reason: str, summary: str) -> None:
    """One line per interval a gate holds: INFO when the gate said no, WARNING when it could
    not be asked (nobody decided; someone should look)."""
    level = logging.INFO if refused.error is None else logging.WARNING
    log.log(
        level,
        "canary held: %s stays at %s: gate %s answered %s; %s (%s)",
        _named(state),
        _pct(state.weight_bp),
        refused.url,
        refused.why(),
        reason,
        summary,
    )


def _move_of(step: Step) -> Move | None:
    """The stage machine's change that carries out the analyzer's step; None for no change."""
    match step.action:
        case Action.PROMOTE:
            return functools.partial(stages.promote, weight_bp=step.state.weight_bp)
        case Action.COMPLETE:
            return stages.complete
        case Action.ROLLBACK:
            return stages.rollback
        case Action.PAUSE:
            return stages.pause
        case Action.NONE:
            return None
        case _:
            assert_never(step.action)


class AnalyzerThread(Background):
    """An Analyzer on a daemon thread, opening its own store (and reopening it after a failed
    open, with backoff)."""

    def __init__(
        self,
        open_store: Callable[[], Store],
        base: Callable[[], Config],
        *,
        closes_store: bool = True,
        on_verdict: Callable[[VerdictRecord], None] | None = None,
    ) -> None:
        super().__init__("strangler-analyzer")
        self._open_store = open_store
        self._on_verdict = on_verdict
        # False when the store is shared (SharedStore): its owner closes it.
        self._closes_store = closes_store
        self._base = base

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                store = self._open_store()
            except Exception as exc:
                log.warning("canary analyzer waiting for the control store: %s", exc)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            try:
                Analyzer(store, self._base).run(self._stop, self._on_verdict)
            finally:
                if self._closes_store:
                    store.close()
