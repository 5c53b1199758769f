"""`strangler diffs`: shadow results read from the store every worker writes to.

Each function prints and returns the exit code: 0 shown, 2 a bad argument (unknown route, path,
or a missing reason).
"""

from __future__ import annotations

import dataclasses
import getpass
import sys
import time
from datetime import UTC, datetime

import orjson
import typer

from strangler.cli.tables import print_table
from strangler.control.reports import parity_dict
from strangler.control.store import RouteTotals, ShadowStore, is_learned_noise
from strangler.control.stores import open_store
from strangler.diff import wilson_interval
from strangler.routing.model import Stage
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import store_path

# The CLI's verbs and the verdicts they record.
_VERDICTS = {"accept": "accepted", "noise": "noise"}


def _open(snapshot: Snapshot) -> ShadowStore | None:
    store = snapshot.config.store
    path = store_path(snapshot)
    if store.url is None and not path.exists():
        typer.echo(f"no shadow results yet ({path} does not exist)", err=True)
        return None
    return open_store(store, snapshot.source)


def _json(value: object) -> None:
    typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def _when(moment: float | None) -> str:
    if moment is None:
        return "-"
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _parity(equal: int, compared: int) -> str:
    """The ratio with its Wilson 95 % interval, so few comparisons don't read as evidence."""
    if not compared:
        return "n/a"
    low, high = wilson_interval(equal, compared)
    return f"{equal / compared:.2%} [{low:.2%}, {high:.2%}]"


def show_routes(snapshot: Snapshot, *, as_json: bool) -> int:
    store = _open(snapshot)
    totals = {t.route: t for t in store.routes()} if store is not None else {}
    shadowed = [row.spec for row in snapshot.table.rows() if row.spec.stage is Stage.SHADOW]
    names = [spec.name for spec in shadowed] + sorted(set(totals) - {s.name for s in shadowed})
    if as_json:
        _json([_route_dict(name, totals.get(name), snapshot) for name in names])
        return 0
    rows = []
    for name in names:
        t = totals.get(name)
        stage = "shadow" if name in snapshot.shadow_routes else "(was shadowed)"
        if t is None:
            rows.append([name, stage, "0", "0", "0", "0", "0", "n/a", "n/a", "-"])
            continue
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(t.dropped.items())) or "-"
        rows.append(
            [
                name,
                stage,
                str(t.mirrored),
                str(t.compared),
                str(t.equal),
                str(t.equal_but_noise),
                str(t.different - t.equal_but_noise),
                _parity(t.equal + t.equal_but_noise, t.compared),
                _parity(t.equal, t.compared),
                dropped,
            ]
        )
    headers = ["ROUTE", "STAGE", "MIRRORED", "COMPARED", "EQUAL", "NOISE ONLY", "DIFFERENT"]
    print_table([*headers, "PARITY [95% CI]", "STRICT", "DROPPED"], rows)
    if rows:
        typer.echo(
            "\nPARITY counts comparisons that differed only on noise (learned, or reviewed with "
            "`strangler diffs accept|noise`) as equal; STRICT does not."
        )
    return 0


def _route_dict(name: str, totals: RouteTotals | None, snapshot: Snapshot) -> dict[str, object]:
    out: dict[str, object] = {"route": name, "is_shadowed": name in snapshot.shadow_routes}
    if totals is not None:
        out.update(parity_dict(totals))
    return out


def show_paths(snapshot: Snapshot, route: str, *, as_json: bool) -> int:
    store = _open(snapshot)
    if store is None:
        return 0
    totals = {t.route: t for t in store.routes()}
    if route not in totals:
        typer.echo(f"error: no shadow results for route {route!r}", err=True)
        return 2
    samples = totals[route].noise_samples
    paths = store.paths(route)
    if as_json:
        _json([dataclasses.asdict(p) for p in paths])
        return 0
    rows = [
        [
            p.rule_path,
            p.kind,
            str(p.count),
            f"{p.noise_count}/{samples}" if samples else "-",
            p.review or ("noise (learned)" if is_learned_noise(p.noise_count, samples) else "-"),
            (p.review_reason or "")[:40],
            _when(p.last_seen),
        ]
        for p in paths
    ]
    print_table(["PATH", "KIND", "COUNT", "LEGACY NOISE", "REVIEW", "WHY", "LAST SEEN"], rows)
    return 0


def show_examples(snapshot: Snapshot, route: str, *, as_json: bool) -> int:
    store = _open(snapshot)
    if store is None:
        return 0
    examples = store.examples(route)
    if as_json:
        _json(examples)
        return 0
    color = sys.stdout.isatty()
    for example in examples:
        typer.echo(f"{example.get('request')}  {example.get('path')}")
        legacy = f"  legacy: {example.get('primary')!r}"
        new = f"  new:    {example.get('shadow')!r}"
        typer.echo(typer.style(legacy, fg="red") if color else legacy)
        typer.echo(typer.style(new, fg="green") if color else new)
    if not examples:
        typer.echo(f"no examples for route {route!r}")
    return 0


def review_path(snapshot: Snapshot, command: str, route: str, rule_path: str, reason: str) -> int:
    """`accept` (an intended change; needs a reason) or `noise`: the path leaves the parity."""
    store = _open(snapshot)
    if store is None:
        return 2
    try:
        verdict = _VERDICTS[command]
        store.review(route, rule_path, verdict, reason, getpass.getuser(), time.time())
    except KeyError:
        typer.echo(f"error: route {route!r} has no difference path {rule_path!r}", err=True)
        return 2
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    typer.echo(f"{route} {rule_path}: marked {verdict}")
    return 0
