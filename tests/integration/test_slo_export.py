"""`strangler slo export`, read by the tools that read it: `promtool check rules` lints the rule
file, `promtool test rules` evaluates its recording rules and alerts on synthetic series, and
the OpenSLO output is checked as the YAML a reader of OpenSLO v1 expects.

`promtool` comes from the Debian package `prometheus` (`make test` installs it); without it the
promtool tests skip, saying so, or fail under STRANGLER_REQUIRE_PROMETHEUS=1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.gateway_process import run_cli

CONFIG = """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
routes:
  - {name: projects.show.api, match: "GET /api/projects/:id", stage: canary}
  - {name: projects.index, match: "GET /projects", stage: new}
  - {name: billing.invoices, match: "GET /invoices", stage: legacy}
  - {name: admin.panel, match: "GET /admin", stage: legacy}
slos:
  - name: projects-api
    routes: ["projects.*"]
    objective: 99.9
    latency_ms: 300
    side: new
  - name: billing
    routes: [billing.invoices]
    objective: 99
    window_days: 7
    min_requests: 50
    alerts:
      - {severity: page, burn: 10, long: 10m, short: 2m}
      - {severity: ticket, burn: 3, long: 1h, short: 10m}
"""

BILLING_2XX = (
    'strangler_requests_total{route="billing.invoices", stage="legacy", side="legacy", '
    'code_class="2xx"}'
)
BILLING_5XX = BILLING_2XX.replace('"2xx"', '"5xx"')
# Every answer of a route no SLO selects is a 5xx: no alert may come of it.
ADMIN_5XX = BILLING_5XX.replace("billing.invoices", "admin.panel")


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        reason = (
            "`promtool` is not installed, so the exported SLO rules were NOT checked: install "
            "the Debian package `prometheus` (`make test` does)"
        )
        if os.environ.get("STRANGLER_REQUIRE_PROMETHEUS") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "strangler.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


@pytest.fixture
def rules_file(config_file: Path, tmp_path: Path) -> Path:
    path = tmp_path / "slo-rules.yml"
    result = run_cli("slo", "export", "--prometheus", "-c", str(config_file), "-o", str(path))
    assert result.returncode == 0, result.stderr
    return path


def _alerts(rules_file: Path, slo: str) -> list[dict[str, Any]]:
    groups = yaml.safe_load(rules_file.read_text(encoding="utf-8"))["groups"]
    return [
        rule
        for group in groups
        for rule in group["rules"]
        if "alert" in rule and rule["labels"]["slo"] == slo
    ]


def _expected(rule: dict[str, Any]) -> dict[str, Any]:
    return {"exp_labels": rule["labels"], "exp_annotations": rule["annotations"]}


def _promtool_test(tmp_path: Path, rules_file: Path, tests: list[dict[str, Any]]) -> str:
    unit = tmp_path / "slo-test.yml"
    unit.write_text(
        yaml.safe_dump(
            {"rule_files": [rules_file.name], "evaluation_interval": "1m", "tests": tests}
        ),
        encoding="utf-8",
    )
    result = subprocess.run(
        [_promtool(), "test", "rules", unit.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_accepts_the_rules(rules_file: Path) -> None:
    result = subprocess.run(
        [_promtool(), "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # projects-api: the default four alerts read 7 windows, + 2 info rules, + 4 alerts;
    # billing: windows 2m, 10m, 1h + 2 info rules + 2 alerts.
    assert (result.returncode, result.stderr) == (0, "")
    assert "SUCCESS: 20 rules found" in result.stdout


def test_recording_rules_cover_exactly_the_alert_windows(rules_file: Path) -> None:
    groups = yaml.safe_load(rules_file.read_text(encoding="utf-8"))["groups"]
    windows: dict[str, list[str]] = {}
    for group in groups:
        for rule in group["rules"]:
            record = rule.get("record", "")
            if record.startswith("slo:sli_error:ratio_rate"):
                slo = rule["labels"]["slo"]
                windows.setdefault(slo, []).append(record.removeprefix("slo:sli_error:ratio_rate"))
    assert windows == {
        "projects-api": ["5m", "30m", "1h", "2h", "6h", "1d", "3d"],
        "billing": ["2m", "10m", "1h"],
    }


def test_annotations_say_what_prometheus_counts_differently(rules_file: Path) -> None:
    projects = _alerts(rules_file, "projects-api")
    billing = _alerts(rules_file, "billing")
    assert [(r["labels"]["severity"], r["labels"]["long_window"]) for r in billing] == [
        ("page", "10m"),
        ("ticket", "1h"),
    ]
    for rule in projects + billing:
        assert "429" in rule["annotations"]["description"]
        assert "strangler rollback ROUTE" in rule["annotations"]["runbook"]
    # 300 ms falls between the 250 ms and 500 ms buckets: the rules count at 250 ms, and say so.
    assert 'le="0.25"' in projects[0]["annotations"]["description"]
    assert "bucket" not in billing[0]["annotations"]["description"]


def test_page_alert_fires_once_both_windows_burn(rules_file: Path, tmp_path: Path) -> None:
    page, ticket = _alerts(rules_file, "billing")
    # 10 good answers a second throughout; from minute 20 on, 5 bad ones a second too (a third
    # of the answers). The 2 m window crosses 10x the 1 % budget at once; the 10 m window only
    # after a few minutes (at 21 m it holds 300 bad of 6300), so nothing fires at 21 m.
    series = [
        {"series": BILLING_2XX, "values": "0+600x60"},
        {"series": BILLING_5XX, "values": "0x20 300+300x40"},
        {"series": ADMIN_5XX, "values": "0+600x60"},
    ]
    _promtool_test(
        tmp_path,
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "19m", "alertname": "StranglerSLOBurnRate", "exp_alerts": []},
                    {"eval_time": "21m", "alertname": "StranglerSLOBurnRate", "exp_alerts": []},
                    {
                        "eval_time": "30m",
                        "alertname": "StranglerSLOBurnRate",
                        "exp_alerts": [_expected(page), _expected(ticket)],
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": 'slo:sli_error:ratio_rate10m{slo="billing"}',
                        "eval_time": "30m",
                        "exp_samples": [
                            {"labels": 'slo:sli_error:ratio_rate10m{slo="billing"}', "value": 1 / 3}
                        ],
                    }
                ],
            }
        ],
    )


def test_low_traffic_keeps_the_alerts_quiet(rules_file: Path, tmp_path: Path) -> None:
    # One good answer a minute, and from minute 20 one bad one too: every window burns far over
    # both thresholds, but an alert waits for min_requests (50) in its long window. At 30 m the
    # 1 h window holds 40 requests and the 10 m one 20: quiet. At 40 m the 1 h window holds 60,
    # so the ticket fires; the page's 10 m window still holds 20.
    series = [
        {"series": BILLING_2XX, "values": "0+1x60"},
        {"series": BILLING_5XX, "values": "0x20 1+1x40"},
    ]
    ticket = _alerts(rules_file, "billing")[1]
    _promtool_test(
        tmp_path,
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "30m", "alertname": "StranglerSLOBurnRate", "exp_alerts": []},
                    {
                        "eval_time": "40m",
                        "alertname": "StranglerSLOBurnRate",
                        "exp_alerts": [_expected(ticket)],
                    },
                ],
                "promql_expr_test": [
                    {
                        "expr": 'slo:sli_error:ratio_rate10m{slo="billing"}',
                        "eval_time": "30m",
                        "exp_samples": [
                            {"labels": 'slo:sli_error:ratio_rate10m{slo="billing"}', "value": 0.5}
                        ],
                    }
                ],
            }
        ],
    )


def test_latency_counts_at_the_bucket_and_only_on_the_slos_side(
    rules_file: Path, tmp_path: Path
) -> None:
    new = 'route="projects.show.api", side="new"'
    legacy = 'route="projects.index", side="legacy"'
    # On new, 4 answers a second: 1 is a 5xx, and 0.5 took longer than 250 ms: 1.5 of 4 bad.
    # Legacy answers only 5xx, all slow: side new's SLO must not see them.
    series = [
        {"series": f'strangler_requests_total{{{new}, stage="canary", code_class="2xx"}}',
         "values": "0+180x60"},
        {"series": f'strangler_requests_total{{{new}, stage="canary", code_class="5xx"}}',
         "values": "0+60x60"},
        {"series": f"strangler_request_duration_seconds_count{{{new}}}", "values": "0+240x60"},
        {"series": f'strangler_request_duration_seconds_bucket{{{new}, le="0.25"}}',
         "values": "0+210x60"},
        {"series": f'strangler_requests_total{{{legacy}, stage="new", code_class="5xx"}}',
         "values": "0+600x60"},
        {"series": f"strangler_request_duration_seconds_count{{{legacy}}}", "values": "0+600x60"},
        {"series": f'strangler_request_duration_seconds_bucket{{{legacy}, le="0.25"}}',
         "values": "0x60"},
    ]  # fmt: skip
    _promtool_test(
        tmp_path,
        rules_file,
        [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        # promtool compares floats exactly; the rates' division is off by 1 ulp.
                        "expr": 'round(slo:sli_error:ratio_rate5m{slo="projects-api"}, 0.0001)',
                        "eval_time": "30m",
                        "exp_samples": [{"labels": '{slo="projects-api"}', "value": 0.375}],
                    }
                ],
                # 37.5 % bad is far over 14.4 x 0.1 %: the 1 h / 5 m page fires (so do the rest).
                "alert_rule_test": [
                    {
                        "eval_time": "30m",
                        "alertname": "StranglerSLOBurnRate",
                        "exp_alerts": [
                            _expected(rule) for rule in _alerts(rules_file, "projects-api")
                        ],
                    }
                ],
            }
        ],
    )


def test_openslo_documents(config_file: Path) -> None:
    result = run_cli("slo", "export", "--openslo", "-c", str(config_file))
    assert result.returncode == 0, result.stderr
    documents = list(yaml.safe_load_all(result.stdout))
    assert [(d["apiVersion"], d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("openslo/v1", "SLO", "projects-api"),
        ("openslo/v1", "SLO", "billing"),
    ]
    projects, billing = (d["spec"] for d in documents)
    assert projects["objectives"][0]["target"] == 0.999
    assert billing["objectives"][0]["target"] == 0.99
    assert billing["timeWindow"] == [{"duration": "7d", "isRolling": True}]
    assert projects["budgetingMethod"] == "Occurrences"
    ratio = projects["indicator"]["spec"]["ratioMetric"]
    assert ratio["counter"] is True
    assert 'code_class="5xx"' in ratio["bad"]["metricSource"]["spec"]["query"]
    assert 'side="new"' in ratio["total"]["metricSource"]["spec"]["query"]
    assert ratio["bad"]["metricSource"]["type"] == "Prometheus"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ((), "exactly one of --prometheus and --openslo"),
        (("--prometheus", "--openslo"), "exactly one of --prometheus and --openslo"),
    ],
)
def test_export_wants_exactly_one_format(
    config_file: Path, flags: tuple[str, ...], message: str
) -> None:
    result = run_cli("slo", "export", "-c", str(config_file), *flags)
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("backends: {legacy: {url: 3}}\nslos: 7\n", "slos"),
        (CONFIG.split("slos:", maxsplit=1)[0], "defines no slos"),
        (CONFIG.replace("latency_ms: 300", "latency_ms: 0.2"), "smallest histogram bucket"),
    ],
)
def test_export_exits_2_on_a_config_it_cannot_export(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(text, encoding="utf-8")
    result = run_cli("slo", "export", "--prometheus", "-c", str(path))
    assert (result.returncode, result.stdout) == (2, "")
    assert message in result.stderr
