"""Where each table's parity stands, as `strangler progress`, GET /api/v1/data and the metrics
show it: the newest run's summary, the newest complete run's time, and what the gate says.

Pure: the caller reads the store (`DataStore.data_statuses`) and passes the statuses in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strangler.config import Config
from strangler.control.data_runs import DataStatus
from strangler.control.data_watch import WatchStatus
from strangler.data.gate import drift_refusal, table_refusal

DEFAULT_MAX_AGE_H = 24.0


def data_report(
    config: Config,
    statuses: Mapping[str, DataStatus],
    *,
    now: float,
    watched: Mapping[str, WatchStatus] | None = None,
) -> list[dict[str, Any]]:
    """One entry per configured table (in the config's order), then per table the store knows
    that the config no longer lists: `last_run` (null before any), `last_complete_at`,
    `watch` (`data watch`'s state of it: null before any check) and `blocks_new` (the data
    gate's reason, null when it lets the table's routes move)."""
    watched = watched or {}
    configured = [table.name for table in config.data.tables] if config.data is not None else []
    max_age_h = config.data.max_age_h if config.data is not None else DEFAULT_MAX_AGE_H
    names = [*configured, *(name for name in statuses if name not in configured)]
    names += [name for name in watched if name not in names]
    report = []
    for name in names:
        status = statuses.get(name)
        complete = status.last_complete if status is not None else None
        watch = watched.get(name)
        reasons = [
            reason
            for reason in (
                table_refusal(status, now, max_age_h * 3600),
                drift_refusal(watch, status),
            )
            if reason is not None
        ]
        report.append(
            {
                "table": name,
                "configured": name in configured,
                "last_run": status.last.to_json() if status is not None else None,
                "last_complete_at": complete.finished_at if complete is not None else None,
                "watch": watch.to_json() if watch is not None else None,
                "blocks_new": "; and ".join(reasons) if reasons else None,
            }
        )
    return report
