"""`strangler observability grafana`: a Grafana dashboard for the gateway's `/metrics`.

Rules:
- The dashboard is data (SECTIONS: panels of PromQL queries) turned into Grafana's JSON model by
  one small builder; the panels are laid out left to right on Grafana's 24-column grid.
- Every query reads families the gateway exports (observe/exposition.py: FAMILIES); the
  integration tests check each name against a real scrape and each query against a real
  Prometheus, with `$route` and `$__rate_interval` substituted.
- Imports without editing: the Prometheus data source is the `DS_PROMETHEUS` variable (picked
  from a list in the dashboard), never a uid from somebody's Grafana; `route` lists the routes
  from `strangler_route_stage` and narrows the per-route panels (all of them by default).
- Nothing here reads a config or talks to the gateway: the output depends on nothing else.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, assert_never

import orjson
import typer

observability_app = typer.Typer(
    help="Dashboards for the gateway's Prometheus metrics.",
    no_args_is_help=True,
    add_completion=False,
)

# Grafana 9.0 reads schema 36 and later; 39 is Grafana 10.x, which later versions migrate.
SCHEMA_VERSION = 39
GRID_COLUMNS = 24
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
RATE = "$__rate_interval"
ROUTE = 'route=~"$route"'
SERVED = 'side=~"legacy|new"'


class PanelType(enum.StrEnum):
    TIMESERIES = "timeseries"
    STAT = "stat"
    BARGAUGE = "bargauge"
    TABLE = "table"


@dataclass(frozen=True, slots=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True, slots=True)
class Panel:
    title: str
    kind: PanelType
    queries: tuple[Query, ...]
    description: str
    unit: str = "short"
    width: int = 12
    height: int = 8
    # Time series only: areas stacked to 100 %, or bars for counts per interval.
    is_percent_stack: bool = False
    is_bars: bool = False


# -- PromQL helpers -------------------------------------------------------------------------------


def _rate(metric: str, selector: str = "", by: str = "") -> str:
    grouping = f"sum by ({by}) " if by else "sum"
    series = f"{metric}{{{selector}}}" if selector else metric
    return f"{grouping}(rate({series}[{RATE}]))"


def _quantile(q: float, metric: str, selector: str, by: str) -> str:
    grouping = f"{by}, le" if by else "le"
    return f"histogram_quantile({q}, {_rate(metric + '_bucket', selector, grouping)})"


def _share(metric: str, part: str, whole: str, by: str) -> str:
    """The rate of the series `part` selects over that of `whole`'s: 0, not missing, while the
    part has no series yet."""
    total = _rate(metric, whole, by)
    return f"({_rate(metric, part, by)} or 0 * {total}) / {total}"


def _latency(q: float) -> tuple[Query, ...]:
    """Both sides of every route, and what new took to answer the copies of shadowed routes."""
    return (
        Query(
            _quantile(q, "strangler_request_duration_seconds", f"{ROUTE}, {SERVED}", "route, side"),
            "{{route}} {{side}}",
        ),
        Query(
            _quantile(q, "strangler_shadow_duration_seconds", ROUTE, "route"),
            "{{route}} new (shadow copy)",
        ),
    )


REQUESTS = "strangler_requests_total"
COMPARISONS = "strangler_shadow_comparisons_total"
UPSTREAM = "strangler_upstream_duration_seconds"

SECTIONS: tuple[tuple[Panel, ...], ...] = (
    (
        Panel(
            "Routes by stage",
            PanelType.BARGAUGE,
            (Query("count by (stage) (strangler_route_stage == 1)", "{{stage}}"),),
            "How many routes are at each stage now.",
            width=6,
            height=7,
        ),
        Panel(
            "Answered by new",
            PanelType.STAT,
            (Query(_share(REQUESTS, 'side="new"', SERVED, "")),),
            "Share of the answers from a backend that new gave (all routes).",
            unit="percentunit",
            width=4,
            height=7,
        ),
        Panel(
            "Answers by side",
            PanelType.TIMESERIES,
            (Query(_rate(REQUESTS, by="side"), "{{side}}"),),
            "Who answered: legacy, new, or the gateway itself (refusals, CSRF 403s).",
            width=14,
            height=7,
            is_percent_stack=True,
        ),
    ),
    (
        Panel(
            "Requests by route and side",
            PanelType.TIMESERIES,
            (Query(_rate(REQUESTS, ROUTE, "route, side"), "{{route}} {{side}}"),),
            "Rate of answers per route, legacy against new.",
            unit="reqps",
        ),
        Panel(
            "Errors (5xx) by route and side",
            PanelType.TIMESERIES,
            (
                Query(
                    _share(REQUESTS, f'{ROUTE}, code_class="5xx"', ROUTE, "route, side"),
                    "{{route}} {{side}}",
                ),
            ),
            "Share of each route's answers with a 5xx status, legacy against new.",
            unit="percentunit",
        ),
    ),
    (
        Panel(
            "Latency p50 by route and side",
            PanelType.TIMESERIES,
            _latency(0.5),
            "Median time from a request's head to the last byte of its answer; for shadowed "
            "routes, also new's answer to the copy.",
            unit="s",
        ),
        Panel(
            "Latency p99 by route and side",
            PanelType.TIMESERIES,
            _latency(0.99),
            "99th percentile of the same times.",
            unit="s",
        ),
    ),
    (
        Panel(
            "Shadow comparisons by verdict",
            PanelType.TIMESERIES,
            (Query(_rate(COMPARISONS, ROUTE, "route, verdict"), "{{route}} {{verdict}}"),),
            "Shadow answers compared with legacy's: equal, equal but for learned noise, different.",
            unit="ops",
            width=8,
        ),
        Panel(
            "Shadow parity",
            PanelType.TIMESERIES,
            (
                Query(
                    _share(
                        COMPARISONS, f'{ROUTE}, verdict=~"equal|equal_but_noise"', ROUTE, "route"
                    ),
                    "{{route}}",
                ),
                Query(
                    _share(COMPARISONS, f'{ROUTE}, verdict="equal"', ROUTE, "route"),
                    "{{route}} strict",
                ),
            ),
            "Equal comparisons over all, as `strangler diffs` counts them (learned noise is "
            "equal), and strictly equal ones.",
            unit="percentunit",
            width=8,
        ),
        Panel(
            "Shadow copies dropped",
            PanelType.TIMESERIES,
            (
                Query(
                    _rate("strangler_shadow_dropped_total", ROUTE, "route, reason"),
                    "{{route}} {{reason}}",
                ),
            ),
            "Shadow copies that ended without a comparison, and why (queue full, timeout, "
            "unsafe method not mirrored...).",
            unit="ops",
            width=8,
        ),
    ),
    (
        Panel(
            "Canary weight",
            PanelType.TIMESERIES,
            (Query(f"max by (route) (strangler_canary_weight{{{ROUTE}}})", "{{route}}"),),
            "Share of users each canary route sends to new.",
            unit="percent",
            width=8,
        ),
        Panel(
            "Rollout verdicts",
            PanelType.TIMESERIES,
            (
                Query(
                    f"sum by (route, verdict) (increase(strangler_rollout_verdicts_total[{RATE}]))",
                    "{{route}} {{verdict}}",
                ),
            ),
            "The canary analyzer's verdicts per interval, by rollout unit (a route, or the "
            "canary group it shares); not narrowed by the route variable.",
            width=8,
            is_bars=True,
        ),
        Panel(
            "Route stages",
            PanelType.TABLE,
            (Query(f"max by (route, stage) (strangler_route_stage{{{ROUTE}}} == 1)"),),
            "Every route and the stage in force.",
            width=8,
        ),
    ),
    (
        Panel(
            "Upstream latency by backend",
            PanelType.TIMESERIES,
            (
                Query(_quantile(0.5, UPSTREAM, "", "backend"), "{{backend}} p50"),
                Query(_quantile(0.99, UPSTREAM, "", "backend"), "{{backend}} p99"),
            ),
            "Time from sending a request upstream to its answer's head (shadow copies have "
            "their own pool and are not counted here).",
            unit="s",
        ),
        Panel(
            "Gateway refusals",
            PanelType.TIMESERIES,
            (
                Query(
                    _rate("strangler_client_requests_rejected_total", by="status"),
                    "answered {{status}}",
                ),
                Query(
                    _rate("strangler_csrf_refused_total", ROUTE, "route"),
                    "CSRF refused {{route}}",
                ),
            ),
            "Requests the gateway answered with an error itself (bad requests, limits, "
            "forgery protection), and CSRF refusals by route.",
            unit="reqps",
        ),
    ),
)


# -- The builder ----------------------------------------------------------------------------------


def _target(query: Query, ref_id: str, *, is_instant: bool) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": DATASOURCE,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "refId": ref_id,
        "range": not is_instant,
        "instant": is_instant,
    }
    if is_instant:
        target["format"] = "table"
    return target


def _custom(panel: Panel) -> dict[str, Any]:
    """Field defaults of a time series: lines, areas stacked to 100 %, or bars."""
    return {
        "drawStyle": "bars" if panel.is_bars else "line",
        "fillOpacity": 60 if panel.is_percent_stack or panel.is_bars else 10,
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "percent" if panel.is_percent_stack else "none", "group": "A"},
    }


def _options(panel: Panel) -> dict[str, Any]:
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    match panel.kind:
        case PanelType.TIMESERIES:
            return {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        case PanelType.STAT:
            return {
                "reduceOptions": reduce,
                "colorMode": "value",
                "graphMode": "area",
                "justifyMode": "auto",
                "orientation": "auto",
                "textMode": "auto",
            }
        case PanelType.BARGAUGE:
            return {
                "reduceOptions": reduce,
                "displayMode": "basic",
                "orientation": "horizontal",
                "showUnfilled": True,
            }
        case PanelType.TABLE:
            return {"showHeader": True, "cellHeight": "sm"}
        case _:
            assert_never(panel.kind)


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    is_instant = panel.kind is PanelType.TABLE
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind is PanelType.TIMESERIES:
        defaults["custom"] = _custom(panel)
    if panel.unit == "percentunit":
        defaults |= {"min": 0, "max": 1}
    built: dict[str, Any] = {
        "id": panel_id,
        "type": panel.kind.value,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": _options(panel),
        "targets": [
            _target(query, chr(ord("A") + index), is_instant=is_instant)
            for index, query in enumerate(panel.queries)
        ],
    }
    if is_instant:
        # One row per series: its labels, without the sample's time and value.
        built["transformations"] = [
            {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True}}}
        ]
    return built


def _variables() -> list[dict[str, Any]]:
    routes = "label_values(strangler_route_stage, route)"
    return [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
            "options": [],
        },
        {
            "name": "route",
            "label": "Route",
            "type": "query",
            "datasource": DATASOURCE,
            "definition": routes,
            "query": routes,
            "refresh": 2,
            "includeAll": True,
            "multi": True,
            # Also matches the `_default` series of requests that matched no route.
            "allValue": ".*",
            "current": {},
            "sort": 1,
            "hide": 0,
            "regex": "",
            "options": [],
        },
    ]


def dashboard(title: str = "strangler") -> dict[str, Any]:
    """The Grafana dashboard (JSON model) for every panel of SECTIONS, laid out by section."""
    panels: list[dict[str, Any]] = []
    y = 0
    for section in SECTIONS:
        x = 0
        height = 0
        for panel in section:
            if x + panel.width > GRID_COLUMNS:
                x, y, height = 0, y + height, 0
            panels.append(_panel(panel, len(panels) + 1, x, y))
            x += panel.width
            height = max(height, panel.height)
        y += height
    return {
        "title": title,
        "uid": "strangler-gateway",
        "description": "strangler: routes by stage, legacy against new, shadow parity, canaries.",
        "tags": ["strangler"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "annotations": {"list": []},
        "links": [],
        "templating": {"list": _variables()},
        "panels": panels,
    }


@observability_app.command("grafana")
def grafana(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write the JSON here instead of to stdout."
        ),
    ] = None,
    title: Annotated[
        str, typer.Option(metavar="TEXT", help="The dashboard's title.")
    ] = "strangler",
) -> None:
    """Print a Grafana dashboard for the gateway's metrics.

    Import it in Grafana (Dashboards > New > Import) and pick the Prometheus that scrapes it.
    """
    model = dashboard(title)
    text = orjson.dumps(model, option=orjson.OPT_INDENT_2) + b"\n"
    if output is None:
        typer.echo(text.decode(), nl=False)
        return
    try:
        output.write_bytes(text)
    except OSError as exc:
        typer.echo(f"error: cannot write {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"{output}: Grafana dashboard, {len(model['panels'])} panels")
