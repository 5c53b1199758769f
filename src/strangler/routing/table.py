"""The route table: configured routes compiled once, then `decide` per request head.

Pure. Never awaits, never reads a clock. The same table, method and path always give the same
Decision, and that Decision is one built when the table was: deciding allocates nothing beyond
the match itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from strangler.routing.faults import FaultPlan
from strangler.routing.matcher import RouteMatcher
from strangler.routing.model import CanarySides, Decision, DecisionReason, RouteSpec, Stage
from strangler.routing.pattern import PatternError, RoutePattern, parse_match


class RouteTableError(ValueError):
    """A route could not be compiled.

    `index` is the route's position in the list and `field` the offending key, so the config layer
    can point at file:line:field.
    """

    def __init__(self, index: int, field: str, message: str) -> None:
        self.index = index
        self.field = field
        self.message = message
        super().__init__(f"routes[{index}].{field}: {message}")


@dataclass(frozen=True, slots=True)
class RouteRow:
    """One route as `strangler routes` shows it: position, spec, parsed pattern and Decision."""

    index: int
    spec: RouteSpec
    pattern: RoutePattern
    decision: Decision


@dataclass(frozen=True, slots=True)
class RouteTable:
    """Routes in file order, their compiled matcher, and one precomputed Decision per route.

    Build it with `RouteTable.build`; `decisions[i]` belongs to `routes[i]`.
    """

    routes: tuple[RouteSpec, ...]
    patterns: tuple[RoutePattern, ...]
    decisions: tuple[Decision, ...]
    unmatched: Decision
    matcher: RouteMatcher

    @classmethod
    def build(cls, routes: Sequence[RouteSpec], default_backend: str) -> RouteTable:
        """Compile `routes`; raises RouteTableError for the first route whose `match` is invalid."""
        patterns: list[RoutePattern] = []
        for index, route in enumerate(routes):
            try:
                patterns.append(parse_match(route.match))
            except PatternError as exc:
                raise RouteTableError(index, "match", str(exc)) from exc
            if route.stage is Stage.CANARY and (
                route.canary is None or route.canary_backend is None
            ):
                raise RouteTableError(index, "canary", "a canary route needs its canary settings")
        return cls(
            routes=tuple(routes),
            patterns=tuple(patterns),
            decisions=tuple(_decision(r) for r in routes),
            unmatched=Decision(
                route=None,
                stage=None,
                backend=default_backend,
                reason=DecisionReason.UNMATCHED_DEFAULT,
            ),
            matcher=RouteMatcher(patterns),
        )

    def __len__(self) -> int:
        return len(self.routes)

    def decide(self, method: str, path: str) -> Decision:
        """The Decision for one request head; `path` is the raw target and may carry `?query`."""
        query_at = path.find("?")
        if query_at >= 0:
            path = path[:query_at]
        index = self.matcher.match(method, path)
        return self.unmatched if index is None else self.decisions[index]

    def rows(self) -> tuple[RouteRow, ...]:
        """Every route in file order with the Decision it yields, for `strangler routes`."""
        return tuple(
            RouteRow(index, spec, pattern, decision)
            for index, (spec, pattern, decision) in enumerate(
                zip(self.routes, self.patterns, self.decisions, strict=True)
            )
        )


def _decision(route: RouteSpec) -> Decision:
    """The Decision for one route; a canary route's also holds one Decision per side."""
    sides = None
    shadow_backend = route.shadow_backend
    faults = route.faults
    if route.stage is Stage.CANARY and route.canary is not None and route.canary_backend:
        # A canary that keeps shadowing mirrors its legacy side only: users on new are
        # answered by new already.
        legacy = Decision(
            route.name,
            Stage.CANARY,
            route.backend,
            DecisionReason.CANARY_LEGACY,
            shadow_backend=shadow_backend,
            mirrors_unsafe=route.mirrors_unsafe,
            route_label=route.name,
            stage_label=Stage.CANARY.value,
            faults=_faults_on(faults, is_new=False),
        )
        sides = CanarySides(
            route.canary,
            legacy=legacy,
            new=Decision(
                route.name,
                Stage.CANARY,
                route.canary_backend,
                DecisionReason.CANARY_NEW,
                is_new_side=True,
                route_label=route.name,
                stage_label=Stage.CANARY.value,
                faults=_faults_on(faults, is_new=True),
            ),
            retries_on_legacy=route.retries_on_legacy,
        )
        shadow_backend = None
        # The route's own Decision is replaced by a side's before anything is forwarded.
        faults = None
    is_new_side = route.stage in _NEW_SIDE_STAGES
    return Decision(
        route=route.name,
        stage=route.stage,
        backend=route.backend,
        reason=route.reason,
        shadow_backend=shadow_backend,
        mirrors_unsafe=route.mirrors_unsafe,
        canary=sides,
        is_new_side=is_new_side,
        route_label=route.name,
        stage_label=route.stage.value,
        faults=_faults_on(faults, is_new=is_new_side),
    )


def _faults_on(faults: FaultPlan | None, *, is_new: bool) -> FaultPlan | None:
    """`faults` if they hit the side a Decision answers from, else None."""
    if faults is None or not faults.side.hits(is_new=is_new):
        return None
    return faults


_NEW_SIDE_STAGES: Final = frozenset({Stage.NEW, Stage.RETIRED})
