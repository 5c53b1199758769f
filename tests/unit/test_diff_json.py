"""JSON bodies: structure, arrays, numbers, nulls, bounds, paths; one behaviour per row."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strangler.diff import (
    BodyKind,
    Comparison,
    DifferenceKind,
    DiffRules,
    ResponseSample,
    compare_responses,
)

CHANGED = DifferenceKind.CHANGED
MISSING = DifferenceKind.MISSING
EXTRA = DifferenceKind.EXTRA
TYPE_CHANGED = DifferenceKind.TYPE_CHANGED
JSON_HEADERS = (("Content-Type", "application/json"),)


def sample(document: Any, *, raw: bytes | None = None) -> ResponseSample:
    body = orjson.dumps(document) if raw is None else raw
    return ResponseSample(200, JSON_HEADERS, body)


def compare(a: Any, b: Any, config: dict[str, Any] | None = None) -> Comparison:
    return compare_responses(sample(a), sample(b), DiffRules.from_config(config))


def found(a: Any, b: Any, config: dict[str, Any] | None = None) -> list[tuple[str, DifferenceKind]]:
    return [(d.path, d.kind) for d in compare(a, b, config).differences]


@pytest.mark.parametrize(
    ("primary", "shadow", "expected"),
    [
        ({"a": 1}, {"a": 1}, []),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, []),  # key order is not a difference
        ({"a": 1}, {"a": 2}, [("$.a", CHANGED)]),
        ({"a": 1, "b": 2}, {"a": 1}, [("$.b", MISSING)]),
        ({"a": 1}, {"a": 1, "c": 3}, [("$.c", EXTRA)]),
        ({"a": {"b": {"c": "x"}}}, {"a": {"b": {"c": "y"}}}, [("$.a.b.c", CHANGED)]),
        ({"a": [1, 2, 3]}, {"a": [1, 2, 4]}, [("$.a[2]", CHANGED)]),
        ({"a": [1, 2, 3]}, {"a": [1, 2]}, [("$.a[2]", MISSING)]),
        ({"a": [1]}, {"a": [1, 5]}, [("$.a[1]", EXTRA)]),
        ({"a": [1, 2]}, {"a": [2, 1]}, [("$.a[0]", CHANGED), ("$.a[1]", CHANGED)]),
        ({"a": "x"}, {"a": 1}, [("$.a", TYPE_CHANGED)]),
        ({"a": {}}, {"a": []}, [("$.a", TYPE_CHANGED)]),
        ([1, 2], {"a": 1}, [("$", TYPE_CHANGED)]),
        ("plain", "other", [("$", CHANGED)]),
    ],
)
def test_structure(primary: Any, shadow: Any, expected: list[tuple[str, DifferenceKind]]) -> None:
    assert found(primary, shadow) == expected


@pytest.mark.parametrize(
    ("primary", "shadow", "expected"),
    [
        (1, 1.0, []),  # int and float are equal when numerically equal
        ({"n": [1, 2.5]}, {"n": [1.0, 2.5]}, []),
        (0, -0.0, []),
        (1, 1.5, [("$", CHANGED)]),
        (True, 1, [("$", TYPE_CHANGED)]),  # a bool is never a number
        (False, 0.0, [("$", TYPE_CHANGED)]),
        ([True], [1], [("$[0]", TYPE_CHANGED)]),  # even inside an otherwise == container
        ({"ok": True}, {"ok": 1}, [("$.ok", TYPE_CHANGED)]),
        (True, False, [("$", CHANGED)]),
        (True, True, []),
    ],
)
def test_numbers_and_bools(
    primary: Any, shadow: Any, expected: list[tuple[str, DifferenceKind]]
) -> None:
    assert found(primary, shadow) == expected


@pytest.mark.parametrize(
    ("primary", "shadow", "expected"),
    [
        ({"a": None}, {"a": None}, []),
        ({"a": None}, {"a": 0}, [("$.a", TYPE_CHANGED)]),
        ({"a": None}, {"a": ""}, [("$.a", TYPE_CHANGED)]),
        ({"a": "x"}, {"a": None}, [("$.a", TYPE_CHANGED)]),
        ({"a": None}, {}, [("$.a", MISSING)]),  # absent is not null
        ({}, {"a": None}, [("$.a", EXTRA)]),
    ],
)
def test_nulls(primary: Any, shadow: Any, expected: list[tuple[str, DifferenceKind]]) -> None:
    assert found(primary, shadow) == expected


def test_difference_values_are_kept() -> None:
    (difference,) = compare({"a": {"b": 1}}, {"a": {"b": "1"}}).differences
    assert (difference.primary, difference.shadow) == (1, "1")
    (missing,) = compare({"a": [1, 2]}, {}).differences
    assert (missing.primary, missing.shadow) == ([1, 2], None)


PROJECTS = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}, {"id": 3, "name": "c"}]
KEYED = {"unordered": {"$.projects": "id"}}
MULTISET = {"unordered": {"$.tags": None}}


@pytest.mark.parametrize(
    ("config", "primary", "shadow", "expected"),
    [
        (KEYED, {"projects": PROJECTS}, {"projects": PROJECTS[::-1]}, []),
        (
            KEYED,
            {"projects": PROJECTS},
            {"projects": [PROJECTS[2], {"id": 1, "name": "A"}, PROJECTS[1]]},
            [("$.projects[?(@.id==1)].name", CHANGED)],
        ),
        (
            KEYED,
            {"projects": PROJECTS},
            {"projects": PROJECTS[1:]},
            [("$.projects[?(@.id==1)]", MISSING)],
        ),
        (
            KEYED,
            {"projects": PROJECTS},
            {"projects": [*PROJECTS, {"id": 4, "name": "d"}]},
            [("$.projects[?(@.id==4)]", EXTRA)],
        ),
        (
            {"unordered": {"$.projects": "slug"}},
            {"projects": [{"slug": "x-1", "n": 1}]},
            {"projects": [{"slug": "x-1", "n": 2}]},
            [('$.projects[?(@.slug=="x-1")].n', CHANGED)],
        ),
        # A key true must not pair with a key 1.
        (
            KEYED,
            {"projects": [{"id": True}]},
            {"projects": [{"id": 1}]},
            [("$.projects[?(@.id==true)]", MISSING), ("$.projects[?(@.id==1)]", EXTRA)],
        ),
        # Duplicate keys pair up in order of appearance; the unpaired rest is extra or missing.
        (
            KEYED,
            {"projects": [{"id": 1, "n": 1}, {"id": 1, "n": 2}]},
            {"projects": [{"id": 1, "n": 1}, {"id": 2}, {"id": 1, "n": 3}, {"id": 1, "n": 4}]},
            [
                ("$.projects[?(@.id==1)].n", CHANGED),
                ("$.projects[?(@.id==2)]", EXTRA),
                ("$.projects[?(@.id==1)]", EXTRA),
            ],
        ),
        (
            KEYED,
            {"projects": [{"id": 1, "n": 1}, {"id": 1, "n": 2}, {"id": 1, "n": 3}]},
            {"projects": [{"id": 1, "n": 1}, {"id": 1, "n": 2}]},
            [("$.projects[?(@.id==1)]", MISSING)],
        ),
        # Elements without the key field are matched as a multiset among themselves.
        (KEYED, {"projects": [{"x": 1}, {"id": 1}]}, {"projects": [{"id": 1}, {"x": 1}]}, []),
        (MULTISET, {"tags": ["a", "b", "c"]}, {"tags": ["c", "a", "b"]}, []),
        (
            MULTISET,
            {"tags": ["a", "a", "b"]},
            {"tags": ["a", "b", "b"]},
            [("$.tags[1]", MISSING), ("$.tags[2]", EXTRA)],
        ),
        (MULTISET, {"tags": ["a", "b"]}, {"tags": ["b"]}, [("$.tags[0]", MISSING)]),
        (MULTISET, {"tags": ["a"]}, {"tags": ["z", "a"]}, [("$.tags[0]", EXTRA)]),
        (MULTISET, {"tags": [{"k": 1}, 2]}, {"tags": [2, {"k": 1}]}, []),
        (MULTISET, {"tags": [1, True]}, {"tags": [True, 1.0]}, []),
        # Multiset pairing applies the rules inside elements.
        (
            {"unordered": {"$.tags": None}, "ignore": ["$.tags[*].at"]},
            {"tags": [{"v": 1, "at": "x"}, {"v": 2, "at": "y"}]},
            {"tags": [{"v": 2, "at": "q"}, {"v": 1, "at": "r"}]},
            [],
        ),
        # An unordered rule on a non-array is inert.
        (KEYED, {"projects": {"id": 1}}, {"projects": {"id": 2}}, [("$.projects.id", CHANGED)]),
    ],
)
def test_unordered_arrays(
    config: dict[str, Any], primary: Any, shadow: Any, expected: list[tuple[str, DifferenceKind]]
) -> None:
    assert found(primary, shadow, config) == expected


def test_keyed_difference_aggregates_under_a_wildcard_rule_path() -> None:
    primary = {"projects": [{"id": i, "name": "x"} for i in range(20)]}
    shadow = {"projects": [{"id": i, "name": "y"} for i in reversed(range(20))]}
    differences = compare(primary, shadow, KEYED).differences
    assert len(differences) == 20
    assert {d.rule_path for d in differences} == {"$.projects[*].name"}


@pytest.mark.parametrize(
    ("config", "primary", "shadow", "is_equal"),
    [
        ({"tolerance": {"$.price": 0.01}}, {"price": 10.0}, {"price": 10.01}, True),
        ({"tolerance": {"$.price": 0.01}}, {"price": 0.3}, {"price": 0.31}, True),  # inclusive
        ({"tolerance": {"$.price": 0.01}}, {"price": 10.0}, {"price": 10.02}, False),
        ({"tolerance": {"$.price": 1}}, {"price": 10}, {"price": 11}, True),
        ({"tolerance": {"$.avg": "1%"}}, {"avg": 200.0}, {"avg": 202.0}, True),
        ({"tolerance": {"$.avg": "1%"}}, {"avg": 200.0}, {"avg": 203.0}, False),
        ({"tolerance": {"$.avg": "1%"}}, {"avg": -100}, {"avg": -100.9}, True),
        (
            {"tolerance": {"$..price": 0.5}},
            {"a": {"b": [{"price": 1}]}},
            {"a": {"b": [{"price": 1.4}]}},
            True,
        ),
        ({"tolerance": {"$.price": 0.01}}, {"other": 1.0}, {"other": 1.001}, False),
        ({"tolerance": {"$.price": 5}}, {"price": True}, {"price": 1}, False),
        ({"tolerance": {"$.price": 5}}, {"price": "1"}, {"price": "2"}, False),
    ],
)
def test_tolerance(config: dict[str, Any], primary: Any, shadow: Any, is_equal: bool) -> None:
    assert compare(primary, shadow, config).is_equal is is_equal


TIME = {"normalize": [{"pattern": r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z?", "replace": "<time>"}]}


@pytest.mark.parametrize(
    ("config", "primary", "shadow", "is_equal"),
    [
        (TIME, {"at": "2024-01-01T10:00:00Z"}, {"at": "2025-02-02T11:11:11.5Z"}, True),
        (TIME, {"m": "saved 2024-01-01T10:00:00Z"}, {"m": "kept 2024-01-01T10:00:00Z"}, False),
        (TIME, ["2024-01-01T10:00:00Z"], ["2024-01-02T10:00:00Z"], True),
        (
            {
                "normalize": [
                    {
                        "pattern": "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        "replace": "<uuid>",
                    }
                ]
            },
            {"id": "123e4567-e89b-12d3-a456-426614174000"},
            {"id": "00000000-0000-0000-0000-000000000000"},
            True,
        ),
        (TIME, {"at": 20240101}, {"at": "2024-01-01T10:00:00Z"}, False),  # never across types
        # `replace` is literal: a backslash is not a group reference.
        ({"normalize": [{"pattern": "(a)", "replace": r"\1"}]}, "a", r"\1", True),
    ],
)
def test_normalizers(config: dict[str, Any], primary: Any, shadow: Any, is_equal: bool) -> None:
    assert compare(primary, shadow, config).is_equal is is_equal


@pytest.mark.parametrize(
    ("ignore", "primary", "shadow", "expected"),
    [
        (["$.meta.request_id"], {"meta": {"request_id": "a"}}, {"meta": {"request_id": "b"}}, []),
        (["$.meta.request_id"], {"meta": {"request_id": "a"}}, {"meta": {}}, []),
        (["$.meta.request_id"], {"meta": {}}, {"meta": {"request_id": "b"}}, []),
        (["$.meta"], {"meta": {"x": 1}}, {"meta": [1]}, []),
        (
            ["$..updated_at"],
            {"a": {"b": [{"updated_at": 1}]}},
            {"a": {"b": [{"updated_at": 2}]}},
            [],
        ),
        (["$..updated_at"], {"updated_at": 1}, {"updated_at": 2}, []),
        (
            ["$.projects[*].etag"],
            {"projects": [{"etag": 1}, {"etag": 2}]},
            {"projects": [{"etag": 3}, {"etag": 4}]},
            [],
        ),
        (["$.projects[1]"], {"projects": [1, 2]}, {"projects": [1, 3]}, []),
        (
            ["$.projects[1]"],
            {"projects": [1, 2]},
            {"projects": [0, 3]},
            [("$.projects[0]", CHANGED)],
        ),
        (["$.a.*"], {"a": {"x": 1, "y": 2}}, {"a": {"x": 3}}, []),
        (["$['odd key']"], {"odd key": 1}, {"odd key": 2}, []),
        (["$..[*]"], {"a": [1]}, {"a": [2]}, []),
        (["$.meta.request_id"], {"request_id": 1}, {"request_id": 2}, [("$.request_id", CHANGED)]),
        (["$.a..id"], {"a": {"id": 1}, "id": 1}, {"a": {"id": 2}, "id": 2}, [("$.id", CHANGED)]),
        (["$"], {"a": 1}, [2], []),
    ],
)
def test_ignore(
    ignore: list[str], primary: Any, shadow: Any, expected: list[tuple[str, DifferenceKind]]
) -> None:
    assert found(primary, shadow, {"ignore": ignore}) == expected


@pytest.mark.parametrize(
    ("primary", "shadow", "path", "rule_path"),
    [
        ({"a": [0, {"b": 1}]}, {"a": [0, {"b": 2}]}, "$.a[1].b", "$.a[*].b"),
        ({"odd key": 1}, {"odd key": 2}, "$['odd key']", "$['odd key']"),
        ({"it's": 1}, {"it's": 2}, "$['it\\'s']", "$['it\\'s']"),
        ([[1]], [[2]], "$[0][0]", "$[*][*]"),
        ({"_x9": 1}, {"_x9": 2}, "$._x9", "$._x9"),
        ({"9x": 1}, {"9x": 2}, "$['9x']", "$['9x']"),
    ],
)
def test_paths_and_rule_paths(primary: Any, shadow: Any, path: str, rule_path: str) -> None:
    (difference,) = compare(primary, shadow).differences
    assert (difference.path, difference.rule_path) == (path, rule_path)
    # A rule path pasted into `ignore` silences the difference.
    assert compare(primary, shadow, {"ignore": [rule_path]}).is_equal


def test_the_51st_difference_is_not_reported() -> None:
    result = compare({"a": list(range(60))}, {"a": [-1] * 60})
    assert len(result.differences) == 50
    assert result.differences[-1].path == "$.a[49]"
    assert result.is_truncated and not result.is_equal


def test_exactly_max_differences_is_not_truncated() -> None:
    result = compare(list(range(50)), [-1] * 50)
    assert len(result.differences) == 50 and not result.is_truncated


def test_max_differences_is_configurable() -> None:
    result = compare(list(range(10)), [-1] * 10, {"max_differences": 3})
    assert len(result.differences) == 3 and result.is_truncated


@pytest.mark.parametrize(
    ("primary", "shadow", "expected_primary", "expected_shadow"),
    [
        ("x" * 300, "y" * 300, "x" * 200 + "…", "y" * 200 + "…"),
        ("x" * 200, "y", "x" * 200, "y"),
        ({f"k{i}": "v" * 20 for i in range(12)}, 1, "{…12 keys}", 1),
        (list(range(100)), {}, "[…100 items]", {}),
        ([1, 2], {"a": 1}, [1, 2], {"a": 1}),
    ],
)
def test_values_are_shortened(
    primary: Any, shadow: Any, expected_primary: object, expected_shadow: object
) -> None:
    (difference,) = compare({"v": primary}, {"v": shadow}).differences
    assert (difference.primary, difference.shadow) == (expected_primary, expected_shadow)


def nested(depth: int, leaf: bytes) -> ResponseSample:
    """A JSON array nested `depth` deep, as bytes: orjson.dumps refuses past 254 levels."""
    return sample(None, raw=b"[" * depth + leaf + b"]" * depth)


def compare_nested(depth: int, leaf_a: bytes, leaf_b: bytes, **config: Any) -> Comparison:
    rules = DiffRules.from_config(config)
    return compare_responses(nested(depth, leaf_a), nested(depth, leaf_b), rules)


@pytest.mark.parametrize("depth", [70, 300, 1000])
def test_deep_documents_compare_whole_at_the_depth_limit(depth: int) -> None:
    (difference,) = compare_nested(depth, b"1", b"2").differences
    assert difference.kind is CHANGED
    assert difference.path == "$" + "[0]" * 64
    assert "depth limit" in difference.detail


@pytest.mark.parametrize("depth", [70, 300, 1000])
def test_deep_equal_documents_are_equal(depth: int) -> None:
    assert compare_nested(depth, b"true", b" true").is_equal
    assert not compare_nested(depth, b"true", b"1").is_equal


def test_max_depth_is_configurable() -> None:
    (difference,) = compare_nested(5, b"1", b"2", max_depth=2).differences
    assert difference.path == "$[0][0]"


@pytest.mark.parametrize(
    ("primary", "shadow", "kind"),
    [
        (b'{"a": 1}', b'{"a":1}', BodyKind.JSON),
        (b'{"a": 1}', b'{"a": 1}', BodyKind.JSON),
        (b'{"a": 1}', b"<html>oops</html>", BodyKind.TEXT),  # unparsable: compared as text
    ],
)
def test_json_detection_by_content_type(primary: bytes, shadow: bytes, kind: BodyKind) -> None:
    result = compare_responses(sample(None, raw=primary), sample(None, raw=shadow), DiffRules())
    assert result.kind is kind


def test_json_detected_without_content_type_when_both_look_like_json() -> None:
    primary = ResponseSample(200, (), b' {"a": 1.0}')
    shadow = ResponseSample(200, (), b'{"a": 1}')
    result = compare_responses(primary, shadow, DiffRules())
    assert result.kind is BodyKind.JSON and result.is_equal


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)
RULES_FOR_PROPERTIES = [
    None,
    {"unordered": {"$.*": None, "$..items": "id"}, "tolerance": {"$..*": 0.5}, **TIME},
]


@settings(max_examples=300, deadline=None)
@given(value=json_values, rules=st.sampled_from(RULES_FOR_PROPERTIES))
def test_a_document_equals_itself(value: Any, rules: dict[str, Any] | None) -> None:
    assert compare(value, orjson.loads(orjson.dumps(value)), rules).is_equal


@settings(max_examples=300, deadline=None)
@given(a=json_values, b=json_values, rules=st.sampled_from(RULES_FOR_PROPERTIES))
def test_equality_is_symmetric(a: Any, b: Any, rules: dict[str, Any] | None) -> None:
    assert compare(a, b, rules).is_equal is compare(b, a, rules).is_equal
