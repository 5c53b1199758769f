"""Proxy benchmark: strangler against nginx and against no proxy at all, in the same run.

What is measured: requests/s, p50 and p99 latency of one small keep-alive GET (a ~250-byte JSON
answer) sent by wrk through three contenders that all reach the same upstream:

- direct:    wrk -> upstream nginx (the floor: what a proxy adds is measured from here)
- nginx:     wrk -> nginx reverse proxy (1 worker, upstream keep-alive) -> upstream nginx
- strangler: wrk -> strangler (`run --workers 1`, 2,000 Rails routes) -> upstream nginx

How: wrk and the upstream nginx share the first core; the proxy under test gets the second core
to itself, so each proxy is measured as one worker on one core. The request path matches one of
the 2,000 generated routes (checked with the gateway's own router before the run), so routing is
paid on every request. Rounds alternate (direct, nginx, strangler, direct, ...) so drift in the
machine hits every contender alike; each run follows an unrecorded warm-up, and the report shows
the median across rounds at 64 connections (throughput) and at 8 (latency added when the proxy
is not saturated). wrk's Lua `done()` hook reports exact microsecond percentiles and the error
counters, so no rounded human-readable units are parsed. Any connect/read/write/timeout error or
>= 400 answer is shown prominently and fails strangler's goals: a proxy that errors is broken,
not fast. (Every contender must answer 200 with the exact body before the load starts.) A run in
which other processes used the cores (kernel busy time minus our processes' CPU time) is flagged.
CPU-seconds per 10k requests come from /proc/<pid>/stat over the measured runs only.

Goals (printed PASS/FAIL; the exit code stays 0 because this is a measurement, not a test):
- 64 connections: strangler req/s >= 0.55 x nginx req/s in every round (the floor), >= 0.70 x
  nginx across rounds (the median: the goal), and strangler p99 <= 2 x nginx p99.
- 8 connections:  strangler p50 <= direct p50 + 0.15 ms.

`--observability` measures what watching the gateway costs: the same gateway with metrics, the
JSON access log (to a file) and tracing (sample_ratio 0.01, to an OTLP sink in the harness)
all off ("obs-off"), with metrics alone ("metrics"), and with all three ("all-on"). Goals at 64
connections: all-on req/s >= 0.95 x obs-off, metrics >= 0.98 x obs-off.

`--shadow` measures the shadow scenario instead: the route in stage `shadow` (every request
mirrored to a second upstream nginx and the answers compared) against the same route in stage
`legacy`, and nginx's own `mirror` as the reference. Goals: 64 connections: shadow-on req/s
>= 0.55 x shadow-off and >= 1.5 x nginx-mirror; 8 connections: shadow-on p99 <= 1.5 x
shadow-off. The gateway's `shadow results {...}` line at stop must show comparisons.

`--tls` measures the client side over TLS: wrk speaks HTTPS (keep-alive, so mostly record
encryption, a handshake per connection) to nginx and to the gateway, both serving the same
self-signed ECDSA P-256 certificate and forwarding in plain HTTP to the upstream nginx; `direct`
(plain) stays as the floor. Goals at 64 connections: strangler-tls req/s >= 0.55 x nginx-tls in
every round and p99 <= 2 x nginx-tls. Then new connections: wrk sends `Connection: close`, so
every request pays a TLS handshake: an abbreviated one, since wrk resumes the session it was
given first (the servers' session stats count them as hits), as a returning browser does; the
report shows new connections (handshakes) per second for both and their ratio.

Run: `python bench/proxy_bench.py [--duration 10] [--rounds 3] [--quick] [--skip-strangler]
[--shadow | --observability | --tls]`.
Needs nginx, wrk and taskset, and two cores. Exit codes: 0 measured (whatever the verdicts),
1 something could not run, 2 a tool or the second core is missing, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from proxy_lab import (
    BenchError,
    Certificate,
    Lab,
    MissingToolError,
    Server,
    cores_busy_s,
    cpu_seconds,
    find_tools,
    free_port,
    gateway_yaml,
    launch_gateway,
    launch_nginx,
    make_certificate,
    mirror_proxy_conf,
    nginx_temp_paths,
    own_cpu_s,
    pick_cores,
    process_tree,
    proxy_conf,
    rss_kib,
    serving,
    tool_version,
    upstream_conf,
)
from rails_routes import generate_rails_routes_yaml
from strangler.config import parse_config
from strangler.errors import StranglerError
from strangler.runtime.snapshot_build import build_snapshot

ROUTE_COUNT = 2_000
CONNECTION_COUNTS = (64, 8)
# `--tls`: clients opening connections at once in the handshake runs.
HANDSHAKE_CONNECTIONS = 16
RESULTS_DIR = Path(__file__).resolve().parent / "results"
# The goals (see the module docstring).
MIN_RPS_VS_NGINX = 0.55
GOAL_RPS_VS_NGINX = 0.70
MAX_P99_VS_NGINX = 2.0
MAX_P50_OVER_DIRECT_MS = 0.15
# The shadow goals (`--shadow`): the cost of mirroring and diffing every request.
MIN_SHADOW_ON_VS_OFF_RPS = 0.55
MIN_SHADOW_ON_VS_NGINX_MIRROR_RPS = 1.5
MAX_SHADOW_ON_VS_OFF_P99 = 1.5
SHADOW_RESULTS_MARKER = "shadow results "
# The observability goals (`--observability`): what metrics, the access log and tracing cost.
MIN_ALL_ON_VS_OFF_RPS = 0.95
MIN_METRICS_VS_OFF_RPS = 0.98
OBSERVABILITY_OFF = "metrics: {enabled: false}\n"
OBSERVABILITY_METRICS = "metrics: {enabled: true}\n"
# A run in which other processes took more than this share of the two cores is flagged: on a
# shared 2-core machine that skews req/s and above all p99.
OTHER_CPU_MAX = 0.05

# wrk calls done() once, after the run; the one line it prints is all the harness parses.
WRK_MARKER = "STRANGLER_BENCH "
WRK_DONE_LUA = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "STRANGLER_BENCH {\"requests\":%d,\"duration_us\":%d,\"p50_us\":%.1f,\"p99_us\":%.1f,"
    .. "\"mean_us\":%.1f,\"max_us\":%.1f,\"connect\":%d,\"read\":%d,\"write\":%d,"
    .. "\"status\":%d,\"timeout\":%d}\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class Verdict(enum.StrEnum):
    PASS = "PASS"
    FAIL = "FAIL"
    SKIP = "SKIP"


# --- the route -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RouteChoice:
    name: str
    match: str
    path: str


def pick_route(routes_yaml: str) -> RouteChoice:
    """The middle JSON API show route (`GET /api/v1/things/:id(.:format)`) and a path for it.

    The show of a top-level resource is the commonest Rails API read, and the upstream answers
    JSON; the middle of the table is neither the luckiest nor the unluckiest place for a matcher.
    Falls back to any show route if the table has no API one.
    """
    routes = yaml.safe_load("routes:\n" + routes_yaml)["routes"]
    shows = [r for r in routes if re.fullmatch(r"GET(\|HEAD)? \S*/:id\(\.:format\)", r["match"])]
    api_shows = [r for r in shows if re.fullmatch(r"\S+ /api/[^:]*:id\(\.:format\)", r["match"])]
    candidates = api_shows or shows
    if not candidates:
        raise BenchError("the generated routes hold no `GET .../:id(.:format)` show route")
    route = candidates[len(candidates) // 2]
    pattern = route["match"].split(" ", 1)[1]
    path = re.sub(r":\w+", "42", pattern.replace("(.:format)", ".json"))
    return RouteChoice(str(route["name"]), str(route["match"]), path)


def verify_route(routes_yaml: str, choice: RouteChoice) -> None:
    """Check with the gateway's own config loader and router that GET path picks the route."""
    text = gateway_yaml(port=1, upstream_port=1, routes_yaml=routes_yaml)
    try:
        snapshot = build_snapshot(parse_config(text, "<bench>"), source="<bench>")
    except StranglerError as exc:
        raise BenchError(f"the generated config does not load: {exc}") from exc
    decision = snapshot.table.decide("GET", choice.path)
    if decision.route != choice.name:
        raise BenchError(f"GET {choice.path} routes to {decision.route!r}, not {choice.name!r}")


def shadow_routes_yaml(routes_yaml: str, choice: RouteChoice) -> str:
    """The same table with the benchmarked route in stage `shadow` instead of `legacy`."""
    prefix = f"  - {{name: {choice.name},"
    lines = routes_yaml.splitlines()
    hits = [i for i, line in enumerate(lines) if line.startswith(prefix)]
    if len(hits) != 1 or not lines[hits[0]].endswith("stage: legacy}"):
        raise BenchError(f"cannot find route {choice.name} in stage legacy in the generated table")
    lines[hits[0]] = lines[hits[0]].removesuffix("stage: legacy}") + "stage: shadow}"
    return "\n".join(lines) + "\n"


def verify_shadow_route(routes_yaml: str, choice: RouteChoice) -> None:
    """Check with the gateway's own loader that the route is shadowed to the `new` backend."""
    text = gateway_yaml(port=1, upstream_port=1, routes_yaml=routes_yaml, new_port=2)
    try:
        snapshot = build_snapshot(parse_config(text, "<bench>"), source="<bench>")
    except StranglerError as exc:
        raise BenchError(f"the shadow config does not load: {exc}") from exc
    decision = snapshot.table.decide("GET", choice.path)
    stage = decision.stage.value if decision.stage is not None else None
    is_shadowed = stage == "shadow" and decision.shadow_backend == "new"
    if decision.route != choice.name or not is_shadowed:
        raise BenchError(f"GET {choice.path} is not shadowed by {choice.name!r}: {decision}")


def parse_shadow_results(log_text: str, route: str) -> dict[str, Any] | None:
    """The route's `shadow results {...}` JSON the gateway logs when it stops, or None."""
    for line in log_text.splitlines():
        _, marker, payload = line.partition(SHADOW_RESULTS_MARKER)
        if marker:
            with contextlib.suppress(ValueError):
                stats = json.loads(payload)
                if isinstance(stats, dict) and stats.get("route") == route:
                    return stats
    return None


# --- wrk -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One wrk run as its Lua done() hook reported it, and how busy the rest of the machine was."""

    requests: int
    duration_us: int
    p50_us: float
    p99_us: float
    mean_us: float
    max_us: float
    connect: int
    read: int
    write: int
    status: int
    timeout: int
    # Not from wrk: the share of the two cores that processes outside the benchmark used meanwhile.
    other_cpu_share: float = 0.0

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6)

    @property
    def errors(self) -> dict[str, int]:
        """The non-zero error counters; wrk counts an answer >= 400 under `status`."""
        counts = {
            "connect": self.connect,
            "read": self.read,
            "write": self.write,
            "status>=400": self.status,
            "timeout": self.timeout,
        }
        return {kind: n for kind, n in counts.items() if n}


def parse_wrk(output: str) -> WrkRun:
    for line in output.splitlines():
        if line.startswith(WRK_MARKER):
            return WrkRun(**json.loads(line.removeprefix(WRK_MARKER)))
    raise BenchError(f"wrk printed no {WRK_MARKER.strip()} line:\n{output}")


def run_wrk(
    lab: Lab,
    port: int,
    connections: int,
    duration_s: int,
    scheme: str = "http",
    *,
    is_closing: bool = False,
) -> WrkRun:
    """`is_closing`: every request says `Connection: close`, so wrk opens a connection per
    request (with https, a handshake each, which wrk makes a resumed one)."""
    url = f"{scheme}://127.0.0.1:{port}{lab.path}"
    lua = lab.workdir / "report.lua"
    argv = [lab.wrk, "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", "-s", str(lua)]
    if is_closing:
        argv += ["-H", "Connection: close"]
    done = subprocess.run(
        lab.pinned(lab.load_core, *argv, url), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"wrk exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return parse_wrk(done.stdout)


# --- the measurement -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Summary:
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass(slots=True)
class Contender:
    """What wrk sends load to; `proxy_pid` roots the process tree whose CPU is accounted."""

    name: str
    port: int
    proxy_pid: int | None
    runs: dict[int, list[WrkRun]] = field(default_factory=dict)
    scheme: str = "http"
    cpu_s: float = 0.0
    requests: int = 0
    # `--tls`: runs in which every request opened a new connection (a resumed handshake).
    handshake_runs: list[WrkRun] = field(default_factory=list)

    def median(self, connections: int) -> Summary:
        runs = self.runs[connections]
        return Summary(
            rps=statistics.median(r.rps for r in runs),
            p50_ms=statistics.median(r.p50_us for r in runs) / 1000,
            p99_ms=statistics.median(r.p99_us for r in runs) / 1000,
        )

    def errors(self, connections: int) -> dict[str, int]:
        total: dict[str, int] = {}
        for run in self.runs[connections]:
            for kind, n in run.errors.items():
                total[kind] = total.get(kind, 0) + n
        return total


@dataclass(frozen=True, slots=True)
class Settings:
    duration_s: int
    rounds: int
    warmup_s: int


def measure(
    lab: Lab, settings: Settings, contenders: list[Contender], servers: list[Server]
) -> None:
    """Alternating rounds per connection count; fills each contender's runs and CPU counters."""
    for connections in CONNECTION_COUNTS:
        print(
            f"\n== {connections} connections: {settings.rounds} round(s) of "
            f"{settings.duration_s} s, each after {settings.warmup_s} s of warm-up",
            flush=True,
        )
        for round_no in range(1, settings.rounds + 1):
            for contender in contenders:
                run = measure_one(lab, settings, contender, connections, servers)
                check_alive(servers)
                contender.runs.setdefault(connections, []).append(run)
                print(
                    f"  round {round_no}  {contender.name:<12} {run.rps:>10,.0f} req/s  "
                    f"p50 {run.p50_us / 1000:6.3f} ms  p99 {run.p99_us / 1000:6.3f} ms"
                    f"{run_flags(run)}",
                    flush=True,
                )


def measure_one(
    lab: Lab, settings: Settings, contender: Contender, connections: int, servers: list[Server]
) -> WrkRun:
    """One warm-up and one measured run; accounts the proxy's CPU and other processes' CPU."""
    if settings.warmup_s:
        run_wrk(lab, contender.port, connections, settings.warmup_s, contender.scheme)
    cores = (lab.load_core, lab.proxy_core)
    busy_before, own_before = cores_busy_s(cores), own_cpu_s(servers)
    proxy_before = cpu_seconds(contender.proxy_pid) if contender.proxy_pid else 0.0
    run = run_wrk(lab, contender.port, connections, settings.duration_s, contender.scheme)
    if contender.proxy_pid:
        contender.cpu_s += cpu_seconds(contender.proxy_pid) - proxy_before
        contender.requests += run.requests
    other_s = (cores_busy_s(cores) - busy_before) - (own_cpu_s(servers) - own_before)
    other_share = max(0.0, other_s) / (len(cores) * run.duration_us / 1e6)
    return replace(run, other_cpu_share=other_share)


def run_flags(run: WrkRun) -> str:
    flags = []
    if run.errors:
        flags.append(f"!!! ERRORS {run.errors}")
    if run.other_cpu_share > OTHER_CPU_MAX:
        flags.append(f"!!! other processes took {run.other_cpu_share:.0%} of the cores")
    return "   " + "; ".join(flags) if flags else ""


def check_alive(servers: list[Server]) -> None:
    for server in servers:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with code {server.proc.returncode} under load:"
                f"\n{server.log_tail()}"
            )


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Goal:
    name: str
    verdict: Verdict
    detail: str


@dataclass(frozen=True, slots=True)
class ProxyCost:
    """What one proxy cost: CPU over its measured runs (not warm-ups), and its RSS after them."""

    name: str
    rss_kib: dict[int, int]
    cpu_s: float
    requests: int

    @property
    def cpu_s_per_10k_requests(self) -> float | None:
        return self.cpu_s / self.requests * 10_000 if self.requests else None

    @property
    def cpu_us_per_request(self) -> float | None:
        return self.cpu_s / self.requests * 1e6 if self.requests else None


def proxy_costs(contenders: list[Contender]) -> list[ProxyCost]:
    """Read while the proxies still run: the RSS of every process in each proxy's tree."""
    return [
        ProxyCost(c.name, {p: rss_kib(p) for p in process_tree(c.proxy_pid)}, c.cpu_s, c.requests)
        for c in contenders
        if c.proxy_pid is not None
    ]


def ratios(by_name: dict[str, Contender], connections: int) -> dict[str, float]:
    if "shadow-on" in by_name:
        return shadow_ratios(by_name, connections)
    if "obs-off" in by_name:
        return observability_ratios(by_name, connections)
    if "strangler-tls" in by_name:
        return tls_ratios(by_name, connections)
    if "strangler" not in by_name:
        return {}
    s = by_name["strangler"].median(connections)
    n = by_name["nginx"].median(connections)
    d = by_name["direct"].median(connections)
    return {
        "strangler_over_nginx_rps": s.rps / n.rps,
        "strangler_over_nginx_p99": s.p99_ms / n.p99_ms,
        "strangler_over_direct_rps": s.rps / d.rps,
        "strangler_minus_direct_p50_ms": s.p50_ms - d.p50_ms,
    }


def tls_ratios(by_name: dict[str, Contender], connections: int) -> dict[str, float]:
    s = by_name["strangler-tls"].median(connections)
    n = by_name["nginx-tls"].median(connections)
    d = by_name["direct"].median(connections)
    return {
        "strangler_tls_over_nginx_tls_rps": s.rps / n.rps,
        "strangler_tls_over_nginx_tls_p99": s.p99_ms / n.p99_ms,
        "strangler_tls_minus_direct_p50_ms": s.p50_ms - d.p50_ms,
        "nginx_tls_minus_direct_p50_ms": n.p50_ms - d.p50_ms,
    }


def round_ratios(mine: Contender, theirs: Contender, connections: int) -> list[float]:
    """req/s of each round against the other contender's in the same round (rounds alternate,
    so each pair saw the same state of the machine)."""
    pairs = zip(mine.runs[connections], theirs.runs[connections], strict=True)
    return [m.rps / t.rps for m, t in pairs]


def _every_round_goal(mine: Contender, theirs: Contender) -> Goal:
    each = round_ratios(mine, theirs, 64)
    return _goal(
        f"64c req/s >= {MIN_RPS_VS_NGINX} x {theirs.name} every round",
        [mine],
        64,
        min(each) >= MIN_RPS_VS_NGINX,
        "rounds " + ", ".join(f"{r:.2f}" for r in each) + f" x {theirs.name}",
    )


def handshake_ratio(by_name: dict[str, Contender]) -> float | None:
    mine, theirs = by_name["strangler-tls"], by_name["nginx-tls"]
    if not mine.handshake_runs or not theirs.handshake_runs:
        return None
    return statistics.median(r.rps for r in mine.handshake_runs) / statistics.median(
        r.rps for r in theirs.handshake_runs
    )


def check_tls_goals(by_name: dict[str, Contender]) -> list[Goal]:
    r64 = tls_ratios(by_name, 64)
    p99 = r64["strangler_tls_over_nginx_tls_p99"]
    strangler = by_name["strangler-tls"]
    return [
        _every_round_goal(strangler, by_name["nginx-tls"]),
        _goal(
            f"64c p99 <= {MAX_P99_VS_NGINX} x nginx-tls",
            [strangler],
            64,
            p99 <= MAX_P99_VS_NGINX,
            f"{p99:.2f} x nginx-tls",
        ),
    ]


def shadow_ratios(by_name: dict[str, Contender], connections: int) -> dict[str, float]:
    on = by_name["shadow-on"].median(connections)
    off = by_name["shadow-off"].median(connections)
    mirror = by_name["nginx-mirror"].median(connections)
    return {
        "shadow_on_over_off_rps": on.rps / off.rps,
        "shadow_on_over_off_p99": on.p99_ms / off.p99_ms,
        "shadow_on_over_nginx_mirror_rps": on.rps / mirror.rps,
    }


def observability_ratios(by_name: dict[str, Contender], connections: int) -> dict[str, float]:
    off = by_name["obs-off"].median(connections)
    metrics = by_name["metrics"].median(connections)
    on = by_name["all-on"].median(connections)
    return {
        "metrics_over_off_rps": metrics.rps / off.rps,
        "all_on_over_off_rps": on.rps / off.rps,
        "all_on_over_off_p99": on.p99_ms / off.p99_ms,
    }


def check_observability_goals(by_name: dict[str, Contender]) -> list[Goal]:
    r64 = observability_ratios(by_name, 64)
    off = by_name["obs-off"]
    metrics, on = r64["metrics_over_off_rps"], r64["all_on_over_off_rps"]
    return [
        _goal(
            f"64c metrics >= {MIN_METRICS_VS_OFF_RPS} x off",
            [by_name["metrics"], off],
            64,
            metrics >= MIN_METRICS_VS_OFF_RPS,
            f"{metrics:.3f} x obs-off",
        ),
        _goal(
            f"64c all-on >= {MIN_ALL_ON_VS_OFF_RPS} x off",
            [by_name["all-on"], off],
            64,
            on >= MIN_ALL_ON_VS_OFF_RPS,
            f"{on:.3f} x obs-off",
        ),
    ]


def check_shadow_goals(by_name: dict[str, Contender], shadow: dict[str, Any] | None) -> list[Goal]:
    on, off = by_name["shadow-on"], by_name["shadow-off"]
    r64, r8 = shadow_ratios(by_name, 64), shadow_ratios(by_name, 8)
    vs_off, vs_mirror = r64["shadow_on_over_off_rps"], r64["shadow_on_over_nginx_mirror_rps"]
    p99 = r8["shadow_on_over_off_p99"]
    goals = [
        _goal(
            f"64c shadow-on >= {MIN_SHADOW_ON_VS_OFF_RPS} x off",
            [on, off],
            64,
            vs_off >= MIN_SHADOW_ON_VS_OFF_RPS,
            f"{vs_off:.3f} x shadow-off",
        ),
        _goal(
            f"64c shadow-on >= {MIN_SHADOW_ON_VS_NGINX_MIRROR_RPS} x mirror",
            [on, by_name["nginx-mirror"]],
            64,
            vs_mirror >= MIN_SHADOW_ON_VS_NGINX_MIRROR_RPS,
            f"{vs_mirror:.3f} x nginx-mirror",
        ),
        _goal(
            f"8c p99 on <= {MAX_SHADOW_ON_VS_OFF_P99} x off",
            [on, off],
            8,
            p99 <= MAX_SHADOW_ON_VS_OFF_P99,
            f"{p99:.3f} x shadow-off",
        ),
    ]
    name = "shadow results at stop"
    if shadow is None:
        goals.append(Goal(name, Verdict.FAIL, "no `shadow results` line for the route"))
    else:
        compared, different = int(shadow["compared"]), int(shadow["different"])
        is_met = compared > 0 and different == 0 and not shadow["dropped"]
        detail = (
            f"mirrored {shadow['mirrored']}, compared {compared}, equal {shadow['equal']}, "
            f"different {different}, dropped {shadow['dropped'] or 'none'}"
        )
        goals.append(Goal(name, Verdict.PASS if is_met else Verdict.FAIL, detail))
    return goals


def check_goals(by_name: dict[str, Contender]) -> list[Goal]:
    names = (
        f"64c req/s >= {MIN_RPS_VS_NGINX} x nginx every round",
        f"64c req/s >= {GOAL_RPS_VS_NGINX} x nginx (median)",
        f"64c p99 <= {MAX_P99_VS_NGINX} x nginx",
        f"8c p50 <= direct + {MAX_P50_OVER_DIRECT_MS} ms",
    )
    strangler = by_name.get("strangler")
    if strangler is None:
        return [Goal(name, Verdict.SKIP, "strangler not measured") for name in names]
    r64, r8 = ratios(by_name, 64), ratios(by_name, 8)
    rps, p99 = r64["strangler_over_nginx_rps"], r64["strangler_over_nginx_p99"]
    p50_over = r8["strangler_minus_direct_p50_ms"]
    return [
        _every_round_goal(strangler, by_name["nginx"]),
        _goal(names[1], [strangler], 64, rps >= GOAL_RPS_VS_NGINX, f"{rps:.2f} x nginx"),
        _goal(names[2], [strangler], 64, p99 <= MAX_P99_VS_NGINX, f"{p99:.2f} x nginx"),
        _goal(names[3], [strangler], 8, p50_over <= MAX_P50_OVER_DIRECT_MS, f"{p50_over:+.3f} ms"),
    ]


def _goal(
    name: str, contenders: list[Contender], connections: int, is_met: bool, detail: str
) -> Goal:
    """A goal met with errors is not met: a proxy that errors is broken, not fast."""
    for contender in contenders:
        if errors := contender.errors(connections):
            return Goal(name, Verdict.FAIL, f"{detail}, but {contender.name} ERRORED: {errors}")
    return Goal(name, Verdict.PASS if is_met else Verdict.FAIL, detail)


def print_report(
    contenders: list[Contender],
    costs: list[ProxyCost],
    goals: list[Goal],
    shadow: dict[str, Any] | None = None,
) -> None:
    by_name = {c.name: c for c in contenders}
    for connections in CONNECTION_COUNTS:
        print(f"\n{connections} connections, median across rounds")
        print(f"  {'':<12} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8}  errors")
        for c in contenders:
            m, errors = c.median(connections), c.errors(connections)
            shown = f"!!! {errors} !!!" if errors else "none"
            print(f"  {c.name:<12} {m.rps:>10,.0f} {m.p50_ms:>8.3f} {m.p99_ms:>8.3f}  {shown}")
        r = ratios(by_name, connections)
        if "all_on_over_off_rps" in r:
            print(
                f"  metrics/obs-off: req/s {r['metrics_over_off_rps']:.3f}x;  "
                f"all-on/obs-off: req/s {r['all_on_over_off_rps']:.3f}x, "
                f"p99 {r['all_on_over_off_p99']:.2f}x"
            )
        elif "strangler_tls_over_nginx_tls_rps" in r:
            print(
                f"  strangler-tls/nginx-tls: req/s {r['strangler_tls_over_nginx_tls_rps']:.2f}x, "
                f"p99 {r['strangler_tls_over_nginx_tls_p99']:.2f}x;  p50 over direct (plain): "
                f"strangler-tls {r['strangler_tls_minus_direct_p50_ms']:+.3f} ms, "
                f"nginx-tls {r['nginx_tls_minus_direct_p50_ms']:+.3f} ms"
            )
        elif "shadow_on_over_off_rps" in r:
            print(
                f"  shadow-on/shadow-off: req/s {r['shadow_on_over_off_rps']:.2f}x, "
                f"p99 {r['shadow_on_over_off_p99']:.2f}x;  "
                f"shadow-on/nginx-mirror: req/s {r['shadow_on_over_nginx_mirror_rps']:.2f}x"
            )
        elif r:
            print(
                f"  strangler/nginx: req/s {r['strangler_over_nginx_rps']:.2f}x, "
                f"p99 {r['strangler_over_nginx_p99']:.2f}x;  "
                f"strangler/direct: req/s {r['strangler_over_direct_rps']:.2f}x;  "
                f"p50 strangler - direct: {r['strangler_minus_direct_p50_ms']:+.3f} ms"
            )
    if any(c.handshake_runs for c in contenders):
        print("\nnew connections (Connection: close: a resumed TLS handshake each), median")
        for c in contenders:
            if c.handshake_runs:
                rate = statistics.median(r.rps for r in c.handshake_runs)
                errors = {k: v for r in c.handshake_runs for k, v in r.errors.items()}
                shown = f"  !!! {errors} !!!" if errors else ""
                print(f"  {c.name:<14} {rate:>10,.0f} handshakes/s{shown}")
        if (ratio := handshake_ratio(by_name)) is not None:
            print(f"  strangler-tls/nginx-tls: handshakes/s {ratio:.2f}x")
    print("\nproxy cost (CPU over the measured runs; RSS after them)")
    for cost in costs:
        rss = ", ".join(f"pid {pid} {kib / 1024:.1f} MiB" for pid, kib in cost.rss_kib.items())
        cpu = cost.cpu_s_per_10k_requests
        cpu_text = (
            f"{cost.cpu_us_per_request:.1f} CPU-µs per request ({cpu:.3f} CPU-s per 10k)"
            if cpu is not None
            else "no requests"
        )
        print(f"  {cost.name:<12} {cpu_text};  RSS {rss}")
    runs = [run for c in contenders for per_count in c.runs.values() for run in per_count]
    if shared := sum(run.other_cpu_share > OTHER_CPU_MAX for run in runs):
        print(
            f"\n!!! {shared} of {len(runs)} runs shared the cores with other processes: "
            "those figures are skewed, p99 most of all; rerun on an idle machine"
        )
    if shadow is not None:
        print(
            f"\nshadow results of route {shadow['route']} (shadow-on gateway, logged at stop): "
            f"mirrored {shadow['mirrored']}, compared {shadow['compared']}, "
            f"equal {shadow['equal']}, different {shadow['different']}, "
            f"dropped {shadow['dropped'] or 'none'}"
        )
    print("\ngoals")
    for goal in goals:
        print(f"  {goal.verdict:<4}  {goal.name:<44} {goal.detail}")


def write_json(
    path: Path,
    meta: dict[str, object],
    contenders: list[Contender],
    costs: list[ProxyCost],
    goals: list[Goal],
) -> None:
    by_name = {c.name: c for c in contenders}
    results = {
        str(n): {
            "contenders": {
                c.name: {
                    "median": asdict(c.median(n)),
                    "errors": c.errors(n),
                    "runs": [asdict(r) | {"rps": r.rps} for r in c.runs[n]],
                }
                for c in contenders
            },
            "ratios": ratios(by_name, n),
        }
        for n in CONNECTION_COUNTS
    }
    document = {
        **meta,
        "results": results,
        "proxy_costs": [
            asdict(c)
            | {
                "cpu_s_per_10k_requests": c.cpu_s_per_10k_requests,
                "cpu_us_per_request": c.cpu_us_per_request,
            }
            for c in costs
        ],
        "goals": [asdict(g) for g in goals],
    }
    if any(c.handshake_runs for c in contenders):
        document["handshakes"] = {
            "connections": HANDSHAKE_CONNECTIONS,
            "runs": {
                c.name: [asdict(r) | {"rps": r.rps} for r in c.handshake_runs]
                for c in contenders
                if c.handshake_runs
            },
            "strangler_tls_over_nginx_tls": handshake_ratio(by_name),
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


# --- main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n", 1)[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=2, help="unrecorded seconds before each run")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round of 3 s")
    parser.add_argument(
        "--skip-strangler",
        action="store_true",
        help="measure only direct and nginx (to debug the harness)",
    )
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="measure the shadow scenario instead: stage shadow vs legacy vs nginx mirror",
    )
    parser.add_argument(
        "--observability",
        action="store_true",
        help="measure what metrics, the access log and tracing cost (all off vs on)",
    )
    parser.add_argument(
        "--each",
        action="store_true",
        help="with --observability: also the access log alone and tracing alone",
    )
    parser.add_argument(
        "--tls",
        action="store_true",
        help="measure HTTPS clients instead: strangler's tls: listener vs nginx with ssl",
    )
    args = parser.parse_args(argv)
    if sum((args.shadow, args.observability, args.tls)) > 1:
        parser.error("--shadow, --observability and --tls are separate runs")
    if (args.shadow or args.observability or args.tls) and args.skip_strangler:
        parser.error("--shadow measures strangler: it does not go with --skip-strangler")
    if args.quick:
        args.rounds, args.duration = 1, 3
    if args.duration < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--duration and --rounds must be >= 1, --warmup >= 0")
    return args


def run(args: argparse.Namespace) -> int:
    nginx, wrk, taskset = find_tools()
    load_core, proxy_core = pick_cores()
    # The harness waits on wrk and reads gateway output: keep it off the proxy's core.
    os.sched_setaffinity(0, {load_core})
    routes_yaml = generate_rails_routes_yaml(ROUTE_COUNT)
    route = pick_route(routes_yaml)
    verify_route(routes_yaml, route)
    if args.shadow:
        verify_shadow_route(shadow_routes_yaml(routes_yaml, route), route)
    settings = Settings(args.duration, args.rounds, args.warmup)
    meta: dict[str, object] = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": asdict(settings),
        "route": asdict(route) | {"table_size": ROUTE_COUNT},
        "cores": {"load (wrk + upstream)": load_core, "proxy under test": proxy_core},
        "versions": {
            "nginx": tool_version(nginx, "-v"),
            "wrk": tool_version(wrk, "-v"),
            "python": sys.version.split()[0],
        },
    }
    print(f"GET {route.path} -> route {route.name} ({route.match}), one of {ROUTE_COUNT:,}")
    print(f"cores: wrk + upstream nginx on {load_core}, proxy under test on {proxy_core}")
    shadow: dict[str, Any] | None = None

    with tempfile.TemporaryDirectory(prefix="strangler-bench-") as tmp:
        workdir = Path(tmp)
        workdir.chmod(0o755)  # nginx started by root runs its workers as `nobody`
        (workdir / "report.lua").write_text(WRK_DONE_LUA)
        lab = Lab(nginx, wrk, taskset, load_core, proxy_core, workdir, route.path)
        if args.shadow:
            contenders, costs, shadow = measure_shadow(lab, settings, routes_yaml, route)
        elif args.observability:
            contenders, costs = measure_observability(lab, settings, routes_yaml, each=args.each)
        elif args.tls:
            contenders, costs = measure_tls(lab, settings, routes_yaml)
        else:
            contenders, costs = measure_all(lab, settings, routes_yaml, args.skip_strangler)

    by_name = {c.name: c for c in contenders}
    if args.shadow:
        goals = check_shadow_goals(by_name, shadow)
    elif args.observability:
        goals = check_observability_goals(by_name)
    elif args.tls:
        goals = check_tls_goals(by_name)
    else:
        goals = check_goals(by_name)
    print_report(contenders, costs, goals, shadow)
    kind = "proxy-shadow" if args.shadow else "proxy"
    if args.observability:
        kind = "proxy-observability"
    if args.tls:
        kind = "proxy-tls"
    out = RESULTS_DIR / f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    if args.shadow:
        meta["shadow_results"] = shadow
    write_json(out, meta, contenders, costs, goals)
    print(f"\nresults: {out}")
    return 0


def measure_all(
    lab: Lab, settings: Settings, routes_yaml: str, skip_strangler: bool
) -> tuple[list[Contender], list[ProxyCost]]:
    """Start the servers, measure every contender, read the proxies' costs, stop everything."""
    nginx_v = subprocess.run([lab.nginx, "-V"], capture_output=True, text=True, check=False).stderr
    up_dir, px_dir = lab.workdir / "upstream", lab.workdir / "proxy"
    up_dir.mkdir()
    px_dir.mkdir()
    up_port, px_port, gw_port = free_port(), free_port(), free_port()
    up_conf = upstream_conf(up_dir, nginx_temp_paths(nginx_v, up_dir), up_port)
    px_conf = proxy_conf(px_dir, nginx_temp_paths(nginx_v, px_dir), px_port, up_port)
    with contextlib.ExitStack() as stack:
        upstream = launch_nginx(
            lab, "upstream nginx", up_dir, up_conf, port=up_port, core=lab.load_core
        )
        servers = [stack.enter_context(serving(upstream, lab.load_core, lab.path))]
        proxy = launch_nginx(lab, "nginx proxy", px_dir, px_conf, port=px_port, core=lab.proxy_core)
        servers.append(stack.enter_context(serving(proxy, lab.proxy_core, lab.path)))
        contenders = [
            Contender("direct", up_port, None),
            Contender("nginx", px_port, proxy.proc.pid),
        ]
        if not skip_strangler:
            gateway = launch_gateway(lab, gw_port, up_port, routes_yaml)
            servers.append(stack.enter_context(serving(gateway, lab.proxy_core, lab.path)))
            contenders.append(Contender("strangler", gw_port, gateway.proc.pid))
        measure(lab, settings, contenders, servers)
        return contenders, proxy_costs(contenders)


def measure_tls(
    lab: Lab, settings: Settings, routes_yaml: str
) -> tuple[list[Contender], list[ProxyCost]]:
    """The client side over TLS: nginx with `listen ... ssl` and the gateway's `tls:` listener,
    one certificate, both forwarding in plain HTTP to the upstream nginx."""
    nginx_v = subprocess.run([lab.nginx, "-V"], capture_output=True, text=True, check=False).stderr
    up_dir, px_dir = lab.workdir / "upstream", lab.workdir / "proxy-tls"
    up_dir.mkdir()
    px_dir.mkdir()
    certificate: Certificate = make_certificate(lab.workdir)
    up_port, px_port, gw_port, gw_tls_port = free_port(), free_port(), free_port(), free_port()
    up_conf = upstream_conf(up_dir, nginx_temp_paths(nginx_v, up_dir), up_port)
    px_conf = proxy_conf(
        px_dir, nginx_temp_paths(nginx_v, px_dir), px_port, up_port, tls=certificate
    )
    with contextlib.ExitStack() as stack:
        upstream = launch_nginx(
            lab, "upstream nginx", up_dir, up_conf, port=up_port, core=lab.load_core
        )
        servers = [stack.enter_context(serving(upstream, lab.load_core, lab.path))]
        proxy = launch_nginx(lab, "nginx-tls", px_dir, px_conf, port=px_port, core=lab.proxy_core)
        proxy.tls = certificate.client
        servers.append(stack.enter_context(serving(proxy, lab.proxy_core, lab.path)))
        gateway = launch_gateway(
            lab, gw_port, up_port, routes_yaml, name="strangler-tls", tls=(gw_tls_port, certificate)
        )
        servers.append(stack.enter_context(serving(gateway, lab.proxy_core, lab.path)))
        contenders = [
            Contender("direct", up_port, None),
            Contender("nginx-tls", px_port, proxy.proc.pid, scheme="https"),
            Contender("strangler-tls", gw_tls_port, gateway.proc.pid, scheme="https"),
        ]
        measure(lab, settings, contenders, servers)
        measure_handshakes(lab, settings, contenders[1:], servers)
        return contenders, proxy_costs(contenders)


def measure_handshakes(
    lab: Lab, settings: Settings, contenders: list[Contender], servers: list[Server]
) -> None:
    """Alternating rounds in which every request opens a connection: handshakes/s. Not part of
    the CPU accounting (that is the keep-alive runs')."""
    print(
        f"\n== new connections (Connection: close), {HANDSHAKE_CONNECTIONS} at a time: "
        f"{settings.rounds} round(s) of {settings.duration_s} s",
        flush=True,
    )
    for round_no in range(1, settings.rounds + 1):
        for contender in contenders:
            # An unrecorded warm-up, then the measured run.
            for seconds in (settings.warmup_s, settings.duration_s):
                if seconds:
                    run = run_wrk(
                        lab,
                        contender.port,
                        HANDSHAKE_CONNECTIONS,
                        seconds,
                        contender.scheme,
                        is_closing=True,
                    )
            check_alive(servers)
            contender.handshake_runs.append(run)
            print(
                f"  round {round_no}  {contender.name:<14} {run.rps:>10,.0f} handshakes/s  "
                f"p50 {run.p50_us / 1000:6.3f} ms{run_flags(run)}",
                flush=True,
            )


def measure_shadow(
    lab: Lab, settings: Settings, routes_yaml: str, route: RouteChoice
) -> tuple[list[Contender], list[ProxyCost], dict[str, Any] | None]:
    """The shadow scenario: two upstreams, strangler with the route in stage legacy and in stage
    shadow (copies to the second upstream), nginx with `mirror` to the second upstream.

    Returns the contenders, the proxies' costs and the route's `shadow results` that the
    shadow-on gateway logs when it stops (None if it logged none).
    """
    nginx_v = subprocess.run([lab.nginx, "-V"], capture_output=True, text=True, check=False).stderr
    dirs = {name: lab.workdir / name for name in ("upstream", "upstream2", "mirror")}
    for path in dirs.values():
        path.mkdir()
    up_port, up2_port, mx_port = free_port(), free_port(), free_port()
    off_port, on_port = free_port(), free_port()
    temp = {name: nginx_temp_paths(nginx_v, path) for name, path in dirs.items()}
    up_conf = upstream_conf(dirs["upstream"], temp["upstream"], up_port)
    up2_conf = upstream_conf(dirs["upstream2"], temp["upstream2"], up2_port)
    mx_conf = mirror_proxy_conf(dirs["mirror"], temp["mirror"], mx_port, up_port, up2_port)
    with contextlib.ExitStack() as stack:
        servers: list[Server] = []
        for name, folder, conf, port in (
            ("upstream nginx", dirs["upstream"], up_conf, up_port),
            ("second upstream nginx", dirs["upstream2"], up2_conf, up2_port),
        ):
            upstream = launch_nginx(lab, name, folder, conf, port=port, core=lab.load_core)
            servers.append(stack.enter_context(serving(upstream, lab.load_core, lab.path)))
        mirror = launch_nginx(
            lab, "nginx-mirror", dirs["mirror"], mx_conf, port=mx_port, core=lab.proxy_core
        )
        servers.append(stack.enter_context(serving(mirror, lab.proxy_core, lab.path)))
        # Both gateways run at once; only the one under load uses the core.
        off = launch_gateway(lab, off_port, up_port, routes_yaml, name="shadow-off")
        servers.append(stack.enter_context(serving(off, lab.proxy_core, lab.path)))
        on = launch_gateway(
            lab,
            on_port,
            up_port,
            shadow_routes_yaml(routes_yaml, route),
            name="shadow-on",
            new_port=up2_port,
        )
        servers.append(stack.enter_context(serving(on, lab.proxy_core, lab.path)))
        contenders = [
            Contender("shadow-off", off_port, off.proc.pid),
            Contender("shadow-on", on_port, on.proc.pid),
            Contender("nginx-mirror", mx_port, mirror.proc.pid),
        ]
        measure(lab, settings, contenders, servers)
        costs = proxy_costs(contenders)
        on.stop()  # SIGTERM: the gateway drains and logs `shadow results {...}` per route
        log_text = on.log_path.read_text(errors="replace")
        return contenders, costs, parse_shadow_results(log_text, route.name)


class _OtlpSink(BaseHTTPRequestHandler):
    """Accepts OTLP/HTTP exports and drops them (the collector's cost is not measured)."""

    protocol_version = "HTTP/1.1"
    spans_bytes = 0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        _OtlpSink.spans_bytes += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def measure_observability(
    lab: Lab, settings: Settings, routes_yaml: str, *, each: bool = False
) -> tuple[list[Contender], list[ProxyCost]]:
    """Three gateways on the proxy core (only the one under load uses it): all off, metrics
    alone, and metrics + a JSON access log to a file + tracing at 1 % to a sink here."""
    nginx_v = subprocess.run([lab.nginx, "-V"], capture_output=True, text=True, check=False).stderr
    up_dir = lab.workdir / "upstream"
    up_dir.mkdir()
    up_port = free_port()
    up_conf = upstream_conf(up_dir, nginx_temp_paths(nginx_v, up_dir), up_port)
    sink = ThreadingHTTPServer(("127.0.0.1", 0), _OtlpSink)
    threading.Thread(target=sink.serve_forever, name="otlp-sink", daemon=True).start()
    access_log = lab.workdir / "access.log"
    access_log_yaml = f"access_log: {{path: {str(access_log)!r}, format: json}}\n"
    tracing_yaml = (
        f"tracing: {{otlp_endpoint: 'http://127.0.0.1:{sink.server_address[1]}', "
        "sample_ratio: 0.01}\n"
    )
    all_on = OBSERVABILITY_METRICS + access_log_yaml + tracing_yaml
    variants = [
        ("obs-off", OBSERVABILITY_OFF),
        ("metrics", OBSERVABILITY_METRICS),
        ("all-on", all_on),
    ]
    if each:
        # Each of the other two alone, to see which one costs what (not part of the goals).
        variants += [
            ("log-only", OBSERVABILITY_OFF + access_log_yaml),
            ("trace-only", OBSERVABILITY_OFF + tracing_yaml),
        ]
    try:
        with contextlib.ExitStack() as stack:
            upstream = launch_nginx(
                lab, "upstream nginx", up_dir, up_conf, port=up_port, core=lab.load_core
            )
            servers = [stack.enter_context(serving(upstream, lab.load_core, lab.path))]
            contenders = []
            for name, extra in variants:
                port = free_port()
                gateway = launch_gateway(lab, port, up_port, routes_yaml, name=name, extra=extra)
                servers.append(stack.enter_context(serving(gateway, lab.proxy_core, lab.path)))
                contenders.append(Contender(name, port, gateway.proc.pid))
            measure(lab, settings, contenders, servers)
            costs = proxy_costs(contenders)
    finally:
        sink.shutdown()
    lines = sum(1 for _ in access_log.open("rb")) if access_log.exists() else 0
    print(
        f"\nall-on wrote {lines:,} access log lines and exported "
        f"{_OtlpSink.spans_bytes:,} bytes of spans"
    )
    return contenders, costs


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so servers and the temp dir are cleaned up either way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return run(args)
    except MissingToolError as exc:
        print(f"proxy_bench: {exc}", file=sys.stderr)
        return 2
    except BenchError as exc:
        print(f"proxy_bench: could not run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nproxy_bench: interrupted; servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
