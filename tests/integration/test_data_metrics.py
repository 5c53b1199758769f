"""The data parity metrics on a real gateway: each table's last `data diff` run, read from the
store by the workers, on `GET /metrics`."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from strangler.control.data_runs import DataRun
from strangler.control.data_watch import DriftUpdate, TableWatchDelta
from strangler.control.stores import SqliteShadowStore
from tests.integration.conftest import GatewayFactory
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

DATA = """\
data:
  legacy: {url: "sqlite:///legacy.db"}
  new: {url: "sqlite:///new.db"}
  tables:
    - {name: projects, key: id, routes: [projects]}
"""


def test_the_last_run_of_each_table_is_a_gauge(
    tmp_path: Path, start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    store = SqliteShadowStore(tmp_path / "strangler.db")
    store.add_data_run(DataRun("projects", 1_700_000_000.0, 2.0, 100, 98, 2, 1, 5, True))
    # What `data watch` keeps: two keys drifted, the newest check 3.5 s after its change.
    drift = [
        DriftUpdate("projects", key, 1_700_000_100.0, "different", {"title": ["a", "b"]})
        for key in ("7", "9")
    ]
    store.save_watch(
        "postgresql:strangler_watch_legacy",
        '{"lsn": "0/16B3748"}',
        drift,
        [TableWatchDelta("projects", 40, 3.5, 1_700_000_100.0)],
        1_700_000_100.0,
    )
    store.close()
    gw = start_gateway(
        legacy=legacy_upstream.url,
        routes='  - {name: projects, match: "GET /projects"}',
        extra=DATA,
    )
    assert gw.admin_url is not None
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def scraped() -> bool:
        text = httpx.get(gw.admin_url + "/metrics", timeout=10, trust_env=False).text
        found.clear()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return ("strangler_data_rows_different", (("table", "projects"),)) in found

    wait_until(scraped, "the data parity gauges")
    assert found[("strangler_data_rows_different", (("table", "projects"),))] == 5
    assert found[("strangler_data_rows_missing", (("side", "new"), ("table", "projects")))] == 2
    assert found[("strangler_data_rows_missing", (("side", "legacy"), ("table", "projects")))] == 1
    assert found[("strangler_data_last_run_timestamp", (("table", "projects"),))] == 1.7e9
    assert found[("strangler_data_watch_drift", (("table", "projects"),))] == 2
    assert found[("strangler_data_watch_lag_seconds", (("table", "projects"),))] == 3.5
