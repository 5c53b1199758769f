"""What `strangler slo status` prints and what GET /api/v1/alerts lists, from states the
evaluator computes over synthetic series (no gateway, no store): the budget in % and minutes of
full outage, each alert's windows, burn rates and state, the low-traffic guard, and the order
of the alerts (firing first, pages first)."""

from __future__ import annotations

from typing import Any

import pytest

from strangler.cli.slo import print_slos
from strangler.config import SloAlertConfig, SloConfig
from strangler.control.slo_status import SloView, alert_rows
from strangler.control.state import SloSample
from strangler.observe.slo.evaluator import evaluate

PAGE = SloAlertConfig(severity="page", burn=10, long=60, short=10)
TICKET = SloAlertConfig(severity="ticket", burn=20, long=120, short=30)
NOW = 3660.0  # 1970-01-01 01:01:00Z


def _slo(name: str, **overrides: Any) -> SloConfig:
    fields: dict[str, Any] = {
        "name": name,
        "routes": ["projects.*"],
        "objective": 99,
        "window_days": 1,
        "alerts": [TICKET, PAGE],
        "min_requests": 50,
    }
    return SloConfig(**{**fields, **overrides})


def _burning() -> list[SloSample]:
    """An hour at 10 requests a second, all good, then a minute with 1 in 10 bad: burn 10 over
    the last minute and the last 10 s (the page fires), 5 over 2 minutes (the ticket doesn't)."""
    good = [SloSample(float(t), 10, 0) for t in range(3600)]
    return good + [SloSample(float(t), 9, 1) for t in range(3600, 3660)]


def _view(slo: SloConfig, samples: list[SloSample], source: str = "monitor") -> SloView:
    return SloView(slo, evaluate(slo, samples, NOW, None), source, 1.0)


def test_a_burning_slo_prints_its_budget_and_alert_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    slo = _slo("projects-api", latency_ms=300, side="new")
    print_slos([_view(slo, _burning()).to_json()])
    # 36 600 requests allow 366 bad; 60 spent leaves 306, 83.6 %, or 30.6 s at 10 a second.
    assert capsys.readouterr().out.splitlines() == [
        "projects-api: 99 % over 1d",
        "  routes: projects.*; answers from new only; slower than 300 ms is bad",
        "  good 36540, bad 60",
        "  budget left: 83.6 % (0.5 min of full outage)",
        "",
        "  severity  burn  windows  burn now (long/short)  state",
        "  ticket    20    2m/30s   5.00/10.00             inactive",
        "  page      10    1m/10s   10.00/10.00            firing since 1970-01-01 01:01:00Z",
    ]


def test_a_quiet_computed_slo_says_so_and_an_exhausted_budget_says_exhausted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet = _view(_slo("quiet-api", alerts=[PAGE]), [], source="computed")
    spent = _view(_slo("spent-api", alerts=[]), [SloSample(NOW - 5, 50, 50)])
    print_slos([quiet.to_json(), spent.to_json()])
    assert capsys.readouterr().out.splitlines() == [
        "quiet-api: 99 % over 1d",
        "  routes: projects.*",
        "  good 0, bad 0",
        "  budget left: 100.0 % (no requests in the last hour to measure an outage by)",
        "",
        "  severity  burn  windows  burn now (long/short)  state",
        "  page      10    1m/10s   0.00/0.00              quiet: low traffic (0 of 50)",
        "  (no gateway has evaluated this SLO recently: computed now from the stored counts; "
        "alert history needs a running gateway)",
        "",
        "spent-api: 99 % over 1d",
        "  routes: projects.*",
        "  good 50, bad 50",
        # 100 requests allow 1 bad: 50 spend it 50 times.
        "  budget left: exhausted (-4900.0 %: 5000.0 % of the budget spent)",
        "  no alerts configured",
    ]


def test_alerts_list_firing_first_and_pages_before_tickets() -> None:
    # The ticket fires too here (burn 2 < 5); in the config it comes before the page.
    hot = _slo(
        "hot-api", alerts=[SloAlertConfig(severity="ticket", burn=2, long=120, short=30), PAGE]
    )
    calm = _slo("calm-api")
    views = [_view(calm, []), _view(hot, _burning())]
    firing = alert_rows(views, include_all=False)
    assert [(row["slo"], row["severity"], row["state"]) for row in firing] == [
        ("hot-api", "page", "firing"),
        ("hot-api", "ticket", "firing"),
    ]
    assert set(firing[0]) == {
        "slo", "severity", "burn", "long_s", "short_s", "state", "burn_long", "burn_short",
        "fired_at", "fired_with", "resolved_at", "low_traffic",
    }  # fmt: skip
    every = alert_rows(views, include_all=True)
    assert [(row["slo"], row["severity"], row["state"]) for row in every] == [
        ("hot-api", "page", "firing"),
        ("hot-api", "ticket", "firing"),
        ("calm-api", "page", "inactive"),
        ("calm-api", "ticket", "inactive"),
    ]
