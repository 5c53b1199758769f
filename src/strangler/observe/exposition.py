"""The `/metrics` document: every worker's measurements added up, rendered in the Prometheus
text format 0.0.4 or in OpenMetrics 1.0.

Rules:
- Workers send messages (`Message`): deltas of the request-path series, which the hub adds
  into its totals, and the current values of their other counters and gauges. When a worker
  goes, its last counter values move into the totals of workers gone, so every counter only
  ever grows; its gauges go with it.
- Only series that saw something are rendered. Names and labels are the interface dashboards
  and alert rules depend on; FAMILIES holds them all (README lists the same table).
- Rendering is string formatting over the aggregate, with each series' label text built once
  per scrape; it runs off the event loop (the admin thread) or, with one worker, on its loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from strangler.observe.metrics import BUCKETS, SIDES, SLOTS, HistogramDelta

PREFIX = "strangler_"
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

Kind = Literal["counter", "gauge", "histogram"]
# How a gauge reported by several workers reads: their sum, the newest state's value, or the
# least of them (a server is healthy only while every worker sends it requests).
Combine = Literal["sum", "newest", "min"]


@dataclass(frozen=True, slots=True)
class Family:
    kind: Kind
    labels: tuple[str, ...]
    help: str
    combine: Combine = "sum"


FAMILIES: dict[str, Family] = {
    # The request path (hub-side deltas).
    "requests_total": Family(
        "counter",
        ("route", "stage", "side", "code_class"),
        "Client requests answered, by route, its stage then, who answered and status class.",
    ),
    "request_duration_seconds": Family(
        "histogram",
        ("route", "side"),
        "Time from a request's head to the last byte of its answer.",
    ),
    "slo_seconds_dropped_total": Family(
        "counter", (), "Seconds of SLO counts dropped while store flushes failed."
    ),
    "upstream_duration_seconds": Family(
        "histogram", ("backend",), "Time from sending a request upstream to its answer's head."
    ),
    "shadow_duration_seconds": Family(
        "histogram",
        ("route",),
        "Time from a shadowed request's head to the new side's whole answer to its copy.",
    ),
    # Counters the workers keep (absolute per worker).
    "shadow_comparisons_total": Family(
        "counter", ("route", "verdict"), "Shadow answers compared with the primary, by verdict."
    ),
    "shadow_dropped_total": Family(
        "counter", ("route", "reason"), "Shadow copies dropped before a comparison, and why."
    ),
    "shadow_diffs_off_loop_total": Family(
        "counter", ("route",), "Shadow pairs diffed in the helper process (large answers)."
    ),
    "rollout_verdicts_total": Family(
        "counter", ("route", "verdict"), "Canary analysis verdicts, by rollout unit and outcome."
    ),
    "webhook_deliveries_total": Family(
        "counter",
        ("event", "result"),
        "Webhook events by outcome: delivered, failed (after every retry) or dropped (queue full).",
    ),
    "canary_decisions_total": Family(
        "counter", ("route", "side", "reason"), "Canary routing decisions: the side and why."
    ),
    "canary_overrides_ignored_total": Family(
        "counter", ("route", "reason"), "Canary override cookies or headers ignored, and why."
    ),
    "faults_injected_total": Family(
        "counter",
        ("route", "kind"),
        "Faults injected by drills (`faults:`, `strangler drill`), by route and kind.",
    ),
    "faults_refused_total": Family(
        "counter",
        ("route",),
        "Requests that asked for a header-gated fault, untrusted and unsigned or badly signed.",
    ),
    "canary_retries_on_legacy_total": Family(
        "counter", ("route",), "Safe canary requests new refused, answered by legacy instead."
    ),
    "canary_sticky_cookies_issued_total": Family(
        "counter", ("route",), "Sticky canary cookies set on answers."
    ),
    "canary_windows_dropped_total": Family(
        "counter", (), "Seconds of canary measurements dropped while store flushes failed."
    ),
    "client_aborts_total": Family(
        "counter", ("reason",), "Client connections cut mid-answer, and why."
    ),
    "client_connections_refused_total": Family(
        "counter", ("reason",), "Client connections refused at accept, by the limit hit."
    ),
    "client_headers_dropped_total": Family(
        "counter", ("reason",), "Request headers dropped before forwarding, and why."
    ),
    "client_requests_refused_total": Family(
        "counter", ("reason",), "Requests refused for their path or form, by reason."
    ),
    "client_requests_rejected_total": Family(
        "counter", ("status",), "Requests the gateway answered with an error itself, by status."
    ),
    "client_timeouts_total": Family(
        "counter", ("phase",), "Client connections closed for slowness, by phase."
    ),
    "config_reloads_total": Family(
        "counter", ("result",), "Config reloads (SIGHUP, --watch), applied or refused."
    ),
    "state_changes_total": Family(
        "counter", ("result",), "Control state versions (promotions, rollbacks) applied."
    ),
    "csrf_refused_total": Family(
        "counter", ("route",), "Requests refused by Rails' forgery protection, by route."
    ),
    "identity_csrf_refused_total": Family(
        "counter", ("reason",), "Requests refused by Rails' forgery protection, by reason."
    ),
    "identity_tokens_issued_total": Family(
        "counter", (), "Identity tokens minted for requests to the new side."
    ),
    "identity_sessions_total": Family(
        "counter", ("outcome",), "Rails session cookies read by the bridge, by outcome."
    ),
    "pool_wait_timeouts_total": Family(
        "counter", ("backend",), "Requests that waited too long for an upstream connection."
    ),
    "upstream_connect_failures_total": Family(
        "counter", ("backend", "reason"), "Upstream connections that failed to open."
    ),
    "upstream_tls_handshakes_total": Family(
        "counter",
        ("backend", "resumed"),
        "TLS handshakes with https backends; resumed=true reused an earlier session.",
    ),
    "upstream_failures_total": Family(
        "counter", ("backend", "kind"), "Upstream attempts that got no usable answer, by kind."
    ),
    "upstream_retries_total": Family(
        "counter",
        ("backend",),
        "Safe requests retried on a fresh upstream connection, or on another server.",
    ),
    "backend_ejections_total": Family(
        "counter",
        ("backend", "server"),
        "Servers ejected by outlier detection (failures in a row), per worker.",
    ),
    "backend_health_changes_total": Family(
        "counter",
        ("backend", "server", "state"),
        "Servers marked up or down by active health checks, per worker.",
    ),
    "backend_dns_failures_total": Family(
        "counter", ("backend",), "Lookups of a balanced backend's host names that failed."
    ),
    "websocket_tunnels_total": Family("counter", (), "Upgraded connections tunnelled."),
    "store_failures_total": Family(
        "counter", ("what",), "Control store operations that failed, by what was tried."
    ),
    "access_log_dropped_total": Family(
        "counter", (), "Access log lines dropped because the writer fell behind."
    ),
    "access_log_write_errors_total": Family(
        "counter", (), "Access log batches that could not be written."
    ),
    "tracing_spans_dropped_total": Family(
        "counter", (), "Spans dropped because the export queue was full."
    ),
    "tracing_spans_failed_total": Family(
        "counter", (), "Spans lost to failed exports (collector down or refusing)."
    ),
    # Gauges.
    "connections": Family("gauge", ("state",), "Client connections, open and idle."),
    "upstream_connections": Family(
        "gauge", ("backend", "state"), "Upstream connections by state (busy, idle)."
    ),
    "shadow_in_flight": Family("gauge", (), "Shadow copies sent and not yet settled."),
    "backend_server_healthy": Family(
        "gauge",
        ("backend", "server"),
        "1 while a balanced backend's server takes requests (checks up, not ejected) in every "
        "worker, else 0.",
        combine="min",
    ),
    "route_stage": Family(
        "gauge", ("route", "stage"), "1 for each route's stage in force.", combine="newest"
    ),
    "canary_weight": Family(
        "gauge", ("route",), "Share of users a canary route sends to new (%).", combine="newest"
    ),
    "state_version": Family(
        "gauge", (), "Version of the control state in force.", combine="newest"
    ),
    # Each table's last `data diff` run, as every worker reads it from the store.
    "data_rows_different": Family(
        "gauge", ("table",), "Rows that differ in the table's last data diff.", combine="newest"
    ),
    "data_rows_missing": Family(
        "gauge",
        ("table", "side"),
        "Rows missing on one side (new or legacy) in the table's last data diff.",
        combine="newest",
    ),
    "data_last_run_timestamp": Family(
        "gauge",
        ("table",),
        "When the table's last data diff finished (unix time).",
        combine="newest",
    ),
    # `strangler data watch`'s state of each table, as every worker reads it from the store.
    "data_watch_drift": Family(
        "gauge",
        ("table",),
        "Keys data watch found still different on new after max_lag_s, not yet resolved.",
        combine="newest",
    ),
    "data_watch_lag_seconds": Family(
        "gauge",
        ("table",),
        "Time from a legacy change's commit to its conclusive check, for the newest one.",
        combine="newest",
    ),
    "build_info": Family(
        "gauge", ("version", "compiled"), "1, labelled with the gateway's version and build."
    ),
}

# Process metrics, one series per worker (label `worker`), read from /proc at scrape time.
PROCESS_FAMILIES: dict[str, tuple[Kind, str]] = {
    "process_cpu_seconds_total": ("counter", "User and system CPU time spent."),
    "process_resident_memory_bytes": ("gauge", "Resident memory size."),
    "process_open_fds": ("gauge", "Open file descriptors."),
    "process_start_time_seconds": ("gauge", "Start time of the process since the epoch."),
}

# A worker's message: see `Message` in the module docstring.
SeriesKey = tuple[str, ...]  # (family name, *label values)


@dataclass(slots=True)
class _Source:
    """What one worker reported last."""

    pid: int
    worker: str
    totals: dict[SeriesKey, float] = field(default_factory=dict)
    gauges: dict[SeriesKey, float] = field(default_factory=dict)


class MetricsHub:
    """Adds up the workers' messages; renders the exposition. Thread-safe."""

    def __init__(self, *, version: str, compiled: bool) -> None:
        self._lock = threading.Lock()
        self._build = (version, "true" if compiled else "false")
        # (route, stage, side) -> answers by status class (1xx..5xx).
        self._requests: dict[tuple[str, str, int], list[int]] = {}
        self._histograms: dict[tuple[str, str, str], list[float]] = {}
        self._sources: dict[str, _Source] = {}
        self._retired: dict[SeriesKey, float] = {}
        self.messages = 0

    # -- input --------------------------------------------------------------------------------

    def add(self, source: str, message: dict[str, Any]) -> None:
        """Merge one worker message (see metrics_message in the worker)."""
        with self._lock:
            self.messages += 1
            state = self._sources.get(source)
            if state is None or state.pid != message["pid"]:
                if state is not None:
                    self._retire(state)
                state = self._sources[source] = _Source(message["pid"], message["worker"])
            for route, stage, codes, durations in message.get("requests", ()):
                self._add_requests(route, stage, codes, durations)
            for backend, delta in message.get("upstream", {}).items():
                self._add_histogram(("upstream_duration_seconds", backend, ""), delta)
            for route, delta in message.get("shadow", {}).items():
                self._add_histogram(("shadow_duration_seconds", route, ""), delta)
            for key, value in message.get("totals", ()):
                state.totals[tuple(key)] = value
            gauges = message.get("gauges")
            if gauges is not None:
                state.gauges = {tuple(key): value for key, value in gauges}

    def _add_requests(
        self, route: str, stage: str, codes: list[int], durations: dict[int, HistogramDelta]
    ) -> None:
        for side in range(3):
            counts = codes[side * 5 : side * 5 + 5]
            if not any(counts):
                continue
            row = self._requests.setdefault((route, stage, side), [0] * 5)
            for index, count in enumerate(counts):
                row[index] += count
        for side, delta in durations.items():
            self._add_histogram(("request_duration_seconds", route, SIDES[side]), delta)

    def _add_histogram(self, key: tuple[str, str, str], delta: HistogramDelta) -> None:
        counts, total = delta
        row = self._histograms.get(key)
        if row is None:
            row = self._histograms[key] = [0.0] * (SLOTS + 1)
        for index, count in enumerate(counts):
            row[index] += count
        row[SLOTS] += total

    def retire(self, source: str) -> None:
        """The worker is gone: its counters stay in the totals, its gauges go."""
        with self._lock:
            state = self._sources.pop(source, None)
            if state is not None:
                self._retire(state)

    def _retire(self, state: _Source) -> None:
        for key, value in state.totals.items():
            self._retired[key] = self._retired.get(key, 0.0) + value

    def pids(self) -> list[tuple[str, int]]:
        with self._lock:
            return [(s.worker, s.pid) for s in self._sources.values()]

    def counter_totals(self, name: str) -> dict[tuple[str, ...], float]:
        """The counter family `name` summed over every worker (gone ones too), by label values."""
        with self._lock:
            out: dict[tuple[str, ...], float] = {}
            sources = [dict(self._retired), *(s.totals for s in self._sources.values())]
            for totals in sources:
                for key, value in totals.items():
                    if key[0] == name:
                        out[key[1:]] = out.get(key[1:], 0.0) + value
            return out

    # -- output -------------------------------------------------------------------------------

    def render(self, *, openmetrics: bool = False) -> bytes:
        with self._lock:
            lines = list(self._lines(openmetrics))
        lines.extend(_process_lines(self.pids(), openmetrics))
        if openmetrics:
            lines.append("# EOF\n")
        return "".join(lines).encode()

    def _lines(self, openmetrics: bool) -> Iterator[str]:
        counters = dict(self._retired)
        gauges: dict[SeriesKey, float] = {}
        newest = max(self._sources.values(), key=_state_version, default=None)
        for state in self._sources.values():
            for key, value in state.totals.items():
                counters[key] = counters.get(key, 0.0) + value
            for key, value in state.gauges.items():
                combine = FAMILIES[key[0]].combine
                if combine == "sum":
                    gauges[key] = gauges.get(key, 0.0) + value
                elif combine == "min":
                    gauges[key] = min(gauges.get(key, value), value)
        if newest is not None:
            for key, value in newest.gauges.items():
                if FAMILIES[key[0]].combine == "newest":
                    gauges[key] = value
        gauges[("build_info", *self._build)] = 1.0
        by_family: dict[str, list[tuple[tuple[str, ...], float]]] = {}
        for (route, stage, side), row in self._requests.items():
            for index, count in enumerate(row):
                if count:
                    labels = (route, stage, SIDES[side], f"{index + 1}xx")
                    by_family.setdefault("requests_total", []).append((labels, count))
        for key, value in [*counters.items(), *gauges.items()]:
            by_family.setdefault(key[0], []).append((key[1:], value))
        histograms: dict[str, list[tuple[tuple[str, ...], list[float]]]] = {}
        for (name, first, second), buckets in self._histograms.items():
            names = (first, second) if second else (first,)
            histograms.setdefault(name, []).append((names, buckets))
        for name, family in FAMILIES.items():
            if family.kind == "histogram":
                if name in histograms:
                    yield from _histogram_lines(name, family, histograms[name], openmetrics)
            elif name in by_family:
                yield from _sample_lines(name, family, by_family[name], openmetrics)


def _state_version(state: _Source) -> float:
    return state.gauges.get(("state_version",), -1.0)


def _header(name: str, kind: str, help_text: str, openmetrics: bool) -> str:
    full = PREFIX + name
    if openmetrics and kind == "counter":
        full = full.removesuffix("_total")
    return f"# HELP {full} {help_text}\n# TYPE {full} {kind}\n"


def _label_text(names: tuple[str, ...], values: Iterable[str]) -> str:
    return ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))


def _escape(value: str) -> str:
    # Text format: backslash, double quote and line feed are escaped in label values.
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _sample_lines(
    name: str,
    family: Family,
    samples: list[tuple[tuple[str, ...], float]],
    openmetrics: bool,
) -> Iterator[str]:
    yield _header(name, family.kind, family.help, openmetrics)
    full = PREFIX + name
    for labels, value in sorted(samples):
        text = _label_text(family.labels, labels)
        yield f"{full}{{{text}}} {_number(value)}\n" if text else f"{full} {_number(value)}\n"


_LE = (*(f'le="{bound}"' for bound in BUCKETS), 'le="+Inf"')


def _histogram_lines(
    name: str,
    family: Family,
    rows: list[tuple[tuple[str, ...], list[float]]],
    openmetrics: bool,
) -> Iterator[str]:
    yield _header(name, "histogram", family.help, openmetrics)
    full = PREFIX + name
    for labels, row in sorted(rows):
        text = _label_text(family.labels, labels)
        cumulative = 0
        for index in range(SLOTS):
            cumulative += int(row[index])
            yield f"{full}_bucket{{{text},{_LE[index]}}} {cumulative}\n"
        yield f"{full}_sum{{{text}}} {_number(row[SLOTS])}\n"
        yield f"{full}_count{{{text}}} {cumulative}\n"


_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _boot_time() -> float:
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


_BOOT = _boot_time()


def process_figures(pid: int) -> dict[str, float] | None:
    """The process metrics of `pid` from /proc, or None when it is gone (or not Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name is in parentheses and may hold spaces: split after it.
            fields = stat.read().rpartition(")")[2].split()
        with open(f"/proc/{pid}/statm") as statm:
            resident = int(statm.read().split()[1]) * _PAGE
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, IndexError, ValueError):
        return None
    # proc(5): utime and stime are fields 14 and 15, starttime 22 (1-based, pid first).
    return {
        "process_cpu_seconds_total": (int(fields[11]) + int(fields[12])) / _TICKS,
        "process_resident_memory_bytes": float(resident),
        "process_open_fds": float(fds),
        "process_start_time_seconds": _BOOT + int(fields[19]) / _TICKS,
    }


def _process_lines(pids: list[tuple[str, int]], openmetrics: bool) -> Iterator[str]:
    figures = [(worker, process_figures(pid)) for worker, pid in sorted(pids)]
    for name, (kind, help_text) in PROCESS_FAMILIES.items():
        values = [(worker, f[name]) for worker, f in figures if f is not None]
        if not values:
            continue
        header_name = name.removesuffix("_total") if openmetrics and kind == "counter" else name
        yield f"# HELP {header_name} {help_text}\n# TYPE {header_name} {kind}\n"
        for worker, value in values:
            yield f'{name}{{worker="{worker}"}} {_number(value)}\n'


def wants_openmetrics(accept: str | None) -> bool:
    """Prometheus asks for OpenMetrics in its Accept header when it can read it."""
    return accept is not None and "application/openmetrics-text" in accept
