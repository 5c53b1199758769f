"""`strangler routes`: the route table in match order, as it is in force: the YAML with the
runtime overrides applied (from the config's store, or a running gateway's with `--admin`),
the same stages `strangler status` shows.

Rules:
- A stage or weight set by a runtime override is starred, and a footnote says who set it and
  how to let the YAML stand (`--json`: `yaml_stage` and `override`).
- `--match` explains one request against the same table in force.
- The YAML alone is a fallback, never a silent one: when the overrides can't be read, the table
  is the file's and one line on stderr says so. Before the first run (no SQLite file yet) no
  override can exist, and nothing is opened or created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from strangler.cli.control import AdminOption, override_notes
from strangler.cli.options import ConfigOption, JsonOption
from strangler.cli.route_match import canary_json
from strangler.cli.tables import print_table
from strangler.config import Config, load_config
from strangler.control.effective import apply_overrides, unit_of
from strangler.control.state import Override
from strangler.errors import ConfigError, StranglerError
from strangler.runtime.snapshot import Snapshot
from strangler.runtime.snapshot_build import build_snapshot


def routes(
    config: ConfigOption = Path("strangler.yaml"),
    admin: AdminOption = None,
    match: Annotated[
        str | None,
        typer.Option(
            "--match",
            metavar="REQUEST",
            help='Which route takes this request, and why the earlier ones do not: "GET /path".',
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Print the route table in force, in match order.

    Each route's stage (starred when a runtime override sets it) and backend, and a canary's
    weight, new backend and rollout group; the same stages `strangler status` shows.
    """
    base = _load_or_exit(config)
    overrides, problem = read_overrides(config, base, admin)
    if problem is not None:
        typer.echo(
            f"warning: runtime overrides not read ({problem}); the stages shown are the "
            "YAML's, and a running gateway may route otherwise",
            err=True,
        )
    snapshot = _snapshot_or_exit(config, apply_overrides(base, overrides))
    if match is not None:
        raise typer.Exit(_print_match(snapshot, base, overrides, match, as_json=as_json))
    _print_routes(snapshot, base, overrides, as_json=as_json)


def read_overrides(
    config: Path, base: Config, admin: str | None
) -> tuple[dict[str, Override], str | None]:
    """The overrides in force, or none and why they could not be read."""
    from strangler.cli.control_client import ControlError, RemoteClient

    if admin:
        try:
            client = RemoteClient(admin)
        except ControlError as exc:
            return {}, str(exc)
        try:
            return client.overrides(), None
        except ControlError as exc:
            return {}, str(exc)
        finally:
            client.close()
    if base.store.url is None and not base.store.sqlite_path(str(config)).exists():
        return {}, None
    from strangler.control.stores import open_store

    try:
        store = open_store(base.store, str(config))
    except StranglerError as exc:
        return {}, str(exc)
    try:
        return store.overrides(), None
    except StranglerError as exc:
        return {}, str(exc)
    finally:
        store.close()


def _print_routes(
    snapshot: Snapshot, base: Config, overrides: dict[str, Override], *, as_json: bool
) -> None:
    yaml_routes = {route.name: route for route in base.routes}
    rows: list[dict[str, object]] = []
    canaries: list[str] = []
    starred: list[tuple[str, str, dict[str, object]]] = []
    for row in snapshot.table.rows():
        yaml_route = yaml_routes[row.spec.name]
        override = overrides.get(unit_of(yaml_route))
        item: dict[str, object] = {
            "name": row.spec.name,
            "match": row.spec.match,
            "stage": row.spec.stage.value,
            "yaml_stage": yaml_route.stage.value,
            "override": None if override is None else override.to_json(),
            "backend": row.decision.backend,
            "reason": row.decision.reason.value,
        }
        if override is not None:
            starred.append((override.unit, yaml_route.stage.value, override.to_json()))
        sides = row.decision.canary
        if sides is not None:
            plan = sides.plan
            item["canary"] = canary_json(sides)
            canaries.append(f"{plan.weight:g}% to {sides.new.backend}, group {plan.group}")
        else:
            canaries.append("-")
        rows.append(item)
    if as_json:
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    headers = ["#", "NAME", "MATCH", "STAGE", "BACKEND"]
    table = [
        [
            str(i + 1),
            str(r["name"]),
            str(r["match"]),
            f"{r['stage']}{'*' if r['override'] is not None else ''}",
            str(r["backend"]),
        ]
        for i, r in enumerate(rows)
    ]
    table.append(["*", "(unmatched)", "ANY *", "-", snapshot.config.default])
    if any(text != "-" for text in canaries):
        # The CANARY column only appears when a route is in stage canary.
        headers.append("CANARY")
        for line, text in zip(table, [*canaries, "-"], strict=True):
            line.append(text)
    print_table(headers, table)
    notes = override_notes(starred)
    if notes:
        typer.echo("")
        for note in notes:
            typer.echo(note)


def _print_match(
    snapshot: Snapshot,
    base: Config,
    overrides: dict[str, Override],
    request: str,
    *,
    as_json: bool,
) -> int:
    """`--match`, with the override footnote when an override sets the matched route's stage."""
    from strangler.cli.route_match import RequestLineError, explain, parse_request_line, print_match

    code = print_match(snapshot, request, as_json=as_json)
    if as_json or code != 0 or not overrides:
        return code
    try:
        matched = explain(snapshot, parse_request_line(request)).get("route") or {}
    except RequestLineError:
        return code
    route = next((r for r in base.routes if r.name == matched.get("name")), None)
    override = None if route is None else overrides.get(unit_of(route))
    if route is not None and override is not None:
        typer.echo("")
        for note in override_notes([(override.unit, route.stage.value, override.to_json())]):
            typer.echo(note)
    return code


def _load_or_exit(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _snapshot_or_exit(path: Path, config: Config) -> Snapshot:
    try:
        return build_snapshot(config, source=str(path))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def register(app: typer.Typer) -> None:
    app.command()(routes)
