"""DiffRules: a route's `diff:` config, validated and compiled once at config load.

Pure. `DiffRules.from_config` raises ValueError naming the rule at fault (`diff.ignore[2]`,
`diff.tolerance['$..price']`, `diff.normalize[0].pattern`); a DiffRules that exists is valid.

Config (every key optional; `None` or `{}` gives the defaults):

    ignore: ["$..updated_at", "$.meta.request_id"]   # paths whose subtrees are not compared
    unordered: {"$.projects": "id", "$.tags": null}  # arrays matched by key field, or multiset
    tolerance: {"$..price": 0.01, "$.stats.avg": "1%"}  # numbers: absolute, or relative with %
    normalize: [{pattern: "...", replace: "<time>"}]  # regex rewrites of strings (normalize.py)
    headers: ["Content-Type", "Location", "Cache-Control", "Set-Cookie"]  # compared headers
    status: true                                     # compare status codes
    max_differences: 50                              # stop and mark the result truncated after
    max_depth: 64                                    # nesting compared node by node (<= 200)
    max_nodes: 200000                                # JSON nodes a pair may visit (json_walk)

Paths use the JSONPath subset in paths.py. Unknown keys are errors: a typo in a noise rule
would otherwise silently keep its noise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from strangler.diff.automaton import PathRule, PathState, RuleKind, compile_rules
from strangler.diff.normalize import Normalizer
from strangler.diff.paths import Step, parse_path
from strangler.diff.tolerance import Tolerance

DEFAULT_HEADERS = ("Content-Type", "Location", "Cache-Control", "Set-Cookie")
DEFAULT_MAX_DIFFERENCES = 50
DEFAULT_MAX_DEPTH = 64
# 200,000 nodes are 20-120 ms of one core in the compiled build, by what they hold (a regex
# normalizer costs most). bench_diff.py's documents, walked whole, visit 42 nodes per KiB of
# the pair: two 1 MiB answers (shadow.max_body_bytes) ~86,000. Dense or hostile pairs pass it.
DEFAULT_MAX_NODES = 200_000
# The walk recurses about two frames per level; 200 levels stay far from Python's 1000.
MAX_DEPTH_LIMIT = 200
_KNOWN_KEYS = (
    "ignore",
    "unordered",
    "tolerance",
    "normalize",
    "headers",
    "status",
    "max_differences",
    "max_depth",
    "max_nodes",
)
# RFC 9110 §5.1: a field name is a token.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


@dataclass(frozen=True, slots=True)
class DiffRules:
    """A route's comparison rules. Construct with `from_config`, or directly for tests."""

    ignore: tuple[str, ...] = ()
    unordered: tuple[tuple[str, str | None], ...] = ()
    tolerance: tuple[tuple[str, Tolerance], ...] = ()
    normalize: tuple[Normalizer, ...] = ()
    headers: tuple[str, ...] = DEFAULT_HEADERS
    should_compare_status: bool = True
    max_differences: int = DEFAULT_MAX_DIFFERENCES
    max_depth: int = DEFAULT_MAX_DEPTH
    max_nodes: int = DEFAULT_MAX_NODES
    paths: PathState = field(init=False, repr=False, compare=False)
    header_names: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rules: list[PathRule] = []
        for i, path in enumerate(self.ignore):
            rules.append(PathRule(RuleKind.IGNORE, _steps(path, f"diff.ignore[{i}]")))
        for path, key in self.unordered:
            where = f"diff.unordered[{path!r}]"
            if key is not None and (not isinstance(key, str) or not key):
                raise ValueError(f"{where}: the key field must be a non-empty string or null")
            rules.append(PathRule(RuleKind.UNORDERED, _steps(path, where), key=key))
        for path, tolerance in self.tolerance:
            steps = _steps(path, f"diff.tolerance[{path!r}]")
            rules.append(PathRule(RuleKind.TOLERANCE, steps, tolerance=tolerance))
        for i, name in enumerate(self.headers):
            if not isinstance(name, str) or not _TOKEN.match(name):
                raise ValueError(f"diff.headers[{i}]: {name!r} is not a header name")
        _check_int("diff.max_differences", self.max_differences, 0, None)
        _check_int("diff.max_depth", self.max_depth, 1, MAX_DEPTH_LIMIT)
        _check_int("diff.max_nodes", self.max_nodes, 1, None)
        # Frozen dataclass: the derived fields are set once, here, and never again.
        object.__setattr__(self, "paths", compile_rules(rules))
        lowered = tuple(dict.fromkeys(name.lower() for name in self.headers))
        object.__setattr__(self, "header_names", lowered)

    @classmethod
    def from_config(cls, config: Mapping[str, object] | None) -> DiffRules:
        """Validate and compile a route's `diff:` mapping (None: all defaults)."""
        if config is None:
            return cls()
        if not isinstance(config, Mapping):
            raise ValueError(f"diff: expected a mapping of rules, got {type(config).__name__}")
        unknown = [key for key in config if key not in _KNOWN_KEYS]
        if unknown:
            raise ValueError(
                f"diff: unknown rule {unknown[0]!r}; expected one of {', '.join(_KNOWN_KEYS)}"
            )
        ignore = tuple(_strings(config.get("ignore", []), "diff.ignore"))
        unordered = tuple(_mapping(config.get("unordered", {}), "diff.unordered").items())
        tolerance: list[tuple[str, Tolerance]] = []
        for path, amount in _mapping(config.get("tolerance", {}), "diff.tolerance").items():
            try:
                tolerance.append((path, Tolerance.parse(amount)))
            except ValueError as exc:
                raise ValueError(f"diff.tolerance[{path!r}]: {exc}") from exc
        headers = tuple(_strings(config.get("headers", list(DEFAULT_HEADERS)), "diff.headers"))
        status = config.get("status", True)
        if not isinstance(status, bool):
            raise ValueError(f"diff.status: expected true or false, got {status!r}")
        return cls(
            ignore=ignore,
            unordered=tuple((path, _key(key, path)) for path, key in unordered),
            tolerance=tuple(tolerance),
            normalize=_normalizers(config.get("normalize", [])),
            headers=headers,
            should_compare_status=status,
            max_differences=_int(config, "max_differences", DEFAULT_MAX_DIFFERENCES),
            max_depth=_int(config, "max_depth", DEFAULT_MAX_DEPTH),
            max_nodes=_int(config, "max_nodes", DEFAULT_MAX_NODES),
        )


def _steps(path: object, where: str) -> tuple[Step, ...]:
    if not isinstance(path, str):
        raise ValueError(f"{where}: expected a path string, got {path!r}")
    try:
        return parse_path(path)
    except ValueError as exc:
        raise ValueError(f"{where}: {path!r} is not a valid path: {exc}") from exc


def _check_int(where: str, value: object, low: int, high: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        bounds = f">= {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{where}: expected an integer {bounds}, got {value}")


def _int(config: Mapping[str, object], key: str, default: int) -> int:
    value = config.get(key, default)
    # Checked again in __post_init__ with bounds; here only so the type is known.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"diff.{key}: expected an integer, got {value!r}")
    return value


def _strings(value: object, where: str) -> list[str]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{where}: expected a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise ValueError(f"{where}[{i}]: expected a string, got {item!r}")
    return list(value)


def _mapping(value: object, where: str) -> dict[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected a mapping of path to value, got {value!r}")
    for key in value:
        if not isinstance(key, str):
            raise ValueError(f"{where}: expected string paths as keys, got {key!r}")
    return dict(value)


def _key(value: object, path: str) -> str | None:
    if value is None or (isinstance(value, str) and value):
        return value
    raise ValueError(
        f"diff.unordered[{path!r}]: expected a key field name or null (multiset), got {value!r}"
    )


def _normalizers(value: object) -> tuple[Normalizer, ...]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"diff.normalize: expected a list of {{pattern, replace}}, got {value!r}")
    normalizers: list[Normalizer] = []
    for i, item in enumerate(value):
        where = f"diff.normalize[{i}]"
        if not isinstance(item, Mapping) or set(item) - {"pattern", "replace"}:
            raise ValueError(f"{where}: expected a mapping with 'pattern' and 'replace'")
        pattern, replace = item.get("pattern"), item.get("replace", "")
        if not isinstance(pattern, str) or not pattern:
            raise ValueError(f"{where}.pattern: expected a non-empty regex string")
        if not isinstance(replace, str):
            raise ValueError(f"{where}.replace: expected a string, got {replace!r}")
        try:
            normalizers.append(Normalizer.compile(pattern, replace))
        except ValueError as exc:
            raise ValueError(f"{where}.pattern: {exc}") from exc
    return tuple(normalizers)
