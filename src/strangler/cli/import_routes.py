"""`strangler import-routes`: add a Rails app's routes (`bin/rails routes` output) to the config.

Rules:

- Every imported route is stage `legacy`, so importing moves no traffic: it names the routes
  Rails already serves, ready to move one by one.
- Existing routes are never changed. A route whose name is already in the config, or every
  request of which a config route already takes (overlap.covers: `GET /projects/:id` takes all
  of `GET /projects/:slug`, `ANY /*path` all of nearly anything), is "kept": the config's
  version wins, so a re-import adds nothing, and no route is added that could never match.
- New routes go after the config's routes, in Rails' order. Routes are tried in file order and
  the first match wins, so the user's routes (the ones already moved to `shadow` or `new`, often
  more specific) keep every request they match today; imported routes only take requests that
  fell through to `default`, and among themselves keep Rails' priority. Put before, a broad Rails
  route (`GET /*unmatched`, or one whose regex constraint the gateway cannot enforce) would
  silently take requests from a route already moved to the new backend.
- A warning names each added route some of whose requests an earlier route now takes, with an
  example request the real matcher sends there (`projects.show` (GET /projects/:id) takes
  GET /projects/new before `projects.new`): an earlier config route, or an earlier imported one
  whose constraint the gateway drops (without a dropped constraint, Rails sends the request to
  the same route, so nothing changed). Warnings go to stderr, or into `--json`'s `warnings`.
- The file is edited, not rewritten: the new routes are spliced in as text after the last line
  of `routes:` (ruamel.yaml's round-trip parser finds it and checks the result), so comments,
  blank lines, quoting and alignment elsewhere stay byte for byte.
- The result must load with the project's own loader (`parse_config`, the validation inside
  `load_config`, then `build_snapshot`: what `check-config` runs) before anything is written.
  It is written atomically (temp file in the same folder, same mode, fsync, rename). Nothing
  is written with `--dry-run` or when no route is added.

Exit codes: 0 done (skipped lines are reported, not errors), 2 unusable routes file or config.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orjson
import typer
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from strangler.cli.tables import print_table
from strangler.config import parse_config
from strangler.errors import ConfigError
from strangler.routing.matcher import RouteMatcher
from strangler.routing.overlap import covers_paths, first_cover, taken_request
from strangler.routing.pattern import RoutePattern, parse_match
from strangler.routing.routes_import import (
    ImportedRoute,
    Requirement,
    RequirementKind,
    RoutesImport,
    parse_routes,
)
from strangler.runtime.snapshot_build import build_snapshot

# A name that YAML reads back as the same string without quotes.
_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-/]*$")


class _Unusable(Exception):
    """The routes file or the config cannot be used; the message says why (exit 2)."""


@dataclass(frozen=True, slots=True)
class _Kept:
    route: ImportedRoute
    reason: str
    is_identical: bool  # the config has this very name and match (an earlier import)


@dataclass(frozen=True, slots=True)
class _Plan:
    added: tuple[ImportedRoute, ...]
    kept: tuple[_Kept, ...]


@dataclass(frozen=True, slots=True)
class OverlapWarning:
    """An added route some of whose requests an earlier route takes first."""

    route: ImportedRoute
    taken_by: str
    taken_by_match: str
    method: str
    path: str
    is_taken_by_imported: bool
    # What Rails applies to the earlier imported route and the gateway does not.
    constraints: tuple[Requirement, ...]
    # False when the added route matches every path of the earlier one, so that moved above,
    # it would take all of the earlier route's requests (a catch-all, a broader pattern).
    can_move_above: bool

    @property
    def taker(self) -> str:
        """The earlier route, and why Rails would not send it the request when that is so."""
        text = f"`{self.taken_by}` ({self.taken_by_match})"
        if self.constraints:
            shown = ", ".join(f"{r.key}: {r.value}" for r in self.constraints)
            text += f", whose constraint {{{shown}}} Rails applies and the gateway does not,"
        return text

    @property
    def taken(self) -> str:
        """What it takes from the added route, and what to do about it."""
        name = self.route.name
        text = f"takes {self.method} {self.path} before `{name}`"
        if self.can_move_above:
            return f"{text}; move {name} above it"
        return f"{text} ({name} matches every path of {self.taken_by}, so it cannot go above it)"

    @property
    def message(self) -> str:
        return f"{self.taker} {self.taken}"


def plan_import(imported: RoutesImport, existing: list[tuple[str, str]]) -> _Plan:
    """Split the import into routes to add and routes the config already has (name, match).

    The config has a route when one of its routes has the same name, or takes every request
    the imported route would (overlap.covers). Appended after it, the imported route could
    never match anything.
    """
    by_name = dict(existing)
    patterns = [parse_match(match) for _, match in existing]
    added: list[ImportedRoute] = []
    kept: list[_Kept] = []
    for route in imported.routes:
        if route.name in by_name:
            same = by_name[route.name] == route.match
            detail = "" if same else f" (its match there: {by_name[route.name]!r})"
            kept.append(_Kept(route, f"name already in the config{detail}", same))
            continue
        cover = first_cover(patterns, parse_match(route.match))
        if cover is not None:
            reason = f"the config's {existing[cover][0]!r} already takes these requests"
            kept.append(_Kept(route, reason, False))
        else:
            added.append(route)
    return _Plan(tuple(added), tuple(kept))


def overlap_warnings(
    existing: list[tuple[str, str]], added: tuple[ImportedRoute, ...]
) -> list[OverlapWarning]:
    """Each added route some of whose requests an earlier route takes first, where Rails would
    not: the earlier route is the config's, or an imported one whose dropped constraint Rails
    would apply to the example request (and the added route's own constraints, if any, let the
    example through). The example is one the whole resulting table (config routes, then added
    ones) sends to the earlier route.

    An imported route with a dropped constraint may take other requests too that Rails keeps
    out (`:id` with `/\\d+/` takes `/projects/abc`) while the example passes the constraint; its
    note on the route already says the constraint is not enforced.
    """
    names = [name for name, _ in existing] + [route.name for route in added]
    matches = [match for _, match in existing] + [route.match for route in added]
    patterns = [parse_match(match) for match in matches]
    matcher = RouteMatcher(patterns)
    # Config routes first (None), then the added ones with the constraints the gateway drops.
    dropping: list[tuple[ImportedRoute, tuple[Requirement, ...]] | None] = [None] * len(existing)
    dropping += [(route, route.constraints) for route in added]
    warnings: list[OverlapWarning] = []
    for offset, route in enumerate(added):
        later_index = len(existing) + offset
        later = patterns[later_index]
        for earlier_index in range(later_index):
            earlier = patterns[earlier_index]
            imported = dropping[earlier_index]
            if imported is not None and not imported[1]:
                continue  # Rails orders them the same way and applies nothing more.
            taken = taken_request(earlier, later)
            if taken is None or matcher.match(*taken) != earlier_index:
                # A third route, earlier still, takes this example.
                continue
            if _rails_verdict(route, later, taken[1]) is False:
                continue  # Rails keeps this request from the added route anyway.
            can_move_above = not covers_paths(later, earlier)
            if imported is not None and (
                # A broader route after it: the earlier route's note on its constraint says it.
                not can_move_above or _rails_verdict(imported[0], earlier, taken[1]) is True
            ):
                continue
            warnings.append(
                OverlapWarning(
                    route,
                    names[earlier_index],
                    matches[earlier_index],
                    taken[0],
                    taken[1],
                    is_taken_by_imported=imported is not None,
                    constraints=() if imported is None else imported[1],
                    can_move_above=can_move_above,
                )
            )
    return warnings


def _rails_verdict(route: ImportedRoute, pattern: RoutePattern, path: str) -> bool | None:
    """Whether Rails, applying `route`'s dropped constraints, lets the request for `path` (which
    the pattern matches) reach it: True when every path constraint whose param takes part
    accepts its value, False when one refuses it, None when that can't be told (a host
    constraint, a Ruby regex Python does not read the same way)."""
    normalized = path[:-1] if len(path) > 1 and path.endswith("/") else path
    params = pattern.capture(normalized) or {}
    verdict: bool | None = True
    for requirement in route.constraints:
        if requirement.kind is not RequirementKind.PATH_CONSTRAINT:
            verdict = None
            continue
        value = params.get(requirement.key)
        accepted = True if value is None else requirement.accepts(value)
        if accepted is False:
            return False
        if accepted is None:
            verdict = None
    return verdict


# -- editing the YAML text ---------------------------------------------------------------------


def _yaml_string(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar with the same value.
    return json.dumps(value, ensure_ascii=False)


def _render(routes: tuple[ImportedRoute, ...], dash_col: int, source: str) -> list[str]:
    pad = " " * dash_col
    lines = [
        f"{pad}# Imported from {source} by `strangler import-routes`: stage legacy, "
        "in the Rails app's order."
    ]
    for route in routes:
        name = route.name if _PLAIN_NAME.match(route.name) else _yaml_string(route.name)
        note = f"  # {'; '.join(route.notes)}" if route.notes else ""
        lines += [
            f"{pad}- name: {name}",
            f"{pad}  match: {_yaml_string(route.match)}{note}",
            f"{pad}  stage: legacy",
        ]
    return lines


def splice_routes(text: str, routes: tuple[ImportedRoute, ...], source: str) -> str:
    """`text` with `routes` appended to its `routes:` list; every other line left as it was."""
    newline = "\r\n" if "\r\n" in text else "\n"
    yaml = YAML(typ="rt")
    try:
        document = yaml.load(text)
    except YAMLError as exc:
        raise _Unusable(f"cannot edit the config: {exc}") from exc
    if not isinstance(document, CommentedMap):
        raise _Unusable("cannot edit the config: expected a mapping at the top")
    lines = text.splitlines()
    if "routes" not in document:
        result = newline.join([*lines, "routes:", *_render(routes, 2, source)]) + newline
        _check_splice(yaml, document, result, routes)
        return result

    key_line, _ = document.lc.key("routes")
    value = document["routes"]
    value_line, value_col = document.lc.value("routes")
    if isinstance(value, CommentedSeq) and lines[value_line][value_col:].startswith("[]"):
        # `routes: []` becomes a block list; whatever follows `[]` (a comment) stays.
        line = lines[value_line]
        lines[value_line] = (
            line[:value_col].rstrip() + " " + line[value_col + 2 :].strip()
        ).rstrip()
        insert_at, dash_col = value_line + 1, 2
    elif isinstance(value, CommentedSeq) and lines[value_line][value_col:].startswith("-"):
        dash_col = value_col
        keys = list(document)
        following = [document.lc.key(k)[0] for k in keys[keys.index("routes") + 1 :]]
        end = min(following, default=len(lines))
        # After the list's last content line: comments and blank lines before the next key
        # belong to that key.
        insert_at = key_line + 1
        for index in range(key_line + 1, end):
            stripped = lines[index].strip()
            if stripped and not stripped.startswith("#"):
                insert_at = index + 1
    else:
        raise _Unusable(
            "cannot edit the config: `routes:` must be a block list (`- name: ...` lines) or empty"
        )
    new_lines = [*lines[:insert_at], *_render(routes, dash_col, source), *lines[insert_at:]]
    result = newline.join(new_lines) + newline
    _check_splice(yaml, document, result, routes)
    return result


def _check_splice(
    yaml: YAML, before: CommentedMap, result: str, routes: tuple[ImportedRoute, ...]
) -> None:
    """The spliced text must read as the old document with exactly `routes` appended."""
    after = yaml.load(result)
    expected = [
        *(dict(item) for item in before.get("routes") or []),
        *({"name": r.name, "match": r.match, "stage": "legacy"} for r in routes),
    ]
    is_same_elsewhere = {k: v for k, v in after.items() if k != "routes"} == {
        k: v for k, v in before.items() if k != "routes"
    }
    if not is_same_elsewhere or [dict(item) for item in after["routes"]] != expected:
        raise _Unusable("cannot edit the config: its layout is not one this command can extend")


def _write_atomically(path: Path, text: str, mode: int) -> None:
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp_name, mode)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


# -- the command -------------------------------------------------------------------------------


def import_routes(routes_file: Path, config: Path, *, dry_run: bool, as_json: bool) -> int:
    """Run `strangler import-routes`; prints its report and returns the exit code."""
    try:
        return _run(routes_file, config, dry_run=dry_run, as_json=as_json)
    except (ConfigError, _Unusable) as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2


def _run(routes_file: Path, config: Path, *, dry_run: bool, as_json: bool) -> int:
    try:
        routes_text = routes_file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unusable(f"{routes_file}: cannot read the routes file: {exc}") from exc
    imported = parse_routes(routes_text)
    if not imported.rows_read:
        raise _Unusable(
            f"{routes_file}: no routes found; expected the output of `bin/rails routes` "
            "(or `bin/rails routes --expanded`)"
        )

    try:
        before = config.stat()
        config_text = config.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(config), None, "", f"cannot read the file: {exc.strerror}") from exc
    # load_config's own validation, on the very text that will be edited.
    current = parse_config(config_text, str(config))
    plan = plan_import(imported, [(r.name, r.match) for r in current.routes])

    written = False
    if plan.added:
        new_text = splice_routes(config_text, plan.added, routes_file.name)
        build_snapshot(parse_config(new_text, str(config)), source=str(config))
        if not dry_run:
            if config.stat().st_mtime_ns != before.st_mtime_ns:
                raise _Unusable(f"{config} changed while importing; nothing written, run again")
            _write_atomically(config, new_text, before.st_mode & 0o7777)
            written = True

    warnings = overlap_warnings([(r.name, r.match) for r in current.routes], plan.added)
    if not as_json:
        _print_warnings(warnings)
    if current.default != current.legacy_backend and plan.added and not as_json:
        typer.echo(
            f"warning: default backend is {current.default!r}, not the legacy backend "
            f"{current.legacy_backend!r}: requests that matched no route and now match an "
            "imported one go to the legacy backend",
            err=True,
        )
    if as_json:
        _print_json(routes_file, config, imported, plan, warnings, dry_run=dry_run, written=written)
    else:
        _print_report(routes_file, config, imported, plan, dry_run=dry_run, written=written)
    return 0


def _print_json(
    routes_file: Path,
    config: Path,
    imported: RoutesImport,
    plan: _Plan,
    warnings: list[OverlapWarning],
    *,
    dry_run: bool,
    written: bool,
) -> None:
    report = {
        "routes_file": str(routes_file),
        "config": str(config),
        "layout": imported.layout.value,
        "dry_run": dry_run,
        "written": written,
        "counts": {
            "added": len(plan.added),
            "kept": len(plan.kept),
            "skipped": len(imported.skipped),
            "warnings": len(warnings),
        },
        "added": [
            {"name": r.name, "match": r.match, "lines": list(r.lines), "notes": list(r.notes)}
            for r in plan.added
        ],
        "kept": [
            {
                "name": k.route.name,
                "match": k.route.match,
                "line": k.route.lines[0],
                "reason": k.reason,
            }
            for k in plan.kept
        ],
        "skipped": [{"line": s.line, "text": s.text, "reason": s.reason} for s in imported.skipped],
        "warnings": [
            {
                "route": w.route.name,
                "match": w.route.match,
                "taken_by": w.taken_by,
                "taken_by_match": w.taken_by_match,
                "is_taken_by_imported": w.is_taken_by_imported,
                "request": f"{w.method} {w.path}",
                "constraints": {r.key: r.value for r in w.constraints},
                "can_move_above": w.can_move_above,
                "message": w.message,
            }
            for w in warnings
        ],
    }
    typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())


def _print_report(
    routes_file: Path,
    config: Path,
    imported: RoutesImport,
    plan: _Plan,
    *,
    dry_run: bool,
    written: bool,
) -> None:
    if written:
        outcome = f"written to {config}"
    elif dry_run and plan.added:
        outcome = "dry run: nothing written"
    else:
        outcome = "nothing to write"
    typer.echo(
        f"{routes_file} ({imported.layout.value} layout) -> {config}: "
        f"added {len(plan.added)}, kept {len(plan.kept)}, skipped {len(imported.skipped)} "
        f"({outcome})"
    )
    notes = [(r.name, note) for r in plan.added for note in r.notes]
    if notes:
        typer.echo("\nNotes (also written as comments on the routes):")
        print_table(["ROUTE", "NOTE"], [[name, note] for name, note in notes])
    # Routes imported before (same name, same match) are only counted: a re-import would
    # otherwise list the whole app. Those the config has under another form are shown.
    differing = [k for k in plan.kept if not k.is_identical]
    if differing:
        typer.echo("\nKept (the config already has them in another form, left as they are):")
        print_table(
            ["LINE", "ROUTE", "MATCH", "WHY"],
            [[str(k.route.lines[0]), k.route.name, k.route.match, k.reason] for k in differing],
        )
    if imported.skipped:
        typer.echo("\nSkipped:")
        print_table(
            ["LINE", "WHAT", "WHY"],
            [[str(s.line), _clip(s.text, 60), s.reason] for s in imported.skipped],
        )


def _print_warnings(warnings: list[OverlapWarning]) -> None:
    """To stderr, one warning per earlier route: a route like `(/:locale)/about` takes requests
    of many later ones, and one line each would bury the rest."""
    by_taker: dict[str, list[OverlapWarning]] = {}
    for warning in warnings:
        by_taker.setdefault(warning.taker, []).append(warning)
    for taker, group in by_taker.items():
        if len(group) == 1:
            typer.echo(f"warning: {group[0].message}", err=True)
            continue
        typer.echo(f"warning: {taker} takes requests of {len(group)} imported routes:", err=True)
        for warning in group:
            typer.echo(f"  {warning.taken}", err=True)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
