"""The data gate: which tables keep routes from moving to `new`, and why.

Pure but for one store read. A route listed under a table's `routes` may move to `new` only
while that table's newest run found no differences and its newest complete run is at most
`data.max_age_h` old, and `data watch` holds no open drift of it: a route whose data is not
known to agree must not stop reading legacy's.
`--force` (the caller's) overrides, audited; this function only says what blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from strangler.config import Config, DataTableConfig
from strangler.control.data_runs import DataStatus, DataStore
from strangler.control.data_watch import KEEP_DRIFT_PER_TABLE, DataWatchStore, WatchStatus


class GateStore(DataStore, DataWatchStore, Protocol):
    """What the gate reads: the diff runs and the watch's drift."""


def data_gate_refusals(
    store: GateStore, config: Config, routes: Iterable[str], now: float
) -> list[str]:
    """One line per table of `routes` that blocks a move to `new`, naming the table, its
    routes and what is wrong; [] when nothing blocks (or the config has no `data:`)."""
    if config.data is None:
        return []
    return refusals_of(store.data_statuses(), store.watch_statuses(), config, routes, now)


def refusals_of(
    statuses: Mapping[str, DataStatus],
    watched: Mapping[str, WatchStatus],
    config: Config,
    routes: Iterable[str],
    now: float,
) -> list[str]:
    """data_gate_refusals from the diff runs and watch states already read (a report over
    many routes reads the store once)."""
    if config.data is None:
        return []
    wanted = set(routes)
    blocking: dict[str, tuple[DataTableConfig, list[str]]] = {}
    for route in config.routes:
        if route.name not in wanted:
            continue
        for table in config.data.tables_of(route):
            blocking.setdefault(table.name, (table, []))[1].append(route.name)
    if not blocking:
        return []
    max_age_s = config.data.max_age_h * 3600
    refusals = []
    for name, (_table, names) in blocking.items():
        status = statuses.get(name)
        reasons = []
        reason = table_refusal(status, now, max_age_s)
        if reason is not None:
            reasons.append(f"{reason}; run `strangler data diff {name}`")
        drift = drift_refusal(watched.get(name), status)
        if drift is not None:
            reasons.append(drift)
        if reasons:
            refusals.append(
                f"table {name} (read or written by {', '.join(sorted(names))}): "
                + "; and ".join(reasons)
            )
    return refusals


def drift_refusal(watch: WatchStatus | None, status: DataStatus | None) -> str | None:
    """Why `data watch`'s drift of a table blocks its routes' move to `new`; None when none."""
    if watch is None:
        return None
    reasons = []
    if watch.open_drift:
        plural = "key" if watch.open_drift == 1 else "keys"
        reasons.append(
            f"`data watch` found {watch.open_drift} {plural} drifted "
            f"(e.g. key {watch.example_key}): still different on new after max_lag_s; it "
            "resolves them once they agree (see `strangler progress`)"
        )
    # Drift counted past the cap was not kept, so it can't resolve: only a clean complete
    # diff run after it clears it.
    last = status.last_complete if status is not None else None
    cleared = (
        last is not None
        and status is not None
        and not status.last.differences
        and watch.untracked_at is not None
        and last.finished_at > watch.untracked_at
    )
    if watch.untracked and not cleared:
        reasons.append(
            f"`data watch` counted {watch.untracked} more drifted keys past its cap of "
            f"{KEEP_DRIFT_PER_TABLE} kept per table; a complete, clean `strangler data diff "
            f"{watch.table}` clears them"
        )
    return "; ".join(reasons) or None


def table_refusal(status: DataStatus | None, now: float, max_age_s: float) -> str | None:
    """Why a table with this status blocks its routes' move to `new`; None when it doesn't."""
    if status is None:
        return "never diffed"
    last = status.last
    if last.differences:
        found = ", ".join(
            f"{count} {what}"
            for count, what in (
                (last.missing_in_new, "missing in new"),
                (last.missing_in_legacy, "missing in legacy"),
                (last.different, "different"),
            )
            if count
        )
        partial = "" if last.complete else " (an incomplete run: at least that many)"
        return f"its last diff, {_age(now - last.finished_at)} ago, found {found}{partial}"
    complete = status.last_complete
    if complete is None:
        return "no diff of it has completed (each stopped at --max-differences or --max-seconds)"
    age_s = now - complete.finished_at
    if age_s > max_age_s:
        return (
            f"its last complete diff is {_age(age_s)} old, older than data.max_age_h "
            f"({max_age_s / 3600:g} h)"
        )
    return None


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0, seconds):.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
