"""SLO evaluation: error budgets and multiwindow, multi-burn-rate alerts (Google SRE workbook,
"Alerting on SLOs"), over per-SLO series of good/bad counts.

Pure. Never awaits, never reads a clock: `now` is a parameter, so the same config, samples,
`now` and previous state always give the same `SloState`. A sample is one bucket of counts
keyed by its start time; the bucket length is whatever the store keeps (a minute in
production, a second in tests), because window sums come from the samples' timestamps only.

Definitions, for a window of `w` seconds ending at `now`:
- the window holds the buckets that start in [now - w, now);
- error ratio = bad / (good + bad), 0 without requests;
- burn rate = error ratio / (1 - objective / 100): 1 spends the budget exactly over the SLO's
  window, 14.4 spends 2 % of a 30-day budget in an hour;
- an alert's condition is burn(long) >= burn AND burn(short) >= burn, and its long window holds
  at least `min_requests` requests (else it is quiet and marked low-traffic).
"""

from __future__ import annotations

import bisect
import enum
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from strangler.config import SloAlertConfig, SloConfig
from strangler.control.state import SloSample

# The window over which "the current request rate" is measured for the outage minutes left.
RATE_WINDOW_S = 3600.0

# An objective such as 99.99 leaves a budget share (0.01 %) that rounds up as a float, so an
# error ratio exactly at a threshold would miss it by one rounding step; comparisons allow that.
_RELATIVE_TOLERANCE = 1e-9


class Outcome(enum.Enum):
    """What one answer counts as for an SLO."""

    GOOD = "good"
    BAD = "bad"


def classify(
    status: int, duration_s: float, served_by: Literal["new", "legacy"], slo: SloConfig
) -> Outcome | None:
    """Good or bad for `slo`, or None when the answer's side is not one the SLO counts."""
    if slo.side not in ("all", served_by):
        return None
    latency_s = math.inf if slo.latency_ms is None else slo.latency_ms / 1000
    return Outcome.BAD if is_bad(status, duration_s, latency_s) else Outcome.GOOD


def is_bad(status: int, duration_s: float, latency_s: float) -> bool:
    """Whether an answer spends error budget.

    Bad: any 5xx (the gateway's own 502/503/504 included), 429 (the service shedding load is
    its failure, not the client's), and an answer slower than `latency_s` (math.inf: no latency
    objective). Every other answer is good, other 4xx included: the client asked for something
    wrong. Callers pass latency_ms / 1000 rather than multiplying the duration: 300 / 1000 is
    the same float as 0.3, so an answer of exactly the threshold stays good, at any threshold
    (slok/sloth#506).
    """
    return status >= 500 or status == 429 or duration_s > latency_s


@dataclass(frozen=True, slots=True)
class WindowCount:
    """Counts over one window, [start_s, end_s), with the burn rate they make."""

    start_s: float
    end_s: float
    good: int
    bad: int
    burn_rate: float

    @property
    def requests(self) -> int:
        return self.good + self.bad

    def to_json(self) -> dict[str, object]:
        return {
            "start": self.start_s,
            "end": self.end_s,
            "requests": self.requests,
            "bad": self.bad,
            "burn_rate": self.burn_rate,
        }


@dataclass(frozen=True, slots=True)
class Burn:
    """An alert's two windows, measured at one evaluation."""

    long: WindowCount
    short: WindowCount

    def to_json(self) -> dict[str, object]:
        return {"long": self.long.to_json(), "short": self.short.to_json()}


class AlertState(enum.Enum):
    INACTIVE = "inactive"
    FIRING = "firing"
    # Stays until the alert fires again: the status shows when and how the last burn ended.
    RESOLVED = "resolved"


# (state, is the condition met) -> next state. A change of state is a transition.
_NEXT_STATE: dict[tuple[AlertState, bool], AlertState] = {
    (AlertState.INACTIVE, False): AlertState.INACTIVE,
    (AlertState.INACTIVE, True): AlertState.FIRING,
    (AlertState.FIRING, True): AlertState.FIRING,
    (AlertState.FIRING, False): AlertState.RESOLVED,
    (AlertState.RESOLVED, True): AlertState.FIRING,
    (AlertState.RESOLVED, False): AlertState.RESOLVED,
}


class TransitionKind(enum.Enum):
    ALERT_FIRING = "alert_firing"
    ALERT_RESOLVED = "alert_resolved"
    BUDGET_EXHAUSTED = "budget_exhausted"


# (state before, state after) -> what the caller hears; staying in a state is silent.
_TRANSITION_KIND: dict[tuple[AlertState, AlertState], TransitionKind] = {
    (AlertState.INACTIVE, AlertState.FIRING): TransitionKind.ALERT_FIRING,
    (AlertState.RESOLVED, AlertState.FIRING): TransitionKind.ALERT_FIRING,
    (AlertState.FIRING, AlertState.RESOLVED): TransitionKind.ALERT_RESOLVED,
}


@dataclass(frozen=True, slots=True)
class AlertStatus:
    """One alert after an evaluation: its state, the windows as measured now, and the windows
    as they were when it last fired and last resolved (kept while the state lasts)."""

    alert: SloAlertConfig
    state: AlertState
    now: Burn
    is_low_traffic: bool
    fired_at: float | None = None
    fired_with: Burn | None = None
    resolved_at: float | None = None
    resolved_with: Burn | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.alert.severity,
            "burn": self.alert.burn,
            "long_s": self.alert.long,
            "short_s": self.alert.short,
            "burn_long": self.now.long.burn_rate,
            "burn_short": self.now.short.burn_rate,
            "now": self.now.to_json(),
            "requests": self.now.long.requests,
            "bad": self.now.long.bad,
            "state": self.state.value,
            "low_traffic": self.is_low_traffic,
            "fired_at": self.fired_at,
            "fired_with": None if self.fired_with is None else self.fired_with.to_json(),
            "resolved_at": self.resolved_at,
            "resolved_with": None if self.resolved_with is None else self.resolved_with.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Transition:
    """A change this evaluation made, for the caller to act on once (pause or roll back a
    canary, send a webhook), with the numbers behind it in `reason`."""

    kind: TransitionKind
    slo: str
    at_s: float
    reason: str
    alert: SloAlertConfig | None = None
    burn: Burn | None = None


@dataclass(frozen=True, slots=True)
class SloState:
    """An SLO after an evaluation at `evaluated_at`.

    Budget over the SLO's window: allowed_bad = (1 - objective / 100) x requests, and
    budget_left_pct = 100 x (1 - bad / allowed_bad). It is not clamped: -50 means 1.5 times the
    budget spent, and any value at or below 0 is exhausted. Without requests nothing is spent
    (100). `outage_minutes_left` is how long a full outage (every request bad) could last
    before the budget is exhausted: the bad requests still allowed divided by the request rate
    over the last RATE_WINDOW_S (or the SLO's window, if shorter; or since the oldest sample, if
    later), in minutes; 0 once exhausted, None without requests in that window. It ignores the
    requests leaving the window and the budget the outage's own requests add (a 1 - objective
    share of them), so it errs short by at most that share.
    """

    slo: str
    objective: float
    window_s: float
    evaluated_at: float
    good: int
    bad: int
    budget_left_pct: float
    outage_minutes_left: float | None
    alerts: tuple[AlertStatus, ...]
    transitions: tuple[Transition, ...]

    @property
    def is_budget_exhausted(self) -> bool:
        return self.budget_left_pct <= 0

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.slo,
            "objective": self.objective,
            "window_s": self.window_s,
            "evaluated_at": self.evaluated_at,
            "good": self.good,
            "bad": self.bad,
            "budget_left_pct": self.budget_left_pct,
            "budget_exhausted": self.is_budget_exhausted,
            "outage_minutes_left": self.outage_minutes_left,
            "alerts": [alert.to_json() for alert in self.alerts],
        }


class _Series:
    """Samples sorted by start, with running sums: each window is two bisections."""

    def __init__(self, samples: Sequence[SloSample], budget_share: float) -> None:
        ordered = sorted(samples, key=lambda sample: sample.at_s)
        self._starts = [sample.at_s for sample in ordered]
        self._good = [0, *itertools.accumulate(sample.good for sample in ordered)]
        self._bad = [0, *itertools.accumulate(sample.bad for sample in ordered)]
        self._budget_share = budget_share
        self.first_start_s = self._starts[0] if self._starts else 0.0

    def window(self, now: float, window_s: float) -> WindowCount:
        start_s = now - window_s
        first = bisect.bisect_left(self._starts, start_s)
        end = bisect.bisect_left(self._starts, now)
        good = self._good[end] - self._good[first]
        bad = self._bad[end] - self._bad[first]
        ratio = bad / (good + bad) if good + bad else 0.0
        return WindowCount(start_s, now, good, bad, ratio / self._budget_share)


def _at_least(value: float, threshold: float) -> bool:
    return value >= threshold * (1 - _RELATIVE_TOLERANCE)


def format_duration(seconds: float) -> str:
    """A window as the config would spell it: `28d`, `1h`, `5m`, `90s`."""
    for unit, size in (("d", 86_400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _describe(slo: SloConfig, alert: SloAlertConfig, burn: Burn, verb: str) -> str:
    return (
        f"{slo.name} {alert.severity} alert (burn {alert.burn:g} over "
        f"{format_duration(alert.long)}/{format_duration(alert.short)}) {verb}: burn "
        f"{burn.long.burn_rate:.2f} over {format_duration(alert.long)} and "
        f"{burn.short.burn_rate:.2f} over {format_duration(alert.short)}, "
        f"{burn.long.bad} bad of {burn.long.requests} requests over {format_duration(alert.long)}"
    )


def _evaluate_alert(
    slo: SloConfig,
    alert: SloAlertConfig,
    series: _Series,
    now: float,
    previous: AlertStatus | None,
) -> tuple[AlertStatus, Transition | None]:
    burn = Burn(series.window(now, alert.long), series.window(now, alert.short))
    is_low_traffic = burn.long.requests < slo.min_requests
    # A firing alert whose traffic drops under the guard resolves: so few requests no longer
    # show a burn, and `fired_with` keeps the numbers that did.
    is_burning = (
        not is_low_traffic
        and _at_least(burn.long.burn_rate, alert.burn)
        and _at_least(burn.short.burn_rate, alert.burn)
    )
    before = AlertState.INACTIVE if previous is None else previous.state
    after = _NEXT_STATE[(before, is_burning)]
    kind = _TRANSITION_KIND.get((before, after))
    fired_at = None if previous is None else previous.fired_at
    fired_with = None if previous is None else previous.fired_with
    resolved_at = None if previous is None else previous.resolved_at
    resolved_with = None if previous is None else previous.resolved_with
    if kind is TransitionKind.ALERT_FIRING:
        # A new burn: the last one's resolution no longer describes this state.
        fired_at, fired_with, resolved_at, resolved_with = now, burn, None, None
    elif kind is TransitionKind.ALERT_RESOLVED:
        resolved_at, resolved_with = now, burn
    status = AlertStatus(
        alert, after, burn, is_low_traffic, fired_at, fired_with, resolved_at, resolved_with
    )
    if kind is None:
        return status, None
    verb = "firing" if kind is TransitionKind.ALERT_FIRING else "resolved"
    return status, Transition(kind, slo.name, now, _describe(slo, alert, burn, verb), alert, burn)


def evaluate(
    slo: SloConfig, samples: Sequence[SloSample], now: float, previous: SloState | None
) -> SloState:
    """The SLO's budget and alerts at `now`, from its samples (any order, any bucket length).

    `previous` is the state the last evaluation returned (None the first time): alerts carry
    their state over from it, matched by their config, so an alert that was edited starts
    inactive. `transitions` lists only what changed since `previous`.
    """
    if previous is not None and previous.slo != slo.name:
        raise ValueError(f"the previous state is {previous.slo}'s, not {slo.name}'s")
    budget_share = (100 - slo.objective) / 100
    series = _Series(samples, budget_share)
    previous_alerts = {} if previous is None else {a.alert: a for a in previous.alerts}
    alerts: list[AlertStatus] = []
    transitions: list[Transition] = []
    for alert in slo.alerts:
        status, transition = _evaluate_alert(slo, alert, series, now, previous_alerts.get(alert))
        alerts.append(status)
        if transition is not None:
            transitions.append(transition)

    whole = series.window(now, slo.window_s)
    allowed_bad = budget_share * whole.requests
    # (allowed - bad) / allowed rather than 1 - bad / allowed: 900 bad of 1000 allowed is
    # then exactly 10 %, which a gate of 10 % lets through.
    budget_left_pct = 100 * (allowed_bad - whole.bad) / allowed_bad if whole.requests else 100.0
    recent = series.window(now, min(RATE_WINDOW_S, slo.window_s))
    outage_minutes_left: float | None = None
    if recent.requests:
        # A series younger than the rate window (a new SLO, a new store) is measured over the
        # time it covers, or it would understate the rate and overstate the time left.
        covered_s = now - max(recent.start_s, series.first_start_s)
        rate_per_s = recent.requests / covered_s
        outage_minutes_left = max(0.0, allowed_bad - whole.bad) / rate_per_s / 60

    was_exhausted = previous is not None and previous.is_budget_exhausted
    if budget_left_pct <= 0 and not was_exhausted:
        transitions.append(
            Transition(
                TransitionKind.BUDGET_EXHAUSTED,
                slo.name,
                now,
                f"{slo.name} has spent {100 - budget_left_pct:.1f} % of its error budget: "
                f"{whole.bad} bad of {whole.requests} requests over "
                f"{format_duration(slo.window_s)}",
            )
        )
    return SloState(
        slo=slo.name,
        objective=slo.objective,
        window_s=slo.window_s,
        evaluated_at=now,
        good=whole.good,
        bad=whole.bad,
        budget_left_pct=budget_left_pct,
        outage_minutes_left=outage_minutes_left,
        alerts=tuple(alerts),
        transitions=tuple(transitions),
    )


def budget_allows_promote(slo: SloConfig, state: SloState) -> str | None:
    """None when `slo` lets its routes be promoted, else why not (the text a refusal shows)."""
    gate = slo.budget_gate
    if gate is None or _at_least(state.budget_left_pct, gate):
        return None
    if state.is_budget_exhausted:
        return (
            f"{slo.name} has no error budget left ({100 - state.budget_left_pct:.1f} % spent), "
            f"below its gate of {gate:g} %"
        )
    return (
        f"{slo.name} has {state.budget_left_pct:.1f} % of its error budget left, "
        f"below its gate of {gate:g} %"
    )


def state_from_json(slo: SloConfig, data: Mapping[str, object]) -> SloState | None:
    """The state `SloState.to_json` stored for `slo`, as the `previous` of the next evaluation
    (by another process: a replica that takes the lease over, a restarted gateway), so an alert
    that fires stays firing instead of firing again. Alerts are matched by their config; one
    the config no longer has is dropped, one it gained starts inactive. None when `data` is not
    a state of this SLO (another version's shape, another SLO)."""
    try:
        if data.get("name") != slo.name:
            return None
        alerts = []
        by_config = {(a.severity, a.burn, a.long, a.short): a for a in slo.alerts}
        for item in _items(data.get("alerts")):
            key = (
                item["severity"], _number(item["burn"]),
                _number(item["long_s"]), _number(item["short_s"]),
            )  # fmt: skip
            alert = by_config.get(key)  # type: ignore[arg-type]
            if alert is None:
                continue
            alerts.append(
                AlertStatus(
                    alert,
                    AlertState(item["state"]),
                    _burn(item["now"]),
                    bool(item["low_traffic"]),
                    _float_or_none(item.get("fired_at")),
                    None if item.get("fired_with") is None else _burn(item["fired_with"]),
                    _float_or_none(item.get("resolved_at")),
                    None if item.get("resolved_with") is None else _burn(item["resolved_with"]),
                )
            )
        return SloState(
            slo=slo.name,
            objective=_number(data["objective"]),
            window_s=_number(data["window_s"]),
            evaluated_at=_number(data["evaluated_at"]),
            good=int(_number(data["good"])),
            bad=int(_number(data["bad"])),
            budget_left_pct=_number(data["budget_left_pct"]),
            outage_minutes_left=_float_or_none(data.get("outage_minutes_left")),
            alerts=tuple(alerts),
            transitions=(),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _items(value: object) -> list[Mapping[str, object]]:
    if not isinstance(value, list):
        raise TypeError("expected a list")
    return [item for item in value if isinstance(item, Mapping)]


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, not {value!r}")
    return float(value)


def _float_or_none(value: object) -> float | None:
    return None if value is None else _number(value)


def _window(value: object) -> WindowCount:
    if not isinstance(value, Mapping):
        raise TypeError("expected a window")
    requests, bad = int(_number(value["requests"])), int(_number(value["bad"]))
    return WindowCount(
        _number(value["start"]), _number(value["end"]), requests - bad, bad,
        _number(value["burn_rate"]),
    )  # fmt: skip


def _burn(value: object) -> Burn:
    if not isinstance(value, Mapping):
        raise TypeError("expected a burn")
    return Burn(_window(value["long"]), _window(value["short"]))
