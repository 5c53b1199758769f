"""The effective config: the YAML file's Config with the store's runtime overrides on top.

Pure. The YAML stays the declarative source (reviewable in git); promote, rollback and weight
changes are overrides kept in the store, applied here per rollout unit, and written back as YAML
by `strangler export`.

Rules:
- An override belongs to a rollout unit: a canary group, or the route's own name when it has
  none. It applies to every route of the unit, so the routes of one feature move together.
- Only `stage` and the canary `weight` are overridden; everything else comes from the YAML.
- An override naming a unit the YAML no longer has changes nothing (shown as orphaned).
- An override is never dropped behind the user's back: a file that says otherwise is reported
  (`override_conflicts`), and `strangler reset` is the one way back to the file.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from strangler.config import Config, RouteConfig
from strangler.control.state import Override
from strangler.routing.canary import weight_to_bp
from strangler.routing.model import Stage


def unit_of(route: RouteConfig) -> str:
    """The rollout unit a route moves with."""
    return route.canary_group


def apply_overrides(config: Config, overrides: Mapping[str, Override]) -> Config:
    """`config` with each unit's override applied to its routes (the same object if none)."""
    if not overrides:
        return config
    routes: list[RouteConfig] = []
    changed = False
    for route in config.routes:
        override = overrides.get(unit_of(route))
        if override is None:
            routes.append(route)
            continue
        update: dict[str, object] = {}
        if override.stage is not None and override.stage != route.stage.value:
            update["stage"] = Stage(override.stage)
        if override.weight_bp is not None:
            update["canary"] = route.canary.model_copy(update={"weight": override.weight_bp / 100})
        if update:
            routes.append(route.model_copy(update=update))
            changed = True
        else:
            routes.append(route)
    return config.model_copy(update={"routes": routes}) if changed else config


def orphaned(config: Config, overrides: Mapping[str, Override]) -> list[str]:
    """Units with an override but no route in `config`."""
    units = {unit_of(route) for route in config.routes}
    return sorted(unit for unit in overrides if unit not in units)


def override_conflicts(
    old: Config | None, new: Config, overrides: Mapping[str, Override]
) -> list[str]:
    """One line per disagreement between the file `new` and an override in force: a route
    whose stage the file sets elsewhere than its unit's override keeps it, and a canary whose
    file weight differs from the override's. With `old` (the file before a reload), only what
    the edit changed is reported (a route new to the file counts as changed); with None,
    every disagreement (what `check-config` shows).

    Each line names the route, both values, who set the override and when, and the command
    that lets the file stand."""
    before = {} if old is None else {route.name: route for route in old.routes}
    old_groups = {} if old is None else old.canary_groups()
    new_groups = new.canary_groups()
    verb = "says" if old is None else "now says"
    lines: list[str] = []
    weights_done: set[str] = set()
    for route in new.routes:
        unit = unit_of(route)
        override = overrides.get(unit)
        if override is None:
            continue
        was = before.get(route.name)
        is_edited = old is None or was is None or was.stage is not route.stage
        if override.stage is not None and override.stage != route.stage.value and is_edited:
            lines.append(
                f"route {route.name}: the file {verb} stage {route.stage.value}, but "
                f"{_override_origin(override)} keeps it in {override.stage}; "
                f"{_reset_hint(route.name, unit)}"
            )
            continue
        in_canary = override.stage in (None, Stage.CANARY.value)
        group = new_groups.get(unit)
        if group is None or not in_canary or override.weight_bp is None or unit in weights_done:
            continue
        weights_done.add(unit)
        file_bp = weight_to_bp(group.weight)
        old_group = old_groups.get(unit)
        is_weight_edited = old is None or old_group is None or old_group.weight != group.weight
        if file_bp != override.weight_bp and is_weight_edited:
            lines.append(
                f"route {route.name}: the file {verb} canary weight {group.weight:g} %, but "
                f"{_override_origin(override)} keeps it at {override.weight_bp / 100:g} %; "
                f"{_reset_hint(route.name, unit)}"
            )
    return lines


def _override_origin(override: Override) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(override.updated_at))
    why = f": {override.reason!r}" if override.reason else ""
    return f"a runtime override (by {override.actor or 'unknown'} at {when}{why})"


def _reset_hint(route: str, unit: str) -> str:
    scope = "" if unit == route else f" for its rollout group {unit}"
    return f"`strangler reset {route} -r why` lets the file stand{scope}"
