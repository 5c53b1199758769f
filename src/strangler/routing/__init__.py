"""Routing: request method and path -> Decision. Pure; nothing here does I/O or reads a clock."""

from strangler.routing.matcher import RouteMatcher
from strangler.routing.model import (
    SUPPORTED_STAGES,
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
    "Decision",
    "DecisionReason",
    "PatternError",
    "RouteMatcher",
    "RoutePattern",
    "RouteRow",
    "RouteSpec",
    "RouteTable",
    "RouteTableError",
    "Stage",
    "Token",
    "TokenKind",
    "parse_match",
]
