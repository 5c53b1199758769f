"""Diff: compare a primary (legacy) response with its shadow (new) under a route's noise rules.

Pure: no I/O, no clock reads, no logging. Rules are compiled once per route
(`DiffRules.from_config`); `compare_responses` is then a function of its arguments.
"""

from strangler.diff.compare import compare_responses
from strangler.diff.model import (
    BodyKind,
    Comparison,
    Difference,
    DifferenceKind,
    ResponseSample,
)
from strangler.diff.normalize import Normalizer
from strangler.diff.paths import format_path, format_rule_path, parse_path
from strangler.diff.rules import DEFAULT_HEADERS, DiffRules
from strangler.diff.stats import wilson_interval
from strangler.diff.tolerance import Tolerance

__all__ = [
    "DEFAULT_HEADERS",
    "BodyKind",
    "Comparison",
    "DiffRules",
    "Difference",
    "DifferenceKind",
    "Normalizer",
    "ResponseSample",
    "Tolerance",
    "compare_responses",
    "format_path",
    "format_rule_path",
    "parse_path",
    "wilson_interval",
]
