"""The data gate: which tables keep routes from moving to `new`, and why.

Pure but for one store read. A route listed under a table's `routes` may move to `new` only
while that table's newest run found no differences and its newest complete run is at most
`data.max_age_h` old: a route whose data is not known to agree must not stop reading legacy's.
`--force` (the caller's) overrides, audited; this function only says what blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from strangler.config import Config, DataTableConfig
from strangler.control.data_runs import DataStatus, DataStore


def data_gate_refusals(
    store: DataStore, config: Config, routes: Iterable[str], now: float
) -> list[str]:
    """One line per table of `routes` that blocks a move to `new`, naming the table, its
    routes and what is wrong; [] when nothing blocks (or the config has no `data:`)."""
    if config.data is None:
        return []
    return refusals_of(store.data_statuses(), config, routes, now)


def refusals_of(
    statuses: Mapping[str, DataStatus], config: Config, routes: Iterable[str], now: float
) -> list[str]:
    """data_gate_refusals from statuses already read (a report over many routes reads the
    store once)."""
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
        reason = table_refusal(statuses.get(name), now, max_age_s)
        if reason is not None:
            refusals.append(
                f"table {name} (read or written by {', '.join(sorted(names))}): {reason}; "
                f"run `strangler data diff {name}`"
            )
    return refusals


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
