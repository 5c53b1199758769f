"""Routing: request method and path -> Decision. Pure; nothing here does I/O or reads a clock."""

from strangler.routing.canary import (
    CanaryChoice,
    CanaryFacts,
    CanaryPlan,
    ChoiceReason,
    OverrideRefusal,
    Side,
    bucket,
    choose,
)
from strangler.routing.matcher import RouteMatcher
from strangler.routing.model import (
    SUPPORTED_STAGES,
    CanarySides,
    Decision,
    DecisionReason,
    RouteSpec,
    Stage,
)
from strangler.routing.pattern import (
    PatternError,
    RoutePattern,
    Token,
    TokenKind,
    parse_match,
)
from strangler.routing.table import RouteRow, RouteTable, RouteTableError

__all__ = [
    "SUPPORTED_STAGES",
    "CanaryChoice",
    "CanaryFacts",
    "CanaryPlan",
    "CanarySides",
    "ChoiceReason",
    "Decision",
    "DecisionReason",
    "OverrideRefusal",
    "PatternError",
    "RouteMatcher",
    "RoutePattern",
    "RouteRow",
    "RouteSpec",
    "RouteTable",
    "RouteTableError",
    "Side",
    "Stage",
    "Token",
    "TokenKind",
    "bucket",
    "choose",
    "parse_match",
]
