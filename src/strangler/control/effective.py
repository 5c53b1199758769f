"""The effective config: the YAML file's Config with the store's runtime overrides on top.

Pure. The YAML stays the declarative source (reviewable in git); promote, rollback and weight
changes are overrides kept in the store, applied here per rollout unit, and written back as YAML
by `strangler export`.

Rules:
- An override belongs to a rollout unit: a canary group, or the route's own name when it has
  none. It applies to every route of the unit, so the routes of one feature move together.
- Only `stage` and the canary `weight` are overridden; everything else comes from the YAML.
- An override naming a unit the YAML no longer has changes nothing (shown as orphaned).
"""

from __future__ import annotations

from collections.abc import Mapping

from strangler.config import Config, RouteConfig
from strangler.control.state import Override
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
