"""The `slos:` section: durations, the SRE workbook's default alerts, and selectors that must
select a route."""

from __future__ import annotations

import textwrap

import pytest

from strangler.config import parse_config
from strangler.errors import ConfigError

BASE = """\
backends:
  legacy: {url: "http://x:1"}
  new: {url: "http://x:2"}
routes:
  - {name: projects.show, match: "GET /projects/:id", stage: canary, canary: {group: projects}}
  - name: projects.tasks
    match: "GET /projects/:id/tasks"
    stage: canary
    canary: {group: projects}
  - {name: home, match: "GET /"}
"""


def _config(slos: str):  # type: ignore[no-untyped-def]
    return parse_config(BASE + textwrap.dedent(slos), "s.yaml")


def test_an_slo_selects_routes_by_name_group_and_glob() -> None:
    config = _config(
        """\
        slos:
          - {name: by-group, routes: ["group:projects"], objective: 99.9}
          - {name: by-glob, routes: ["projects.*"], objective: 99}
          - {name: by-name, routes: [home], objective: 99.5, latency_ms: 300, side: new}
        """
    )
    selected = {
        slo.name: [route.name for route in config.routes if slo.selects(route)]
        for slo in config.slos
    }
    assert selected == {
        "by-group": ["projects.show", "projects.tasks"],
        "by-glob": ["projects.show", "projects.tasks"],
        "by-name": ["home"],
    }
    slo = config.slos[0]
    assert slo.window_s == 28 * 86_400
    assert [(a.severity, a.burn, a.long, a.short) for a in slo.alerts] == [
        ("page", 14.4, 3600, 300),
        ("page", 6, 21_600, 1800),
        ("ticket", 3, 86_400, 7200),
        ("ticket", 1, 259_200, 21_600),
    ]


def test_alert_windows_take_durations_down_to_seconds() -> None:
    config = _config(
        """\
        slos:
          - name: demo
            routes: [home]
            objective: 99
            alerts: [{severity: page, burn: 2, long: 10s, short: 2s}]
        """
    )
    (alert,) = config.slos[0].alerts
    assert (alert.long, alert.short) == (10, 2)


@pytest.mark.parametrize(
    ("slos", "field", "message"),
    [
        (
            "slos: [{name: a, routes: [nope], objective: 99}]",
            "slos[0].routes[0]",
            "'nope' selects no route",
        ),
        (
            "slos: [{name: a, routes: ['group:other'], objective: 99}]",
            "slos[0].routes[0]",
            "'group:other' selects no route",
        ),
        (
            "slos: [{name: a, routes: [home], objective: 99},"
            " {name: a, routes: [home], objective: 98}]",
            "slos[1].name",
            "SLO name 'a' is already used",
        ),
        (
            "slos: [{name: a, routes: [home], objective: 99,"
            " alerts: [{severity: page, burn: 2, long: 5m, short: 1h}]}]",
            "slos[0].alerts[0]",
            "`short` must be shorter than `long`",
        ),
        (
            "slos: [{name: a, routes: [home], objective: 99,"
            " alerts: [{severity: page, burn: 2, long: 5 minutes, short: 1m}]}]",
            "slos[0].alerts[0].long",
            "expected a duration like 10s, 5m, 1h or 3d",
        ),
        ("slos: [{name: a, routes: [home], objective: 100}]", "slos[0].objective", "less than"),
    ],
)
def test_a_bad_slo_names_its_field(slos: str, field: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _config(slos + "\n")
    assert caught.value.field == field
    assert message in caught.value.message
