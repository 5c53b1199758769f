"""How the hub reads a gauge that several workers report."""

from __future__ import annotations

from strangler.observe.exposition import MetricsHub


def _healthy(value: float) -> list[tuple[list[str], float]]:
    return [(["backend_server_healthy", "legacy", "10.0.0.11:3000"], value)]


def test_a_server_is_healthy_only_while_every_worker_sends_it_requests() -> None:
    hub = MetricsHub(version="test", compiled=False)
    hub.add("0", {"pid": 1, "worker": "0", "gauges": _healthy(1.0)})
    hub.add("1", {"pid": 2, "worker": "1", "gauges": _healthy(0.0)})
    hub.add("2", {"pid": 3, "worker": "2", "gauges": _healthy(1.0)})
    line = 'strangler_backend_server_healthy{backend="legacy",server="10.0.0.11:3000"}'
    assert f"{line} 0" in hub.render().decode()
    hub.add("1", {"pid": 2, "worker": "1", "gauges": _healthy(1.0)})
    assert f"{line} 1" in hub.render().decode()
