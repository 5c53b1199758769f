"""How long one `/metrics` scrape takes when the gateway is big: 4 workers x 2,000 routes, every
route with traffic (answers on legacy, a tenth of them on new too, a tenth shadowed), every
worker's counters and gauges reported.

What is measured: the supervisor's side of a scrape, the same code the admin endpoint runs:
merging each worker's last message into the hub, then rendering the whole document (text format
0.0.4 and OpenMetrics) from it. Goal: a scrape renders in <= 100 ms (median of 15).

Run: `python bench/bench_metrics_scrape.py [--routes 2000] [--workers 4]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from strangler.observe.exposition import MetricsHub
from strangler.observe.metrics import SIDE_GATEWAY, SIDE_LEGACY, SIDE_NEW, WorkerMetrics

GOAL_MS = 100.0
SCRAPES = 15


def worker_message(worker: int, routes: int) -> dict[str, object]:
    """What one worker sends after a second of traffic on every route."""
    metrics = WorkerMetrics()
    for index in range(routes):
        route = f"app.controller{index // 10}.action{index % 10}"
        stage = "canary" if index % 10 == 0 else "shadow" if index % 10 == 1 else "legacy"
        for latency in (0.0004, 0.002, 0.03):
            metrics.request(route, stage, SIDE_LEGACY, 200, latency)
        metrics.request(route, stage, SIDE_LEGACY, 404, 0.001)
        if stage == "canary":
            metrics.request(route, stage, SIDE_NEW, 200, 0.003)
            metrics.request(route, stage, SIDE_NEW, 503, 0.5)
        if stage == "shadow":
            metrics.shadow(route, 0.004)
    metrics.request("_default", "none", SIDE_GATEWAY, 400, 0.0)
    metrics.upstream("legacy", 0.002)
    metrics.upstream("new", 0.003)
    requests, upstream, shadow = metrics.take_delta()
    totals = [
        (("shadow_comparisons_total", f"app.controller{i // 10}.action1", "equal"), 3.0)
        for i in range(0, routes, 10)
    ]
    gauges = [(("route_stage", f"app.controller{i // 10}.action{i % 10}", "legacy"), 1.0)
              for i in range(routes)]  # fmt: skip
    gauges += [(("state_version",), 7.0), (("connections", "open"), 64.0)]
    return {
        "pid": 1_000_000 + worker,  # no such process: no /proc reads in the timing
        "worker": str(worker),
        "requests": requests,
        "upstream": upstream,
        "shadow": shadow,
        "totals": totals,
        "gauges": gauges,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--routes", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    messages = [worker_message(w, args.routes) for w in range(args.workers)]
    hub = MetricsHub(version="bench", compiled=True)
    started = time.perf_counter()
    for index, message in enumerate(messages):
        hub.add(str(index), message)
    merge_ms = (time.perf_counter() - started) * 1000
    results = {}
    for openmetrics in (False, True):
        times, size, lines = [], 0, 0
        for _ in range(SCRAPES):
            started = time.perf_counter()
            body = hub.render(openmetrics=openmetrics)
            times.append((time.perf_counter() - started) * 1000)
            size, lines = len(body), body.count(b"\n")
        results["openmetrics" if openmetrics else "text 0.0.4"] = (times, size, lines)
    print(
        f"metrics scrape: {args.workers} workers x {args.routes:,} routes, all with traffic; "
        f"merging the {args.workers} messages took {merge_ms:.1f} ms"
    )
    verdicts = []
    for name, (times, size, lines) in results.items():
        median = statistics.median(times)
        print(
            f"  {name:<11} {lines:>7,} lines {size / 1024:>7.0f} KiB  "
            f"render median {median:.1f} ms, max {max(times):.1f} ms"
        )
        verdicts.append(median <= GOAL_MS)
    verdict = "PASS" if all(verdicts) else "FAIL"
    print(f"goal\n  {verdict}  scrape renders in <= {GOAL_MS:g} ms (median of {SCRAPES})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
