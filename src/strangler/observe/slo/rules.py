"""The config's SLOs as Prometheus rules (Sloth's shape) and as OpenSLO v1 documents.

Rules:
- Pure: a loaded Config in, plain data out (dicts ready for YAML); nothing here reads a file,
  a clock or the store. The in-process evaluator stays the reference; this is the same SLO for
  teams that alert from their own Prometheus.
- Every query reads the families the gateway exports (observe/exposition.py: FAMILIES):
  `strangler_requests_total{route, stage, side, code_class}` and
  `strangler_request_duration_seconds{route, side}`, with the same bounds as metrics.BUCKETS.
- Per SLO: one `slo:sli_error:ratio_rate<W>` recording rule per window its alerts use (derived
  from the alerts, never a fixed list), then one multiwindow burn-rate alert per configured alert
  (Google SRE workbook, "Alerting on SLOs"): it fires while both its windows burn faster than
  `burn` times the error budget, and, like the evaluator, stays quiet while the long window saw
  fewer than `min_requests` requests.
- What Prometheus can't count the way the evaluator does is said in the rules' annotations:
  429 answers are in code_class 4xx, so they count as good here; and a latency threshold can
  only be counted at a histogram bucket, the largest bound at or below it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from strangler.config import Config, SloAlertConfig, SloConfig
from strangler.observe.metrics import BUCKETS

REQUESTS = "strangler_requests_total"
DURATION = "strangler_request_duration_seconds"
ALERT_NAME = "StranglerSLOBurnRate"
# The status class the gateway counts as bad. 429 (counted bad by the evaluator) can't be told
# apart from other 4xx at code_class resolution, so these rules count it as good.
BAD_CLASS = "5xx"
TOO_MANY_REQUESTS_NOTE = (
    "429 answers count as good here: strangler_requests_total only has the status class (4xx), "
    "where the in-process evaluator counts them as bad."
)

# Largest unit first; every window renders in the largest unit that divides it exactly.
_UNITS = (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1))
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")


def prometheus_duration(seconds: float) -> str:
    """`300` -> `5m`, `86400` -> `1d`, `90` -> `90s`, `0.5` -> `500ms` (Prometheus' syntax)."""
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"a window of {seconds!r} s is too short for Prometheus")
    for unit, size in _UNITS:
        if millis % size == 0:
            return f"{millis // size}{unit}"
    raise AssertionError("unreachable: ms divides every whole number of milliseconds")


def _promql_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _route_regex(names: list[str]) -> str:
    """An RE2 alternation that matches exactly these route names (PromQL anchors it)."""
    escaped = ("".join("\\" + c if c in _RE2_SPECIAL else c for c in name) for name in names)
    return "|".join(escaped)


def latency_bucket_s(latency_ms: float) -> float:
    """The histogram bound Prometheus counts a latency threshold at: the largest at or below it.

    A bound above the threshold would count answers slower than it as good; one below counts a
    few good answers as slow, which errs towards alerting."""
    threshold_s = latency_ms / 1000
    fitting = [bound for bound in BUCKETS if bound <= threshold_s + 1e-12]
    if not fitting:
        raise ValueError(
            f"latency_ms {latency_ms:g} is below the smallest histogram bucket "
            f"({BUCKETS[0] * 1000:g} ms): Prometheus can't count it"
        )
    return fitting[-1]


@dataclass(frozen=True, slots=True)
class SliQueries:
    """The PromQL selectors of one SLO's requests, and how to count the bad ones."""

    slo: SloConfig
    routes: tuple[str, ...]
    selector: str  # route (and side) matchers, without braces
    bucket_s: float | None

    @classmethod
    def of(cls, config: Config, slo: SloConfig) -> SliQueries:
        names = [route.name for route in config.routes if slo.selects(route)]
        matchers = [f"route=~{_promql_string(_route_regex(names))}"]
        if slo.side != "all":
            # side="all" keeps the gateway's own answers (its 502/503/504 are bad too).
            matchers.append(f"side={_promql_string(slo.side)}")
        bucket = None if slo.latency_ms is None else latency_bucket_s(slo.latency_ms)
        return cls(slo, tuple(names), ", ".join(matchers), bucket)

    def _sum(self, metric: str, extra: str, window: str | None) -> str:
        selector = f"{metric}{{{self.selector}{extra}}}"
        return f"sum(rate({selector}[{window}]))" if window else f"sum({selector})"

    def total(self, window: str | None) -> str:
        return self._sum(REQUESTS, "", window)

    def bad(self, window: str | None) -> str:
        """Bad answers: 5xx, plus (with latency_ms) those slower than the bucket's bound.

        Without a window: the counters themselves (OpenSLO's `counter: true`); with one: rates.
        A slow 5xx is counted twice (the two families can't be joined per request): the sum errs
        towards alerting, and the ratio is clamped at 1."""
        errors = self._sum(REQUESTS, f', code_class="{BAD_CLASS}"', window)
        # No 5xx series yet reads as 0, not as no ratio at all.
        bad = f"({errors} or 0 * {self.total(window)})"
        if self.bucket_s is not None:
            le = f', le="{self.bucket_s}"'
            answered = self._sum(DURATION + "_count", "", window)
            slow = f"({answered} - {self._sum(DURATION + '_bucket', le, window)})"
            bad = f"({bad} + ({slow} or 0 * {self.total(window)}))"
        return bad

    def error_ratio(self, window: str) -> str:
        ratio = f"{self.bad(window)}\n/\n{self.total(window)}"
        return f"clamp_max({ratio}, 1)" if self.bucket_s is not None else ratio


def alert_windows(slo: SloConfig) -> list[float]:
    """Every window (seconds) the SLO's alerts read, shortest first."""
    return sorted({w for alert in slo.alerts for w in (alert.long, alert.short)})


def _counting_note(queries: SliQueries) -> str:
    note = f"Bad: code_class {BAD_CLASS}. {TOO_MANY_REQUESTS_NOTE}"
    if queries.bucket_s is not None and queries.slo.latency_ms is not None:
        note += (
            f" Slower than {queries.slo.latency_ms:g} ms is bad too, counted at the histogram "
            f'bucket le="{queries.bucket_s}" ({queries.bucket_s * 1000:g} ms, the largest at or '
            "below the threshold); the in-process evaluator counts the threshold exactly."
        )
    return note


def _alert_rule(queries: SliQueries, alert: SloAlertConfig) -> dict[str, Any]:
    slo = queries.slo
    budget = 1 - slo.objective / 100
    threshold = f"({alert.burn:g} * {budget:.10g})"
    long_w, short_w = prometheus_duration(alert.long), prometheus_duration(alert.short)
    name = _promql_string(slo.name)
    routes = ", ".join(queries.routes)
    expr = (
        f"(slo:sli_error:ratio_rate{long_w}{{slo={name}}} > {threshold})\n"
        f"and\n(slo:sli_error:ratio_rate{short_w}{{slo={name}}} > {threshold})"
    )
    if slo.min_requests > 0:
        # The evaluator's low-traffic guard: too few requests in the long window, no alert.
        expr += (
            f"\nand on ()\n(sum(increase({REQUESTS}{{{queries.selector}}}[{long_w}])) "
            f">= {slo.min_requests})"
        )
    return {
        "alert": ALERT_NAME,
        "expr": expr,
        "labels": {
            "severity": alert.severity,
            "slo": slo.name,
            "long_window": long_w,
            "short_window": short_w,
        },
        "annotations": {
            "summary": (
                f"SLO {slo.name} is burning its error budget {alert.burn:g}x too fast "
                f"over {long_w} and {short_w}"
            ),
            "description": (
                f"The share of bad answers on the routes of SLO {slo.name} "
                f"(objective {slo.objective:g} % over {slo.window_days:g} days) is above "
                f"{alert.burn:g} x {budget:.10g} over both the last {long_w} and the last "
                f"{short_w}. {_counting_note(queries)}"
            ),
            "runbook": (
                f"`strangler status` shows the stage and figures of its routes ({routes}); "
                "`strangler pause ROUTE` stops a canary moving, `strangler rollback ROUTE` "
                "sends everyone back to legacy."
            ),
        },
    }


def prometheus_rules(config: Config) -> dict[str, Any]:
    """The rule file for every SLO of `config`: per SLO a recording group and an alert group.

    Recording rules take no annotations: the counting caveats go on every alert instead."""
    groups: list[dict[str, Any]] = []
    for slo in config.slos:
        queries = SliQueries.of(config, slo)
        recordings: list[dict[str, Any]] = [
            {
                "record": f"slo:sli_error:ratio_rate{window}",
                "expr": queries.error_ratio(window),
                "labels": {"slo": slo.name},
            }
            for window in map(prometheus_duration, alert_windows(slo))
        ]
        budget = 1 - slo.objective / 100
        recordings += [
            {"record": "slo:objective:ratio", "expr": f"vector({slo.objective / 100:.10g})"},
            {"record": "slo:error_budget:ratio", "expr": f"vector({budget:.10g})"},
        ]
        for rule in recordings[-2:]:
            rule["labels"] = {"slo": slo.name}
        groups.append({"name": f"strangler-slo-sli-recordings-{slo.name}", "rules": recordings})
        groups.append(
            {
                "name": f"strangler-slo-alerts-{slo.name}",
                "rules": [_alert_rule(queries, alert) for alert in slo.alerts],
            }
        )
    return {"groups": groups}


def _metric_source(query: str) -> dict[str, Any]:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def openslo_documents(config: Config) -> list[dict[str, Any]]:
    """One OpenSLO v1 `SLO` document per SLO: a ratio of bad to all requests over the counters."""
    documents: list[dict[str, Any]] = []
    for slo in config.slos:
        queries = SliQueries.of(config, slo)
        documents.append(
            {
                "apiVersion": "openslo/v1",
                "kind": "SLO",
                "metadata": {"name": slo.name, "displayName": slo.name},
                "spec": {
                    "description": _counting_note(queries),
                    "service": "strangler",
                    "indicator": {
                        "metadata": {"name": f"{slo.name}-errors"},
                        "spec": {
                            "ratioMetric": {
                                "counter": True,
                                "bad": _metric_source(queries.bad(None)),
                                "total": _metric_source(queries.total(None)),
                            }
                        },
                    },
                    "timeWindow": [
                        {"duration": prometheus_duration(slo.window_s), "isRolling": True}
                    ],
                    "budgetingMethod": "Occurrences",
                    "objectives": [
                        {"displayName": slo.name, "target": round(slo.objective / 100, 10)}
                    ],
                },
            }
        )
    return documents


class _RuleDumper(yaml.SafeDumper):
    """Multi-line PromQL as literal blocks, and no YAML anchors (two rules never share a dict
    as far as a reader of the file can tell)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _string(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_RuleDumper.add_representer(str, _string)


def render_prometheus(config: Config) -> str:
    """The rule file as text, for `promtool check rules` and Prometheus' `rule_files`."""
    return yaml.dump(prometheus_rules(config), Dumper=_RuleDumper, sort_keys=False, width=100)


def render_openslo(config: Config) -> str:
    """The OpenSLO documents as one multi-document YAML text."""
    return yaml.dump_all(openslo_documents(config), Dumper=_RuleDumper, sort_keys=False, width=100)
