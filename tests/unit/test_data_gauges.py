"""The data parity gauges: read from a real SQLite store off the loop, rendered by the hub."""

from __future__ import annotations

import asyncio
from pathlib import Path

from strangler.config import parse_config
from strangler.control.data_runs import DataRun
from strangler.control.stores import SqliteShadowStore
from strangler.observe.exposition import MetricsHub
from strangler.runtime.data_gauges import DataGauges

CONFIG = """\
backends: {legacy: {url: "http://127.0.0.1:3000"}}
data:
  legacy: {url: "sqlite:///legacy.db"}
  new: {url: "sqlite:///new.db"}
  tables: [{name: projects, key: id}]
"""


def test_the_gauges_follow_the_newest_run_and_render(tmp_path: Path) -> None:
    store = SqliteShadowStore(tmp_path / "control.db")
    store.add_data_run(DataRun("projects", 1_700_000_000.5, 1.0, 10, 9, 1, 0, 3, True))
    config = parse_config(CONFIG, "s.yaml")

    async def read() -> DataGauges:
        gauges = DataGauges(lambda: store, asyncio.get_running_loop())
        gauges.tick(0.0, config)
        for _ in range(200):
            if gauges.gauges:
                break
            await asyncio.sleep(0.01)
        return gauges

    try:
        gauges = asyncio.run(read())
    finally:
        store.close()
    hub = MetricsHub(version="test", compiled=False)
    hub.add("0", {"pid": 1, "worker": "0", "gauges": gauges.gauges})
    text = hub.render().decode()
    assert 'strangler_data_rows_different{table="projects"} 3' in text
    assert 'strangler_data_rows_missing{table="projects",side="new"} 1' in text
    assert 'strangler_data_rows_missing{table="projects",side="legacy"} 0' in text
    assert 'strangler_data_last_run_timestamp{table="projects"} 1700000000.5' in text
