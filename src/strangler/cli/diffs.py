"""`strangler diffs`: shadow results, read from the store every worker writes to, or from a
running gateway's admin API (`--admin URL`).

Rules:
- Both doors give the same JSON documents (`routes_report`, `route_report`: what the admin API's
  /api/v1/diffs answers), and the commands print from those, so the text and `--json` read the
  same whichever door was used.
- Examples name their sides legacy (the answer the client got) and new (the shadow copy's),
  print values as JSON (`null`, `false`, `"text"`), and show a side that has no value at that
  path as `(absent)`; in `--json` that side's key is left out.
- Each function prints and returns the exit code: 0 shown, 1 the store or the gateway failed,
  2 a bad argument (an unknown route or path, an accepted path without its reason).
"""

from __future__ import annotations

import dataclasses
import getpass
import sys
import time
from datetime import UTC, datetime
from typing import Any, Protocol

import orjson
import typer

from strangler.cli.control_client import ControlError
from strangler.cli.tables import print_table
from strangler.control.reports import parity_dict
from strangler.control.store import RouteTotals, ShadowStore, is_learned_noise
from strangler.diff import wilson_interval
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import store_path

# The CLI's verbs and the verdicts they record.
VERDICTS = {"accept": "accepted", "noise": "noise"}
# A difference of kind MISSING has no value on the new side, EXTRA none on the legacy side.
_ABSENT_SIDE = {"missing": "new", "extra": "legacy"}
ABSENT = "(absent)"


def routes_report(store: ShadowStore | None, shadowed: list[str]) -> list[dict[str, Any]]:
    """One row per route: the shadowed ones in match order (with zeros before their first
    result), then the routes with results that are no longer shadowed, by name."""
    totals = {t.route: t for t in store.routes()} if store is not None else {}
    names = shadowed + sorted(set(totals) - set(shadowed))
    rows = []
    for name in names:
        found = totals.get(name)
        row = parity_dict(found or RouteTotals(name, 0, 0, 0, 0, {}, 0, 0.0))
        if found is None:
            row["updated_at"] = None
        rows.append({**row, "is_shadowed": name in shadowed})
    return rows


def route_report(store: ShadowStore, route: str) -> dict[str, Any] | None:
    """A route's parity, its difference paths (most frequent first) and their examples (newest
    first); None when the route has no shadow results."""
    totals = {t.route: t for t in store.routes()}.get(route)
    if totals is None:
        return None
    paths = []
    for path in store.paths(route):
        item = dataclasses.asdict(path)
        item["learned_noise"] = is_learned_noise(path.noise_count, totals.noise_samples)
        paths.append(item)
    return {**parity_dict(totals), "paths": paths, "examples": store.examples(route)}


class DiffSource(Protocol):
    """Where the shadow results come from; refusals raise ControlError (with the exit code)."""

    def routes(self) -> list[dict[str, Any]]: ...

    def route(self, route: str) -> dict[str, Any]: ...

    def review(self, route: str, rule_path: str, verdict: str, reason: str) -> None: ...

    def close(self) -> None: ...


class LocalDiffs:
    """The config's store, opened directly (not created: before the first run there is none).
    Stages are those in force: the YAML with the store's runtime overrides applied."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._store: ShadowStore | None = None
        path = store_path(snapshot)
        if snapshot.config.store.url is None and not path.exists():
            typer.echo(f"no shadow results yet ({path} does not exist)", err=True)
            return
        from strangler.control.stores import open_store

        store = open_store(snapshot.config.store, snapshot.source)
        self._store = store
        overrides = store.overrides()
        if overrides:
            from strangler.control.effective import apply_overrides
            from strangler.runtime.snapshot_build import build_snapshot

            effective = apply_overrides(snapshot.config, overrides)
            self._snapshot = build_snapshot(effective, source=snapshot.source)

    def routes(self) -> list[dict[str, Any]]:
        return routes_report(self._store, shadowed_routes(self._snapshot))

    def route(self, route: str) -> dict[str, Any]:
        report = route_report(self._store, route) if self._store is not None else None
        if report is None:
            raise ControlError(f"no shadow results for route {route!r}", 2)
        return report

    def review(self, route: str, rule_path: str, verdict: str, reason: str) -> None:
        if self._store is None:
            raise ControlError(f"no shadow results for route {route!r}", 2)
        try:
            self._store.review(route, rule_path, verdict, reason, getpass.getuser(), time.time())
        except KeyError as exc:
            raise ControlError(f"route {route!r} has no difference path {rule_path!r}", 2) from exc
        except ValueError as exc:
            raise ControlError(str(exc), 2) from exc

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


def shadowed_routes(snapshot: Snapshot) -> list[str]:
    """The routes that are shadowed (stage shadow, or a canary that keeps shadowing), in match
    order."""
    return [
        row.spec.name for row in snapshot.table.rows() if row.spec.name in snapshot.shadow_routes
    ]


class RemoteDiffs:
    """A running gateway's /api/v1/diffs (the token in STRANGLER_ADMIN_TOKEN)."""

    def __init__(self, url: str) -> None:
        from strangler.cli.admin_reads import AdminResource

        self._api = AdminResource(url)

    def routes(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = self._api.get("/api/v1/diffs")
        return rows

    def route(self, route: str) -> dict[str, Any]:
        report: dict[str, Any] = self._api.get(f"/api/v1/diffs/{_quote(route)}")
        return report

    def review(self, route: str, rule_path: str, verdict: str, reason: str) -> None:
        body = {"path": rule_path, "verdict": verdict, "reason": reason}
        self._api.post(f"/api/v1/diffs/{_quote(route)}/reviews", body)

    def close(self) -> None:
        self._api.close()


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def open_source(snapshot: Snapshot | None, admin: str | None) -> DiffSource:
    if admin:
        return RemoteDiffs(admin)
    assert snapshot is not None, "a local read needs the config"
    return LocalDiffs(snapshot)


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


def show_routes(source: DiffSource, *, as_json: bool) -> int:
    rows = source.routes()
    if as_json:
        _json(rows)
        return 0
    table = []
    for row in rows:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(row["dropped"].items())) or "-"
        noise_only = row["equal_but_noise"]
        table.append(
            [
                row["route"],
                "shadow" if row["is_shadowed"] else "(was shadowed)",
                str(row["mirrored"]),
                str(row["compared"]),
                str(row["equal"]),
                str(noise_only),
                str(row["different"] - noise_only),
                _parity(row["equal"] + noise_only, row["compared"]),
                _parity(row["equal"], row["compared"]),
                dropped,
            ]
        )
    headers = ["ROUTE", "STAGE", "MIRRORED", "COMPARED", "EQUAL", "NOISE ONLY", "DIFFERENT"]
    print_table([*headers, "PARITY [95% CI]", "STRICT", "DROPPED"], table)
    if table:
        typer.echo(
            "\nCOMPARED counts pairs of answers (legacy's and new's to one request). PARITY "
            "counts those that differed only on noise (learned, or reviewed with "
            "`strangler diffs accept|noise`) as equal; STRICT does not."
        )
    return 0


def show_paths(source: DiffSource, route: str, *, as_json: bool) -> int:
    report = source.route(route)
    paths: list[dict[str, Any]] = report["paths"]
    if as_json:
        _json(paths)
        return 0
    samples = report["noise_samples"]
    compared, different = report["compared"], report["different"]
    typer.echo(
        f"{route}: {compared} comparisons, {different} with differences; "
        f"parity {_parity(report['equal'] + report['equal_but_noise'], compared)}"
    )
    typer.echo(
        "COUNT is the number of values that differed at PATH: one comparison adds one per "
        "differing value (per array element at a [*] path), so it is not a share of "
        f"{compared}.\nLEGACY NOISE: in how many of {samples} samples legacy differed from "
        "itself there.\n"
    )
    rows = [
        [
            p["rule_path"],
            p["kind"],
            str(p["count"]),
            f"{p['noise_count']}/{samples}" if samples else "-",
            p["review"] or ("noise (learned)" if p["learned_noise"] else "-"),
            (p["review_reason"] or "")[:40],
            _when(p["last_seen"]),
        ]
        for p in paths
    ]
    print_table(["PATH", "KIND", "COUNT", "LEGACY NOISE", "REVIEW", "WHY", "LAST SEEN"], rows)
    return 0


def example_sides(example: dict[str, Any], kind: str | None) -> dict[str, Any]:
    """A stored example with its sides named: legacy (the answer the client got) and new;
    the side that has no value at the path is left out."""
    out: dict[str, Any] = {
        "request": example.get("request"),
        "path": example.get("path"),
        "rule_path": example.get("rule_path"),
        "kind": kind,
    }
    absent = _ABSENT_SIDE.get(kind or "")
    for side, key in (("legacy", "primary"), ("new", "shadow")):
        if side != absent:
            out[side] = example.get(key)
    return out


def show_examples(source: DiffSource, route: str, *, as_json: bool) -> int:
    report = source.route(route)
    kinds = {p["rule_path"]: p["kind"] for p in report["paths"]}
    examples = [example_sides(e, kinds.get(e.get("rule_path", ""))) for e in report["examples"]]
    if as_json:
        _json(examples)
        return 0
    if not examples:
        typer.echo(f"no examples for route {route!r}")
        return 0
    color = sys.stdout.isatty()
    for example in examples:
        typer.echo(f"{example['request']}  {example['path']}  ({example['kind']})")
        for side, fg in (("legacy", "red"), ("new", "green")):
            value = _value_text(example, side)
            line = f"  {side + ':':<8}{value}"
            typer.echo(typer.style(line, fg=fg) if color else line)
    return 0


def _value_text(example: dict[str, Any], side: str) -> str:
    if side not in example:
        return ABSENT
    return orjson.dumps(example[side]).decode()


def review_path(source: DiffSource, command: str, route: str, rule_path: str, reason: str) -> int:
    """`accept` (an intended change; needs a reason) or `noise`: the path leaves the parity."""
    verdict = VERDICTS[command]
    source.review(route, rule_path, verdict, reason)
    typer.echo(f"{route} {rule_path}: marked {verdict}")
    return 0


def run(
    words: list[str],
    snapshot: Snapshot | None,
    *,
    admin: str | None,
    examples: bool,
    reason: str | None,
    as_json: bool,
) -> int:
    """`strangler diffs [ROUTE] | accept|noise ROUTE PATH`: the exit code (see the module)."""
    from strangler.errors import StranglerError

    if words and words[0] in VERDICTS:
        if len(words) != 3:
            typer.echo(f"usage: strangler diffs {words[0]} ROUTE PATH [-r REASON]", err=True)
            return 2
    elif len(words) > 1:
        typer.echo("usage: strangler diffs [ROUTE] [--examples] [--json]", err=True)
        return 2
    try:
        source = open_source(snapshot, admin)
        try:
            if words and words[0] in VERDICTS:
                return review_path(source, words[0], words[1], words[2], reason or "")
            if not words:
                return show_routes(source, as_json=as_json)
            if examples:
                return show_examples(source, words[0], as_json=as_json)
            return show_paths(source, words[0], as_json=as_json)
        finally:
            source.close()
    except ControlError as exc:
        typer.echo(f"error: {exc}", err=True)
        return exc.code
    except StranglerError as exc:  # StoreUnavailable: the store can't be reached or read
        typer.echo(f"error: {exc}", err=True)
        return 1
