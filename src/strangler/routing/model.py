"""Values the router works with: stages, compiled routes and the Decision it returns.

Pure data. Nothing here does I/O, and every value is immutable so one snapshot can be shared
by every request in flight without locks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from strangler.routing.canary import CanaryPlan, Side
from strangler.routing.faults import FaultPlan


class Stage(enum.StrEnum):
    """Where a route is in its migration (see ARCHITECTURE.md, "every route has a stage")."""

    LEGACY = "legacy"
    SHADOW = "shadow"
    CANARY = "canary"
    NEW = "new"
    RETIRED = "retired"


# Stages whose behaviour ships; a stage the enum gains before its behaviour does stays out
# of this set, and the config refuses it as reserved.
SUPPORTED_STAGES = frozenset({Stage.LEGACY, Stage.SHADOW, Stage.CANARY, Stage.NEW, Stage.RETIRED})


class DecisionReason(enum.StrEnum):
    """Why the router picked the backend it picked; shown in logs and `strangler routes`."""

    STAGE_LEGACY = "stage_legacy"
    STAGE_SHADOW = "stage_shadow"
    STAGE_NEW = "stage_new"
    # A canary route's own Decision, and the Decision of each side once `choose` picked one.
    STAGE_CANARY = "stage_canary"
    CANARY_LEGACY = "canary_legacy"
    CANARY_NEW = "canary_new"
    ROUTE_BACKEND = "route_backend"
    UNMATCHED_DEFAULT = "unmatched_default"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One route as configured, before compilation.

    `match` is a verb plus a Rails-style path pattern, exactly as `bin/rails routes` prints it,
    e.g. ``"GET|HEAD /api/projects/:id(.:format)"`` or ``"ANY /reports/*path"``.
    `backend` is the backend that answers; the config layer resolves it from the stage (legacy ->
    the legacy backend, new -> the new backend) or from the route's own `backend:` override.
    """

    name: str
    match: str
    stage: Stage
    backend: str
    reason: DecisionReason
    # Stage `shadow`: where the copy goes, and whether non-idempotent requests may be copied
    # (only when the route says the shadow target is a sandbox).
    shadow_backend: str | None = None
    mirrors_unsafe: bool = False
    # Stage `canary`: `backend` is the legacy side and `canary_backend` the new side; `canary` is
    # the rollout group's compiled settings (one object shared by every route of the group).
    canary_backend: str | None = None
    canary: CanaryPlan | None = None
    retries_on_legacy: bool = False
    # Faults injected into the answers of the side the plan names (a drill).
    faults: FaultPlan | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """What the router decided for one request head.

    `route` is None when nothing matched and the default backend answers. A Decision for a
    matched route is built once per route when the table compiles, so deciding allocates nothing.
    """

    route: str | None
    stage: Stage | None
    backend: str
    reason: DecisionReason
    shadow_backend: str | None = None
    mirrors_unsafe: bool = False
    # Stage `canary`: what `canary.choose` reads and the Decision for each side. Only a canary
    # route's Decision has one, so every other request pays one `is None` check for canaries.
    canary: CanarySides | None = None
    # The new side of the migration answers (stage new, or a canary's new side), whatever the
    # backend is called: the Rails bridge applies to it. Shadow copies always go to the new side.
    is_new_side: bool = False
    # The route and stage as metrics and the access log name them (plain strings, made once
    # with the table: `_default` and `none` when no route matched).
    route_label: str = "_default"
    stage_label: str = "none"
    # Faults injected into this Decision's answers: set only on the Decision of the side the
    # plan hits, so a route without faults costs one `is None` check per request.
    faults: FaultPlan | None = None


@dataclass(frozen=True, slots=True)
class CanarySides:
    """A canary route's settings and its two outcomes, built once with the route table.

    `legacy` and `new` are ordinary Decisions (stage canary, `canary` None) naming each side's
    backend, so the proxy forwards, counts and bridges the chosen one like any other and
    choosing a side allocates no Decision. The canary route's own Decision names the legacy side
    as its `backend`: that is who answers when nothing is chosen, and what `strangler routes`
    lists as the route's backend.
    """

    plan: CanaryPlan
    legacy: Decision
    new: Decision
    # `canary.retry_on_legacy`: a safe request new refused goes to legacy instead.
    retries_on_legacy: bool = False

    def side(self, side: Side) -> Decision:
        return self.new if side is Side.NEW else self.legacy
