"""DiffRules.from_config: defaults, accepted shapes, and bad rules named in the ValueError."""

from __future__ import annotations

from typing import Any

import pytest

from strangler.diff import DEFAULT_HEADERS, DiffRules, Tolerance, parse_path
from strangler.diff.paths import Step, Wildcard


def test_defaults() -> None:
    rules = DiffRules.from_config(None)
    assert rules == DiffRules.from_config({}) == DiffRules()
    assert (
        rules.headers
        == DEFAULT_HEADERS
        == (
            "Content-Type",
            "Location",
            "Cache-Control",
            "Set-Cookie",
        )
    )
    assert rules.should_compare_status
    assert (rules.max_differences, rules.max_depth) == (50, 64)


def test_full_config_is_kept() -> None:
    rules = DiffRules.from_config(
        {
            "ignore": ["$..updated_at", "$.meta.request_id", "$.projects[*].etag"],
            "unordered": {"$.projects": "id", "$.tags": None},
            "tolerance": {"$..price": 0.01, "$.stats.avg": "1%"},
            "normalize": [{"pattern": r"\d+", "replace": "<n>"}],
            "headers": ["Content-Type"],
            "status": False,
        }
    )
    assert rules.unordered == (("$.projects", "id"), ("$.tags", None))
    assert rules.tolerance == (
        ("$..price", Tolerance(0.01)),
        ("$.stats.avg", Tolerance(0.01, True)),
    )
    assert rules.normalize[0].apply("a 12 b 3") == "a <n> b <n>"
    assert rules.header_names == ("content-type",)
    assert not rules.should_compare_status


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.a", (Step("a"),)),
        ("$['a b']", (Step("a b"),)),
        ('$["a\\"b"]', (Step('a"b'),)),
        ("$[3]", (Step(3),)),
        ("$[*]", (Step(Wildcard.ANY),)),
        ("$.*", (Step(Wildcard.ANY),)),
        ("$..a", (Step("a", is_descent=True),)),
        ("$..[0]", (Step(0, is_descent=True),)),
        ("$..*", (Step(Wildcard.ANY, is_descent=True),)),
        ("$.a[*].b-c", (Step("a"), Step(Wildcard.ANY), Step("b-c"))),
        ("$.a..['b']", (Step("a"), Step("b", is_descent=True))),
    ],
)
def test_path_syntax(path: str, steps: tuple[Step, ...]) -> None:
    assert parse_path(path) == steps


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ([], "diff: expected a mapping"),
        ({"ignroe": []}, "diff: unknown rule 'ignroe'"),
        ({"ignore": "$.a"}, "diff.ignore: expected a list"),
        ({"ignore": ["$.a", 3]}, "diff.ignore[1]: expected a string"),
        ({"ignore": ["a.b"]}, "diff.ignore[0]: 'a.b' is not a valid path: a path starts with '$'"),
        ({"ignore": ["$.a["]}, "diff.ignore[0]: '$.a[' is not a valid path"),
        ({"ignore": ["$.a[-1]"]}, "diff.ignore[0]"),
        ({"ignore": ["$['a]"]}, "unclosed quote"),
        ({"ignore": ["$."]}, "expected a member name"),
        ({"ignore": ["$.a b"]}, "diff.ignore[0]"),
        ({"unordered": ["$.a"]}, "diff.unordered: expected a mapping"),
        ({"unordered": {"$.a": 1}}, "diff.unordered['$.a']: expected a key field name or null"),
        ({"unordered": {"$.a": ""}}, "diff.unordered['$.a']"),
        ({"unordered": {"$a": "id"}}, "diff.unordered['$a']: '$a' is not a valid path"),
        ({"tolerance": {"$.p": "abc"}}, "diff.tolerance['$.p']: expected a number or a percentage"),
        ({"tolerance": {"$.p": -1}}, "diff.tolerance['$.p']: expected a finite number >= 0"),
        ({"tolerance": {"$.p": True}}, "diff.tolerance['$.p']"),
        ({"tolerance": {"$.p": "-1%"}}, "diff.tolerance['$.p']"),
        ({"tolerance": {"p": 1}}, "diff.tolerance['p']: 'p' is not a valid path"),
        ({"normalize": {"pattern": "x"}}, "diff.normalize: expected a list"),
        (
            {"normalize": [{"pattern": "("}]},
            "diff.normalize[0].pattern: pattern '(' is not a valid",
        ),
        ({"normalize": [{"pattern": "a*"}]}, "diff.normalize[0].pattern: pattern 'a*' matches the"),
        ({"normalize": [{"pattern": "x", "replace": 1}]}, "diff.normalize[0].replace"),
        ({"normalize": [{"pattern": "x", "with": "y"}]}, "diff.normalize[0]: expected a mapping"),
        ({"normalize": [{"replace": "y"}]}, "diff.normalize[0].pattern"),
        ({"headers": ["Content Type"]}, "diff.headers[0]: 'Content Type' is not a header name"),
        ({"headers": "Location"}, "diff.headers: expected a list"),
        ({"status": "yes"}, "diff.status: expected true or false"),
        ({"max_differences": -1}, "diff.max_differences"),
        ({"max_depth": 0}, "diff.max_depth: expected an integer between 1 and 200"),
        ({"max_depth": 1000}, "diff.max_depth"),
        ({"max_depth": True}, "diff.max_depth: expected an integer"),
    ],
)
def test_bad_rules_name_the_rule(config: Any, names: str) -> None:
    with pytest.raises(ValueError) as raised:
        DiffRules.from_config(config)
    assert names in str(raised.value)


def test_too_many_overlapping_descent_rules_are_rejected() -> None:
    ignore = [f"$..a{i}..b{i}..c{i}" for i in range(12)]
    with pytest.raises(ValueError, match="matcher states"):
        DiffRules.from_config({"ignore": ignore})


@pytest.mark.parametrize(
    ("text", "tolerance"),
    [
        (0.01, Tolerance(0.01)),
        (2, Tolerance(2.0)),
        ("1%", Tolerance(0.01, True)),
        (" 2.5 % ", Tolerance(0.025, True)),
        (".5%", Tolerance(0.005, True)),
    ],
)
def test_tolerance_forms(text: object, tolerance: Tolerance) -> None:
    assert Tolerance.parse(text) == tolerance


def test_rules_are_hashable_and_compare_by_config() -> None:
    config = {"ignore": ["$.a"], "tolerance": {"$.b": "1%"}}
    assert DiffRules.from_config(config) == DiffRules.from_config(config)
    assert len({DiffRules.from_config(config), DiffRules.from_config(config)}) == 1
