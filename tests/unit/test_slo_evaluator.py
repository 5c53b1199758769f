"""The SLO evaluator under an injected clock: multiwindow burn-rate alerts fire, resolve and
fire again at the right second, the low-traffic guard, the error budget and its gate, and what
counts as a good answer. Expectations come from the SRE workbook's formulas, worked out here."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import pytest

from strangler.config import DEFAULT_SLO_ALERTS, SloAlertConfig, SloConfig
from strangler.observe.slo.evaluator import (
    RATE_WINDOW_S,
    AlertState,
    Outcome,
    SloSample,
    SloState,
    TransitionKind,
    budget_allows_promote,
    classify,
    evaluate,
    state_from_json,
)

RATE = 100  # requests per second of the synthetic traffic
BURST_BAD = 45  # bad requests per second during a burst
# Objective 99: a budget share of 1 %, so burn rate = error ratio / 0.01.
PAGE = SloAlertConfig(severity="page", burn=10, long=60, short=10)


def _slo(**overrides: Any) -> SloConfig:
    fields: dict[str, Any] = {
        "name": "projects-api",
        "routes": ["projects.*"],
        "objective": 99,
        "window_days": 1,
        "alerts": [PAGE],
        "min_requests": 0,
    }
    return SloConfig(**{**fields, **overrides})


def _seconds(start: int, end: int, bad: int = 0, rate: int = RATE) -> list[SloSample]:
    """One-second buckets over [start, end), `rate` requests each, `bad` of them bad."""
    return [SloSample(float(t), rate - bad, bad) for t in range(start, end)]


def _run(slo: SloConfig, samples: list[SloSample], ticks: Iterable[int]) -> list[SloState]:
    """Evaluate once a second, each evaluation fed the previous one's state."""
    states: list[SloState] = []
    previous = None
    for now in ticks:
        previous = evaluate(slo, samples, float(now), previous)
        states.append(previous)
    return states


def _fired_and_resolved(states: list[SloState]) -> list[tuple[TransitionKind, float]]:
    return [
        (t.kind, t.at_s)
        for state in states
        for t in state.transitions
        if t.kind is not TransitionKind.BUDGET_EXHAUSTED
    ]


def test_a_page_fires_only_once_both_windows_burn() -> None:
    # Burst from t=200 at 45 bad of 100/s. After k seconds of it the short window (10 s, 1000
    # requests) burns 45k / 1000 / 0.01 = 4.5k: 13.5 at k=3. The long one (60 s, 6000
    # requests) burns 45k / 6000 / 0.01 = 0.75k: 9.75 at k=13, 10.5 at k=14.
    samples = _seconds(0, 200) + _seconds(200, 230, bad=BURST_BAD)
    states = _run(_slo(), samples, range(201, 230))
    by_time = {int(state.evaluated_at): state for state in states}

    quiet = by_time[213].alerts[0]
    assert quiet.now.short.burn_rate >= PAGE.burn  # the burst already fills the short window
    assert quiet.now.long.burn_rate == pytest.approx(0.75 * 13)
    assert quiet.state is AlertState.INACTIVE
    assert _fired_and_resolved(states) == [(TransitionKind.ALERT_FIRING, 214.0)]

    fired = by_time[214].alerts[0]
    assert fired.state is AlertState.FIRING
    assert fired.fired_at == 214.0
    assert fired.fired_with is not None
    long, short = fired.fired_with.long, fired.fired_with.short
    assert (long.start_s, long.end_s, long.requests, long.bad) == (154.0, 214.0, 6000, 14 * 45)
    assert long.burn_rate == pytest.approx(0.75 * 14)
    assert (short.start_s, short.requests, short.bad) == (204.0, 1000, 450)
    assert short.burn_rate == pytest.approx(45.0)
    (transition,) = by_time[214].transitions
    assert transition.burn == fired.fired_with
    assert "burn 10.50 over 1m and 45.00 over 10s, 630 bad of 6000 requests" in transition.reason
    # Firing is reported once: the ticks after it stay firing, silently.
    assert by_time[229].alerts[0].state is AlertState.FIRING
    assert by_time[229].alerts[0].fired_at == 214.0


def test_a_page_resolves_when_the_short_window_recovers_and_fires_again() -> None:
    # Bursts over [200, 220) and [240, 260). j seconds after the first one ends, the short
    # window holds 10 - j burst seconds: 4.5 x (10 - j) drops under 10 at j=8 (t=228), while
    # the long window still holds all 20 (0.75 x 20 = 15). The second burst crosses the short
    # threshold at k=3 (t=243), when the long window holds 20 + 3 burst seconds (17.25).
    samples = (
        _seconds(0, 200)
        + _seconds(200, 220, bad=BURST_BAD)
        + _seconds(220, 240)
        + _seconds(240, 260, bad=BURST_BAD)
    )
    states = _run(_slo(), samples, range(201, 260))
    by_time = {int(state.evaluated_at): state for state in states}

    assert _fired_and_resolved(states) == [
        (TransitionKind.ALERT_FIRING, 214.0),
        (TransitionKind.ALERT_RESOLVED, 228.0),
        (TransitionKind.ALERT_FIRING, 243.0),
    ]
    resolved = by_time[228].alerts[0]
    assert resolved.state is AlertState.RESOLVED
    assert resolved.now.long.burn_rate == pytest.approx(0.75 * 20)
    assert resolved.now.short.burn_rate == pytest.approx(4.5 * 2)
    assert (resolved.fired_at, resolved.resolved_at) == (214.0, 228.0)
    assert resolved.fired_with is not None
    assert resolved.fired_with.long.burn_rate == pytest.approx(0.75 * 14)
    assert by_time[242].alerts[0].state is AlertState.RESOLVED

    refired = by_time[243].alerts[0]
    assert (refired.state, refired.fired_at, refired.resolved_at) == (
        AlertState.FIRING,
        243.0,
        None,
    )
    assert refired.now.long.burn_rate == pytest.approx(0.75 * 23)


@pytest.mark.parametrize(
    ("rate", "is_low_traffic", "state"),
    [
        (9, True, AlertState.INACTIVE),  # 540 requests in the long window, under 600
        (10, False, AlertState.FIRING),  # exactly 600: enough
    ],
)
def test_the_low_traffic_guard(rate: int, is_low_traffic: bool, state: AlertState) -> None:
    # Every request is bad (burn 100 on both windows), so only the guard can keep it quiet.
    slo = _slo(min_requests=600)
    (result,) = _run(slo, _seconds(0, 60, bad=rate, rate=rate), [60])
    alert = result.alerts[0]
    assert alert.now.long.requests == 60 * rate
    assert alert.now.long.burn_rate == pytest.approx(100.0)
    assert (alert.is_low_traffic, alert.state) == (is_low_traffic, state)


def test_a_firing_alert_resolves_when_traffic_falls_under_the_guard() -> None:
    slo = _slo(min_requests=600)
    samples = _seconds(0, 60, bad=10, rate=10) + _seconds(60, 120, bad=1, rate=1)
    states = _run(slo, samples, [60, 120])
    assert _fired_and_resolved(states) == [
        (TransitionKind.ALERT_FIRING, 60.0),
        (TransitionKind.ALERT_RESOLVED, 120.0),
    ]
    assert states[1].alerts[0].is_low_traffic


def test_a_window_holds_the_buckets_that_start_in_it() -> None:
    # Windows are [now - w, now): the bucket starting at now - 60 counts, the one at now not yet.
    samples = [SloSample(39.0, 0, 7), SloSample(40.0, 0, 1), SloSample(100.0, 0, 5)]
    (state,) = _run(_slo(), samples[::-1], [100])
    assert state.alerts[0].now.long.bad == 1


def _minute_buckets(count: int, bad: int, requests: int = 1000) -> list[SloSample]:
    # Minute buckets, as the store keeps them: the evaluator assumes no bucket length.
    return [SloSample(60.0 * i, requests - bad, bad) for i in range(count)]


def test_budget_left_and_the_outage_it_still_allows() -> None:
    slo = _slo(alerts=[])
    # 100 minutes of 1000 requests, 2 bad each, evaluated at t=6000, plus a bucket of a day
    # before that the SLO's window no longer holds.
    samples = [SloSample(6000.0 - slo.window_s - 60, 0, 10**6), *_minute_buckets(100, bad=2)]
    state = evaluate(slo, samples, 6000.0, None)
    total, bad = 100 * 1000, 100 * 2
    allowed_bad = (1 - slo.objective / 100) * total
    assert (state.good, state.bad) == (total - bad, bad)
    assert state.budget_left_pct == pytest.approx(100 * (1 - bad / allowed_bad))  # 80
    assert not state.is_budget_exhausted
    # A full outage at the last hour's rate (60 buckets of 1000 requests) spends the 800 bad
    # requests still allowed in 48 s.
    rate_per_s = 60 * 1000 / RATE_WINDOW_S
    assert state.outage_minutes_left == pytest.approx((allowed_bad - bad) / rate_per_s / 60)
    assert state.transitions == ()


def test_an_exhausted_budget_is_reported_once() -> None:
    slo = _slo(alerts=[])
    samples = _minute_buckets(100, bad=15)
    first = evaluate(slo, samples, 6000.0, None)
    allowed_bad = (1 - slo.objective / 100) * 100 * 1000
    assert first.budget_left_pct == pytest.approx(100 * (1 - 1500 / allowed_bad))  # -50
    assert first.is_budget_exhausted
    assert first.outage_minutes_left == 0
    assert [t.kind for t in first.transitions] == [TransitionKind.BUDGET_EXHAUSTED]
    assert "spent 150.0 % of its error budget: 1500 bad of 100000 requests" in (
        first.transitions[0].reason
    )
    assert evaluate(slo, samples, 6060.0, first).transitions == ()


def test_no_requests_spend_no_budget() -> None:
    state = evaluate(_slo(), [], 100.0, None)
    assert (state.budget_left_pct, state.outage_minutes_left) == (100.0, None)
    assert state.alerts[0].is_low_traffic is False  # min_requests 0
    assert state.alerts[0].state is AlertState.INACTIVE


@pytest.mark.parametrize(
    ("gate", "bad", "reason"),
    [
        (None, 1500, None),
        (10, 900, None),  # exactly 10 % left: the gate asks for at least that
        (10, 958, "projects-api has 4.2 % of its error budget left, below its gate of 10 %"),
        (
            10,
            1500,
            "projects-api has no error budget left (150.0 % spent), below its gate of 10 %",
        ),
    ],
)
def test_the_budget_gate(gate: float | None, bad: int, reason: str | None) -> None:
    # 100000 requests at 99 %: 1000 bad allowed.
    slo = _slo(alerts=[], budget_gate=gate)
    samples = [SloSample(0.0, 100_000 - bad, bad)]
    assert budget_allows_promote(slo, evaluate(slo, samples, 60.0, None)) == reason


@pytest.mark.parametrize(
    ("status", "duration_s", "latency_ms", "outcome"),
    [
        (200, 0.05, None, Outcome.GOOD),
        (404, 0.05, None, Outcome.GOOD),  # the client's mistake
        (429, 0.05, None, Outcome.BAD),  # the service shedding load
        (500, 0.05, None, Outcome.BAD),
        (502, 0.05, None, Outcome.BAD),  # the gateway's own, for an unreachable upstream
        (200, 30.0, None, Outcome.GOOD),  # no latency objective
        (200, 0.3, 300, Outcome.GOOD),  # exactly at the threshold
        (200, 0.3001, 300, Outcome.BAD),
        (200, 0.287, 287, Outcome.GOOD),  # any threshold, not a histogram bucket
        (200, 0.2871, 287, Outcome.BAD),
        (404, 1.0, 300, Outcome.BAD),  # a slow 4xx is still slow
    ],
)
def test_classify_outcomes(
    status: int, duration_s: float, latency_ms: float | None, outcome: Outcome
) -> None:
    assert classify(status, duration_s, "new", _slo(latency_ms=latency_ms)) is outcome


@pytest.mark.parametrize(
    ("side", "served_by", "counted"),
    [
        ("all", "new", True),
        ("all", "legacy", True),
        ("new", "new", True),
        ("new", "legacy", False),
        ("legacy", "legacy", True),
        ("legacy", "new", False),
    ],
)
def test_classify_counts_only_the_slos_side(side: str, served_by: str, counted: bool) -> None:
    outcome = classify(500, 0.01, served_by, _slo(side=side))  # type: ignore[arg-type]
    assert (outcome is not None) == counted


def test_the_workbooks_four_alerts_against_a_steady_one_percent() -> None:
    # Three days of minute buckets (the longest default window), 1 % of them bad.
    slo = _slo(objective=99.9, window_days=28, alerts=list(DEFAULT_SLO_ALERTS), min_requests=100)
    now = 3 * 86_400.0
    state = evaluate(slo, _minute_buckets(3 * 24 * 60, bad=10), now, None)

    burn = (10 / 1000) / (1 - slo.objective / 100)  # 10: the budget burns ten times too fast
    expected = [
        AlertState.FIRING if burn >= alert.burn else AlertState.INACTIVE
        for alert in DEFAULT_SLO_ALERTS
    ]
    # The point of the case: 14.4 > 10 >= 6, 3, 1.
    assert expected == [AlertState.INACTIVE, *[AlertState.FIRING] * 3]
    assert [alert.state for alert in state.alerts] == expected
    for alert in state.alerts:
        assert alert.now.long.burn_rate == pytest.approx(burn)
        assert alert.now.short.burn_rate == pytest.approx(burn)
        assert not alert.is_low_traffic
    assert [t.alert for t in state.transitions if t.kind is TransitionKind.ALERT_FIRING] == list(
        DEFAULT_SLO_ALERTS[1:]
    )


def test_an_edited_alert_starts_inactive() -> None:
    samples = _seconds(0, 60, bad=50)
    first = evaluate(_slo(), samples, 60.0, None)
    assert first.alerts[0].state is AlertState.FIRING
    edited = SloAlertConfig(severity="page", burn=10, long=60, short=20)
    second = evaluate(_slo(alerts=[edited]), samples, 61.0, first)
    # The old alert's state says nothing of the new one, which fires afresh.
    assert [(t.kind, t.alert) for t in second.transitions] == [
        (TransitionKind.ALERT_FIRING, edited)
    ]


def test_the_state_as_json() -> None:
    # 1214 s of traffic at 100/s: 1214 bad allowed, 630 spent; a full outage at 100/s spends
    # the other 584 in 5.84 s.
    samples = _seconds(-1000, 200) + _seconds(200, 230, bad=BURST_BAD)
    state = _run(_slo(latency_ms=300), samples, range(201, 215))[-1]
    shown = json.loads(json.dumps(state.to_json()))
    (alert,) = shown.pop("alerts")
    assert shown == {
        "name": "projects-api",
        "objective": 99.0,
        "window_s": 86_400.0,
        "evaluated_at": 214.0,
        "good": 1214 * RATE - 630,
        "bad": 630,
        "budget_left_pct": pytest.approx(100 * (1214 - 630) / 1214),
        "budget_exhausted": False,
        "outage_minutes_left": pytest.approx((1214 - 630) / RATE / 60),
    }
    assert alert == {
        "severity": "page",
        "burn": 10.0,
        "long_s": 60.0,
        "short_s": 10.0,
        "burn_long": pytest.approx(10.5),
        "burn_short": pytest.approx(45.0),
        "requests": 6000,
        "bad": 630,
        "now": alert["fired_with"],  # it fired at this very evaluation
        "state": "firing",
        "low_traffic": False,
        "fired_at": 214.0,
        "fired_with": {
            "long": {
                "start": 154.0,
                "end": 214.0,
                "requests": 6000,
                "bad": 630,
                "burn_rate": pytest.approx(10.5),
            },
            "short": {
                "start": 204.0,
                "end": 214.0,
                "requests": 1000,
                "bad": 450,
                "burn_rate": pytest.approx(45.0),
            },
        },
        "resolved_at": None,
        "resolved_with": None,
    }


def test_a_stored_state_carries_a_firing_alert_over() -> None:
    # A replica taking the lease over reads the state back: the alert stays firing (no second
    # alert_firing), and resolves with the numbers of its own burn when the burn stops.
    samples = _seconds(-1000, 200) + _seconds(200, 230, bad=BURST_BAD) + _seconds(230, 400)
    slo = _slo(latency_ms=300)
    fired = _run(slo, samples, range(201, 215))[-1]
    restored = state_from_json(slo, json.loads(json.dumps(fired.to_json())))
    assert restored is not None
    assert restored.alerts == fired.alerts
    assert restored.budget_left_pct == pytest.approx(fired.budget_left_pct)
    previous, kinds = restored, []
    for now in range(215, 300):
        previous = evaluate(slo, samples, float(now), previous)
        kinds += [t.kind for t in previous.transitions if t.alert is not None]
    assert kinds == [TransitionKind.ALERT_RESOLVED]


def test_a_stored_state_of_another_shape_is_ignored() -> None:
    slo = _slo()
    state = evaluate(slo, _seconds(0, 60, bad=50), 60.0, None).to_json()
    assert state_from_json(_slo(name="other"), state) is None
    assert state_from_json(slo, {**state, "good": "many"}) is None
    assert state_from_json(slo, {"name": "projects-api"}) is None
    # An alert the config no longer has is dropped; one it gained starts inactive.
    edited = SloAlertConfig(severity="ticket", burn=2, long=120, short=30)
    restored = state_from_json(_slo(alerts=[edited]), state)
    assert restored is not None and restored.alerts == ()


def test_a_burn_exactly_at_the_threshold_fires() -> None:
    # 99.99 leaves a budget share of 0.01 %, which has no exact float (100 - 99.99 rounds up):
    # 0.1 % errors burn exactly 10, and the alert must not miss it by a rounding step.
    slo = _slo(objective=99.99)
    (state,) = _run(slo, _seconds(0, 60, bad=10, rate=10_000), [60])
    assert state.alerts[0].now.long.burn_rate == pytest.approx(10.0)
    assert state.alerts[0].state is AlertState.FIRING


def test_another_slos_state_is_refused() -> None:
    # The default alerts are the same for every SLO: a mixed-up state would carry over silently.
    other = evaluate(_slo(name="billing"), [], 60.0, None)
    with pytest.raises(ValueError, match="billing's, not projects-api's"):
        evaluate(_slo(), [], 61.0, other)
