"""What `strangler status`, `strangler rollout status` and the admin API's route resources
show: JSON-able reports over the store and the YAML, built once for every door.

Blocking (store reads). Shapes are stable: the admin API documents them and the CLI prints
them as tables or as `--json`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from strangler.config import Config
from strangler.control.effective import orphaned
from strangler.control.service import ControlService, UnitState
from strangler.control.state import Store
from strangler.control.store import RouteTotals
from strangler.diff import wilson_interval
from strangler.routing.model import Stage

HOUR_S = 3600


def _share(new: int, total: int) -> float | None:
    return new / total if total else None


def _verdict_brief(store: Store, unit: str) -> dict[str, Any] | None:
    found = store.verdicts(unit, limit=1)
    if not found:
        return None
    record = found[0]
    return {
        "outcome": record.outcome,
        "action": record.action,
        "ended_at": record.ended_at,
        "weight": record.weight_bp / 100,
        "summary": record.verdict.get("summary", ""),
    }


def parity_dict(totals: RouteTotals) -> dict[str, Any]:
    """A route's shadow totals with parity (noise counted as equal), its 95 % Wilson interval,
    and the strict parity (noise counted as different)."""
    out: dict[str, Any] = dataclasses.asdict(totals)
    equal = totals.equal + totals.equal_but_noise
    out["parity"] = equal / totals.compared if totals.compared else None
    out["parity_interval_95"] = list(wilson_interval(equal, totals.compared))
    out["strict_parity"] = totals.equal / totals.compared if totals.compared else None
    return out


def status_report(store: Store, base: Config, *, now: float | None = None) -> dict[str, Any]:
    """Every route: stage (and whether an override set it), weight, share of answers from new
    over the last hour, shadow parity, and the unit's last verdict."""
    now = time.time() if now is None else now
    service = ControlService(store, base)
    overrides = store.overrides()
    traffic = {t.route: t for t in store.traffic(now - HOUR_S)}
    shadow = {t.route: t for t in store.routes()}
    routes: list[dict[str, Any]] = []
    for state in service.units():
        verdict = _verdict_brief(store, state.unit) if state.status else None
        for route in state.routes:
            hour = traffic.get(route)
            totals = shadow.get(route)
            compared = totals.compared if totals is not None else 0
            equal = totals.equal + totals.equal_but_noise if totals is not None else 0
            routes.append(
                {
                    "route": route,
                    "unit": state.unit,
                    "stage": state.stage.value,
                    "yaml_stage": state.yaml_stage.value,
                    "overridden": state.override is not None,
                    "override": None if state.override is None else state.override.to_json(),
                    "weight": state.weight_bp / 100 if state.stage is Stage.CANARY else None,
                    "status": state.status,
                    "share_new_hour": None
                    if hour is None
                    else _share(hour.new, hour.new + hour.legacy),
                    "answers_hour": 0 if hour is None else hour.new + hour.legacy,
                    "parity": equal / compared if compared else None,
                    "parity_low": wilson_interval(equal, compared)[0] if compared else None,
                    "compared": compared,
                    "last_verdict": verdict,
                }
            )
    return {
        "state_version": store.state_version(),
        "orphaned_overrides": orphaned(base, overrides),
        "routes": routes,
    }


def rollout_report(
    store: Store, base: Config, name: str, *, verdicts: int = 20, audit: int = 20
) -> dict[str, Any]:
    """One unit in detail: its state, its plan, the evidence gate when it is in shadow, what
    blocks it, the drill in force (null when none, or expired), and its latest verdicts and
    audit entries. UnknownRoute if no such route."""
    service = ControlService(store, base)
    # The audit before the state: a change writes both in one transaction, so a state read
    # after the audit is at least as new as the audit's newest entry (never "rolled back" in
    # the audit while the state still says running). service.audit finds the unit from the
    # YAML alone; service.unit reads every unit's state, once.
    changes = [c.to_json() for c in service.audit(name, limit=audit)]
    state = service.unit(name)
    plans = service.effective().canary_groups()
    plan = plans.get(state.unit)
    report: dict[str, Any] = {**state.as_dict(), "plan": None, "gate": None, "blocked_by": None}
    if plan is not None:
        report["plan"] = plan.plan.model_dump(mode="json")
    if state.stage is Stage.SHADOW:
        gate = service.gate(state)
        report["gate"] = {
            "passed": gate.passed,
            "reason": gate.reason,
            "compared": gate.compared,
            "lower_bound": gate.lower_bound,
            "needed": gate.needed,
        }
        report["blocked_by"] = None if gate.passed else gate.reason
    else:
        report["blocked_by"] = _blocked_by(state)
        if report["blocked_by"] is None and state.stage is Stage.CANARY:
            data = service.data_gate(state)
            if data:
                report["blocked_by"] = "the data gate (for new): " + "; ".join(data)
    report["verdicts"] = [v.to_json() for v in store.verdicts(state.unit, limit=verdicts)]
    drill = store.drills().get(state.unit)
    in_force = drill is not None and drill.expires_at > service.clock()
    report["drill"] = drill.to_json() if drill is not None and in_force else None
    report["audit"] = changes
    return report


def _blocked_by(state: UnitState) -> str | None:
    if state.stage is Stage.LEGACY:
        return "stage legacy: promote it to shadow to start gathering evidence"
    if state.stage is Stage.CANARY and state.status == "paused":
        reason = state.override.reason if state.override is not None else ""
        return f"paused: {reason}" if reason else "paused"
    if state.stage is Stage.CANARY and state.status == "rolled_back":
        return "rolled back"
    return None
