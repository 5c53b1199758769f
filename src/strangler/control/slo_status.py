"""Reading SLOs back from the store: the samples an evaluation needs, each SLO's state as the
CLI, the admin API and the promote gate see it, and the budget gate itself.

Rules:
- Samples: per-second counts for the last SLO_FINE_RETENTION_S, per-minute counts before that
  back to the longest alert window, and one sum for the rest of the SLO's window. Alert windows
  up to 59 minutes are exact to the second; longer ones to the minute at their start; the
  budget is exact (its sum is keyed at the window's start, so every window but the budget's
  leaves it out).
- Every evaluation ends its windows DATA_LAG_S ago: the seconds after that are still on their
  way from the workers, and a window that ended now would count them as quiet (a 2 s window
  would read empty half the time and resolve a firing alert).
- The budget gate evaluates from the series at the moment of the promote, never from a stored
  evaluation that could be stale: the budget does not depend on alert history.
- Blocking (store I/O).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from strangler.config import Config, SloConfig
from strangler.control.state import SLO_FINE_RETENTION_S, SloSample, Store
from strangler.observe.slo.counter import DATA_LAG_S
from strangler.observe.slo.evaluator import (
    AlertState,
    SloState,
    budget_allows_promote,
    evaluate,
    state_from_json,
)

# A stored evaluation older than this many evaluation intervals is shown as stale.
STALE_AFTER_INTERVALS = 3
# How often the monitor evaluates, at most: the SRE workbook's shortest window is 5 minutes.
EVALUATE_INTERVAL_S = 10.0


def evaluate_interval_s(slos: Iterable[SloConfig]) -> float:
    """EVALUATE_INTERVAL_S, or half the shortest alert window when that is shorter (windows of
    seconds, for tests and demos), never under a second."""
    shortest = min((alert.short for slo in slos for alert in slo.alerts), default=math.inf)
    return max(1.0, min(EVALUATE_INTERVAL_S, shortest / 2))


def _minute(at: float) -> float:
    return math.floor(at / 60) * 60


def read_samples(store: Store, slo: SloConfig, now: float) -> list[SloSample]:
    """The SLO's series over its window ending at `now` (see the module rules)."""
    start = now - slo.window_s
    longest = max((alert.long for alert in slo.alerts), default=0.0)
    coarse_end = max(start, _minute(now - longest - 60))
    fine_start = max(coarse_end, _minute(now - SLO_FINE_RETENTION_S + 60))
    samples: list[SloSample] = []
    if coarse_end > start:
        old = store.slo_samples(slo.name, start, coarse_end, 3600)
        good, bad = sum(s.good for s in old), sum(s.bad for s in old)
        if good or bad:
            samples.append(SloSample(start, good, bad))
    if fine_start > coarse_end:
        samples += store.slo_samples(slo.name, coarse_end, fine_start, 60)
    samples += store.slo_samples(slo.name, fine_start, now, 1)
    return samples


def evaluate_now(store: Store, slo: SloConfig, now: float, previous: SloState | None) -> SloState:
    """`slo` evaluated from the store's series, its windows ending DATA_LAG_S before `now`."""
    at = now - DATA_LAG_S
    return evaluate(slo, read_samples(store, slo, at), at, previous)


@dataclass(frozen=True, slots=True)
class SloView:
    """One SLO as shown: its latest evaluation and where it came from."""

    slo: SloConfig
    state: SloState
    # "monitor": the gateway's evaluation, with its alert history; "computed": evaluated now
    # from the series because no gateway has (or its evaluation is stale), alerts without
    # history.
    source: str
    age_s: float

    def to_json(self) -> dict[str, object]:
        slo = self.slo
        return {
            **self.state.to_json(),
            "routes": list(slo.routes),
            "window_days": slo.window_days,
            "latency_ms": slo.latency_ms,
            "side": slo.side,
            "min_requests": slo.min_requests,
            "on_page": slo.on_page,
            "budget_gate": slo.budget_gate,
            "source": self.source,
            "age_s": self.age_s,
        }


def slo_views(store: Store | None, config: Config, now: float) -> list[SloView]:
    """Every SLO of `config`, in its order: the monitor's evaluation when it is fresh, else one
    computed now. `store` None: no store was created yet, so nothing was counted."""
    stored = store.slo_states() if store is not None else {}
    stale_s = STALE_AFTER_INTERVALS * evaluate_interval_s(config.slos)
    views = []
    for slo in config.slos:
        data = stored.get(slo.name)
        state = None if data is None else state_from_json(slo, data)
        if state is not None and now - state.evaluated_at <= stale_s:
            views.append(SloView(slo, state, "monitor", max(0.0, now - state.evaluated_at)))
            continue
        if store is None:
            computed = evaluate(slo, [], now - DATA_LAG_S, None)
        else:
            computed = evaluate_now(store, slo, now, None)
        views.append(SloView(slo, computed, "computed", 0.0))
    return views


def unknown_slo(name: str, configured: Iterable[str]) -> str:
    """The one way the CLI and the admin API say that no SLO has that name."""
    return f"no SLO named {name} (configured: {', '.join(configured) or 'none'})"


# The order alerts are listed in: firing before the rest, pages before tickets; ties keep the
# config's order (SLOs, then each SLO's alerts).
_STATE_RANK = {AlertState.FIRING: 0, AlertState.RESOLVED: 1, AlertState.INACTIVE: 2}
_SEVERITY_RANK = {"page": 0, "ticket": 1}
# What a row of GET /api/v1/alerts keeps of an alert's state, after its SLO's name.
ALERT_ROW_KEYS = (
    "severity", "burn", "long_s", "short_s", "state", "burn_long", "burn_short",
    "fired_at", "fired_with", "resolved_at", "low_traffic",
)  # fmt: skip


def alert_rows(views: Iterable[SloView], *, include_all: bool) -> list[dict[str, object]]:
    """The alerts that are firing (`include_all`: every alert of every SLO), one flat row each
    with its SLO's name: what GET /api/v1/alerts answers."""
    found = [
        (view.slo.name, status)
        for view in views
        for status in view.state.alerts
        if include_all or status.state is AlertState.FIRING
    ]
    found.sort(
        key=lambda item: (_STATE_RANK[item[1].state], _SEVERITY_RANK[item[1].alert.severity])
    )
    rows: list[dict[str, object]] = []
    for slo, status in found:
        data = status.to_json()
        rows.append({"slo": slo, **{key: data[key] for key in ALERT_ROW_KEYS}})
    return rows


@dataclass(frozen=True, slots=True)
class BudgetRefusal:
    """An SLO whose budget left is below its `budget_gate`, and the words of the refusal."""

    slo: SloConfig
    state: SloState
    why: str


def budget_json(refusals: Iterable[BudgetRefusal], *, forced: bool) -> dict[str, object]:
    """The refusals as audit or verdict evidence: the numbers that held (or were forced)."""
    return {
        "forced": forced,
        "slos": [
            {
                "slo": refusal.slo.name,
                "budget_left_pct": refusal.state.budget_left_pct,
                "gate_pct": refusal.slo.budget_gate,
                "good": refusal.state.good,
                "bad": refusal.state.bad,
                "reason": refusal.why,
            }
            for refusal in refusals
        ],
    }


def budget_refusals(
    store: Store, config: Config, routes: Iterable[str], now: float
) -> list[BudgetRefusal]:
    """For each SLO with a `budget_gate` over any of `routes` whose budget left is below it:
    the SLO, its state now, and why it refuses a promote."""
    names = set(routes)
    selected = [route for route in config.routes if route.name in names]
    refusals = []
    for slo in config.slos:
        if slo.budget_gate is None or not any(slo.selects(route) for route in selected):
            continue
        state = evaluate_now(store, slo, now, None)
        why = budget_allows_promote(slo, state)
        if why is not None:
            refusals.append(BudgetRefusal(slo, state, why))
    return refusals
