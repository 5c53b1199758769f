"""The diff's work bound (`diff.max_nodes`): a pair past it gives the OVER_BUDGET outcome, never an
exception, having visited no more than the budget; a pair within it is compared as before."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.diff import BodyKind, Comparison, DiffRules, ResponseSample, compare_responses
from strangler.diff.rules import DEFAULT_MAX_NODES

JSON_HEADERS = (("Content-Type", "application/json"),)


def nested(depth: int, leaf: Any) -> Any:
    node = leaf
    for _ in range(depth):
        node = [node]
    return node


def chain(depth: int, width: int, leaf: Any) -> Any:
    """Objects nested `depth` deep, `width` equal members each; the deepest leaf is `leaf`."""
    node: Any = {"leaf": leaf}
    for _ in range(depth):
        node = {**{f"k{i}": i for i in range(width)}, "next": node}
    return node


def deep_elements(leaf: int) -> list[Any]:
    return [chain(10, 5, [leaf, i]) for i in range(8)]


# Pairs shaped against the walk, each with the rules it needs; all differ somewhere.
PAIRS: list[tuple[str, Any, Any, dict[str, Any]]] = [
    ("long array", [0] * 5000, [*([0] * 4999), 1], {}),
    ("wide object", {f"k{i}": i for i in range(3000)}, {f"k{i}": -i for i in range(3000)}, {}),
    ("deep chain", chain(40, 20, 0), chain(40, 20, 1), {}),
    ("past max_depth", nested(70, [0] * 3000), nested(70, [*([0] * 2999), 1]), {}),
    ("multiset probes", deep_elements(0), deep_elements(1), {"unordered": {"$": None}}),
    (
        "keyed array",
        [{"id": i, "v": [0] * 20} for i in range(300)],
        [{"id": i, "v": [1] * 20} for i in reversed(range(300))],
        {"unordered": {"$": "id"}, "max_differences": 1000},
    ),
]
IDS = [name for name, *_ in PAIRS]


def compare(a: Any, b: Any, config: dict[str, Any], **more: Any) -> Comparison:
    rules = DiffRules.from_config({**config, **more})
    primary = ResponseSample(200, JSON_HEADERS, orjson.dumps(a))
    shadow = ResponseSample(200, JSON_HEADERS, orjson.dumps(b))
    return compare_responses(primary, shadow, rules)


@pytest.mark.parametrize(("name", "a", "b", "config"), PAIRS, ids=IDS)
def test_a_pair_past_the_budget_stops_within_it(
    name: str, a: Any, b: Any, config: dict[str, Any]
) -> None:
    needed = compare(a, b, config).nodes_visited
    budget = needed // 3
    result = compare(a, b, config, max_nodes=budget)
    assert (result.kind, result.body_compared, result.differences) == (
        BodyKind.OVER_BUDGET,
        False,
        (),
    )
    assert result.nodes_visited <= budget


@pytest.mark.parametrize(("name", "a", "b", "config"), PAIRS, ids=IDS)
def test_the_budget_is_exact(name: str, a: Any, b: Any, config: dict[str, Any]) -> None:
    unbounded = compare(a, b, config)
    needed = unbounded.nodes_visited
    assert unbounded.kind is BodyKind.JSON and unbounded.differences
    assert compare(a, b, config, max_nodes=needed) == unbounded
    assert compare(a, b, config, max_nodes=needed - 1).kind is BodyKind.OVER_BUDGET


def test_a_huge_array_stops_before_its_first_element() -> None:
    result = compare([0] * 200_000, [1] * 200_000, {})
    assert (result.kind, result.nodes_visited) == (BodyKind.OVER_BUDGET, 0)


def test_status_and_header_differences_survive_a_body_over_budget() -> None:
    rules = DiffRules.from_config({"max_nodes": 10})
    primary = ResponseSample(200, JSON_HEADERS, orjson.dumps(list(range(100))))
    shadow = ResponseSample(
        500, (("Content-Type", "text/json"),), orjson.dumps(list(range(1, 101)))
    )
    result = compare_responses(primary, shadow, rules)
    assert result.kind is BodyKind.OVER_BUDGET
    assert [d.path for d in result.differences] == ["status", "header:content-type"]
    assert not result.is_equal


def test_strictly_equal_subtrees_cost_nothing_however_large() -> None:
    document = {"items": list(range(100_000))}
    assert compare(document, document, {}, max_nodes=1).kind is BodyKind.JSON
    # Key order makes the documents' bytes differ: the root's 2 + 2 members are visited, and
    # the equal array below is skipped whole.
    reordered = {"b": list(range(100_000)), "a": 1}
    result = compare({"a": 1, "b": list(range(100_000))}, reordered, {}, max_nodes=4)
    assert (result.kind, result.is_equal, result.nodes_visited) == (BodyKind.JSON, True, 4)


def test_the_default_budget() -> None:
    assert DiffRules().max_nodes == DiffRules.from_config({}).max_nodes == DEFAULT_MAX_NODES


@pytest.mark.parametrize("value", [0, -1, True, "many", 1.5])
def test_max_nodes_must_be_a_positive_integer(value: object) -> None:
    with pytest.raises(ValueError, match=r"diff\.max_nodes"):
        DiffRules.from_config({"max_nodes": value})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(["a", "b"]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(["x", "y", "z"]), children, max_size=3)
    ),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(
    json_values, json_values, st.integers(1, 40), st.sampled_from([{}, {"unordered": {"$": None}}])
)
def test_a_budget_withholds_an_answer_but_never_changes_it(
    a: Any, b: Any, budget: int, config: dict[str, Any]
) -> None:
    unbounded = compare(a, b, config)
    bounded = compare(a, b, config, max_nodes=budget)
    assert bounded.nodes_visited <= budget
    if bounded.kind is BodyKind.OVER_BUDGET:
        assert unbounded.nodes_visited > budget
    else:
        assert bounded == unbounded
