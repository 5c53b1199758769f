"""`strangler progress`: where the migration stands, and what each route needs to move on.

Reads the config (stages) and the store (traffic per route and minute, shadow parity). The gate
for leaving `shadow` is the one `strangler promote` enforces (rollout.shadow_gate): at least
MIN_COMPARED comparisons and a Wilson 95 % lower bound of the parity at or above PARITY_FLOOR.
Nothing here changes anything.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import typer

from strangler.cli.tables import print_table
from strangler.control.effective import apply_overrides
from strangler.control.state import Store
from strangler.control.store import DEFAULT_ROUTE, RouteTotals, TrafficTotals
from strangler.data.gate import refusals_of
from strangler.data.status import data_report
from strangler.diff import wilson_interval
from strangler.rollout.machine import MIN_COMPARED, PARITY_FLOOR, shadow_gate
from strangler.routing.canary import CanaryPlan
from strangler.routing.model import Stage
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import build_snapshot, store_path

HOUR_S = 3600
DAY_S = 86_400
# How long legacy must have answered nothing before progress says it can be switched off:
# a week covers the weekly jobs and reports that hit a route once in a while.
LEGACY_QUIET_DAYS = 7
# Stages in which legacy answers some of a route's requests.
_LEGACY_STAGES = frozenset({Stage.LEGACY, Stage.SHADOW, Stage.CANARY})


@dataclass(frozen=True, slots=True)
class RouteProgress:
    route: str
    stage: str
    hour: TrafficTotals | None
    day: TrafficTotals | None
    parity: float | None
    parity_low: float | None
    compared: int
    next_step: str


def next_step(
    stage: Stage,
    totals: RouteTotals | None,
    hour: TrafficTotals | None,
    canary: CanaryPlan | None = None,
    data_gate: Sequence[str] = (),
) -> str:
    """What stands between a route and its next stage, in words. `data_gate`: the data gate's
    refusals for the route's group (what keeps a canary from moving to new)."""
    if stage is Stage.CANARY and canary is not None:
        share = f"canary at {canary.weight_bp / 100:g} % (group {canary.group})"
        errors = hour.new_errors if hour is not None else 0
        answered = hour.new if hour is not None else 0
        step = (
            f"{share}, {errors} errors in {answered} answers from new in the last hour; "
            "see `strangler rollout status ROUTE` for its verdicts"
        )
        if data_gate:
            step += "; new is blocked by the data gate: " + "; ".join(data_gate)
        return step
    if stage is Stage.LEGACY:
        return "implement it in the new backend, then `strangler promote ROUTE` (to shadow)"
    if stage is Stage.NEW:
        if hour is not None and hour.new_errors:
            return f"done; {hour.new_errors} errors on new in the last hour"
        return "done: served by the new backend; `strangler promote ROUTE` retires it"
    if stage is Stage.RETIRED:
        if hour is not None and hour.new_errors:
            return f"retired; {hour.new_errors} errors on new in the last hour"
        return "done: retired, legacy is no longer called"
    if stage is Stage.SHADOW:
        compared = totals.compared if totals is not None else 0
        equal = totals.equal + totals.equal_but_noise if totals is not None else 0
        gate = shadow_gate(compared, equal)
        low = gate.lower_bound or 0.0
        if compared < MIN_COMPARED:
            return f"gathering evidence: {compared} of {MIN_COMPARED} comparisons"
        if not gate.passed:
            return (
                f"blocked by parity: lower bound {low:.2%} < {PARITY_FLOOR:.1%} "
                "(see `strangler diffs ROUTE`)"
            )
        return f"ready to leave shadow: parity lower bound {low:.2%} over {compared} comparisons"
    return "-"


def show_progress(
    snapshot: Snapshot | None,
    *,
    as_json: bool,
    admin: str | None = None,
    now: float | None = None,
    days: int = LEGACY_QUIET_DAYS,
) -> int:
    """Print the progress report: read locally (the config's store, `snapshot` its YAML) or,
    with `admin`, from a running gateway's GET /api/v1/progress (`snapshot` unused). `days`:
    how long legacy must have answered nothing to be switched off."""
    if admin is not None:
        report = _fetch(admin, days)
    else:
        assert snapshot is not None
        report = _local_report(snapshot, time.time() if now is None else now, days)
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        print_progress(report)
    return 0


def _local_report(snapshot: Snapshot, now: float, days: int) -> dict[str, Any]:
    if snapshot.config.store.url is None and not store_path(snapshot).exists():
        return progress_report(snapshot, None, now=now, legacy_days=days)
    from strangler.control.stores import open_store

    store = open_store(snapshot.config.store, snapshot.source)
    try:
        overrides = store.overrides()
        if overrides:
            # Stages as they are in force: the YAML with the runtime overrides on top.
            snapshot = build_snapshot(
                apply_overrides(snapshot.config, overrides), source=snapshot.source
            )
        return progress_report(snapshot, store, now=now, legacy_days=days)
    finally:
        store.close()


def _fetch(admin: str, days: int) -> dict[str, Any]:
    from strangler.cli.admin_reads import admin_or_exit
    from strangler.cli.control_client import ControlError

    client = admin_or_exit(admin)
    try:
        report: dict[str, Any] = client.get(f"/api/v1/progress?days={days}")
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.code) from exc
    finally:
        client.close()
    return report


def progress_report(
    snapshot: Snapshot,
    store: Store | None,
    *,
    now: float,
    legacy_days: int = LEGACY_QUIET_DAYS,
) -> dict[str, Any]:
    """The document `progress --json` prints and GET /api/v1/progress answers.

    `snapshot` is the one in force (the YAML with the runtime overrides applied); `store` is
    None when none was created yet (no traffic recorded). `legacy_days`: the quiet period
    legacy must have had before it can be switched off.
    """
    hour: dict[str, TrafficTotals] = {}
    day: dict[str, TrafficTotals] = {}
    shadow: dict[str, RouteTotals] = {}
    if store is not None:
        hour = {t.route: t for t in store.traffic(now - HOUR_S)}
        day = {t.route: t for t in store.traffic(now - DAY_S)}
        shadow = {t.route: t for t in store.routes()}
    statuses = store.data_statuses() if store is not None else {}
    watched = store.watch_statuses() if store is not None else {}
    groups: dict[str, list[str]] = {}
    for row in snapshot.table.rows():
        if row.decision.canary is not None:
            groups.setdefault(row.decision.canary.plan.group, []).append(row.spec.name)
    rows: list[RouteProgress] = []
    for row in snapshot.table.rows():
        spec = row.spec
        canary = row.decision.canary.plan if row.decision.canary is not None else None
        # The group moves to new together: any of its routes' tables holds every one of them.
        data_gate = (
            refusals_of(statuses, watched, snapshot.config, groups[canary.group], now)
            if canary is not None and spec.stage is Stage.CANARY
            else []
        )
        totals = shadow.get(spec.name)
        compared = totals.compared if totals is not None else 0
        equal = totals.equal + totals.equal_but_noise if totals is not None else 0
        rows.append(
            RouteProgress(
                route=spec.name,
                stage=spec.stage.value,
                hour=hour.get(spec.name),
                day=day.get(spec.name),
                parity=equal / compared if compared else None,
                parity_low=wilson_interval(equal, compared)[0] if compared else None,
                compared=compared,
                next_step=next_step(spec.stage, totals, hour.get(spec.name), canary, data_gate),
            )
        )
    by_stage: dict[str, int] = {}
    for item in rows:
        by_stage[item.stage] = by_stage.get(item.stage, 0) + 1
    quiet = store.traffic(now - legacy_days * DAY_S) if store is not None else []
    return {
        "routes_by_stage": by_stage,
        "share_on_new": {"hour": _share(hour.values()), "day": _share(day.values())},
        "unmatched": _counts(hour.get(DEFAULT_ROUTE)),
        "routes": [_as_dict(item) for item in rows],
        "data": data_report(
            snapshot.config,
            statuses,
            now=now,
            watched=watched,
        ),
        "legacy_switch_off": legacy_switch_off(snapshot, quiet, days=legacy_days),
    }


def legacy_switch_off(
    snapshot: Snapshot, traffic: Iterable[TrafficTotals], *, days: int
) -> dict[str, Any]:
    """Whether legacy can be switched off: no route in a stage legacy answers in (nor one
    whose own `backend:` is legacy, nor the unmatched default), and no answer from legacy in
    the per-minute traffic counts of the last `days` days."""
    config = snapshot.config
    legacy = config.legacy_backend
    on_legacy = [
        row.spec.name
        for row in snapshot.table.rows()
        if row.spec.stage in _LEGACY_STAGES or row.spec.backend == legacy
    ]
    if config.default == legacy:
        on_legacy.append(DEFAULT_ROUTE)
    answered = {item.route: item.legacy for item in traffic if item.legacy}
    return {
        "ready": not on_legacy and not answered,
        "days": days,
        "routes_on_legacy": on_legacy,
        "legacy_answers": sum(answered.values()),
        "legacy_answers_by_route": answered,
    }


def print_progress(report: dict[str, Any]) -> None:
    """The report as text: the totals, then one line per route."""
    by_stage: dict[str, int] = report["routes_by_stage"]
    routes: list[dict[str, Any]] = report["routes"]
    stages = ", ".join(f"{stage} {count}" for stage, count in sorted(by_stage.items()))
    typer.echo(f"routes: {len(routes)} ({stages})")
    share = report["share_on_new"]
    typer.echo(f"answered by new: last hour {_pct(share['hour'])}, last day {_pct(share['day'])}")
    typer.echo("")
    table = [
        [
            item["route"],
            item["stage"],
            _traffic(item["last_hour"]),
            _traffic(item["last_day"]),
            _parity_text(item["parity"], item["parity_lower_bound_95"]),
            item["next_step"],
        ]
        for item in routes
    ]
    print_table(["ROUTE", "STAGE", "HOUR NEW/ALL", "DAY NEW/ALL", "PARITY", "NEXT"], table)
    data: list[dict[str, Any]] = report.get("data") or []
    if data:
        typer.echo("")
    for entry in data:
        typer.echo(f"data {entry['table']}: {_data_text(entry)}")
    switch_off = report.get("legacy_switch_off")
    if switch_off is not None:
        typer.echo("")
        typer.echo(f"legacy can be switched off: {_switch_off_text(switch_off)}")


def _switch_off_text(entry: dict[str, Any]) -> str:
    days = entry["days"]
    routes: list[str] = entry["routes_on_legacy"]
    answers: int = entry["legacy_answers"]
    if entry["ready"]:
        return f"yes (no route on legacy, no answer from legacy in the last {days} days)"
    why = []
    if routes:
        shown = ", ".join(routes[:5]) + (f" and {len(routes) - 5} more" if len(routes) > 5 else "")
        why.append(f"{len(routes)} routes still on legacy ({shown})")
    if answers:
        why.append(f"{answers:,} answers from legacy in the last {days} days")
    return "no: " + "; ".join(why)


def _data_text(entry: dict[str, Any]) -> str:
    """One table's parity in a line: its last run, and what the data gate says."""
    run = entry["last_run"]
    if run is None:
        found = "never diffed"
    else:
        counts = [
            f"{run[key]} {key.replace('_', ' ')}"
            for key in ("missing_in_new", "missing_in_legacy", "different")
            if run[key]
        ]
        found = (", ".join(counts) or "equal") + f" ({run['rows_legacy']} rows legacy, "
        found += f"{run['rows_new']} new; {'complete' if run['complete'] else 'incomplete'})"
    watch = entry.get("watch")
    if watch is not None:
        lag = "n/a" if watch["lag_s"] is None else f"{watch['lag_s']:.1f} s"
        found += f"; watch: {watch['checked']} keys checked, lag {lag}, "
        found += f"{watch['open_drift']} open drift"
    gate = entry["blocks_new"]
    return f"{found}; blocks new: {gate}" if gate else found


def _parity_text(parity: float | None, low: float | None) -> str:
    if parity is None or low is None:
        return "n/a"
    return f"{parity:.2%} (low {low:.2%})"


def _share(totals: Iterable[TrafficTotals]) -> dict[str, int | float | None]:
    legacy = new = 0
    for item in totals:
        legacy += item.legacy
        new += item.new
    total = legacy + new
    return {"new": new, "total": total, "ratio": new / total if total else None}


def _pct(share: dict[str, int | float | None]) -> str:
    ratio = share["ratio"]
    if ratio is None:
        return "n/a (no traffic recorded)"
    return f"{ratio:.1%} ({share['new']:,} of {share['total']:,})"


def _traffic(counts: dict[str, int] | None) -> str:
    if counts is None:
        return "0/0"
    return f"{counts['new']}/{counts['new'] + counts['legacy']}"


def _counts(totals: TrafficTotals | None) -> dict[str, int] | None:
    if totals is None:
        return None
    return {
        "legacy": totals.legacy,
        "new": totals.new,
        "legacy_errors": totals.legacy_errors,
        "new_errors": totals.new_errors,
    }


def _as_dict(item: RouteProgress) -> dict[str, object]:
    return {
        "route": item.route,
        "stage": item.stage,
        "last_hour": _counts(item.hour),
        "last_day": _counts(item.day),
        "parity": item.parity,
        "parity_lower_bound_95": item.parity_low,
        "compared": item.compared,
        "next_step": item.next_step,
    }
