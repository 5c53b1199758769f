"""Status, headers, text and binary bodies, truncated captures; one behaviour per row."""

from __future__ import annotations

from typing import Any

import pytest

from strangler.diff import (
    BodyKind,
    Comparison,
    DifferenceKind,
    DiffRules,
    ResponseSample,
    compare_responses,
)
from strangler.diff.text import MAX_DIFF_CHARS, MAX_DIFF_LINES

HTML = (("Content-Type", "text/html; charset=utf-8"),)
TIME = {"normalize": [{"pattern": r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z?", "replace": "<time>"}]}


def compare_text(a: str, b: str, config: dict[str, Any] | None = None) -> Comparison:
    return compare_responses(
        ResponseSample(200, HTML, a.encode()),
        ResponseSample(200, HTML, b.encode()),
        DiffRules.from_config(config),
    )


@pytest.mark.parametrize(
    ("primary", "shadow", "config", "is_equal"),
    [
        ("<p>Hello</p>", "<p>Hello</p>", None, True),
        ("<p>Hello   world</p>", "<p>Hello world</p>", None, True),
        ("<ul>\n  <li>a</li>\n\n</ul>\n", "<ul>\n<li>a</li>\n</ul>", None, True),
        ("<p>Hello</p>", "<p>Hullo</p>", None, False),
        ("<p>Hello</p>", "<p> Hello</p>", None, False),  # a new space inside a line counts
        ("at 2024-01-01T10:00:00Z", "at 2025-06-30T23:59:59.123Z", TIME, True),
        ("at 2024-01-01T10:00:00Z", "on 2025-06-30T23:59:59.123Z", TIME, False),
    ],
)
def test_text_bodies(primary: str, shadow: str, config: Any, is_equal: bool) -> None:
    result = compare_text(primary, shadow, config)
    assert (result.kind, result.is_equal) == (BodyKind.TEXT, is_equal)


def test_text_difference_keeps_a_short_unified_diff() -> None:
    primary = "\n".join(f"<li>item {i}</li>" for i in range(100))
    shadow = primary.replace("item 50<", "item fifty<")
    (difference,) = compare_text(primary, shadow).differences
    assert (difference.path, difference.rule_path, difference.kind) == (
        "body",
        "body",
        DifferenceKind.CHANGED,
    )
    assert "-<li>item 50</li>" in difference.detail
    assert "+<li>item fifty</li>" in difference.detail
    assert str(difference.primary).startswith("…") and "item 50" in str(difference.primary)


def test_text_diff_is_bounded() -> None:
    primary = "\n".join(f"line {i} " + "x" * 300 for i in range(3000))
    shadow = "\n".join(f"other {i} " + "y" * 300 for i in range(3000))
    (difference,) = compare_text(primary, shadow).differences
    assert len(difference.detail.splitlines()) <= MAX_DIFF_LINES + 1
    assert len(difference.detail) <= MAX_DIFF_CHARS + 2
    assert len(str(difference.primary)) < 300


def test_one_line_text_excerpt_shows_where_it_differs() -> None:
    primary = "<div>" + "a" * 5000 + "<b>old</b>" + "a" * 5000 + "</div>"
    (difference,) = compare_text(primary, primary.replace("old", "new")).differences
    assert "<b>old" in str(difference.primary) and "<b>new" in str(difference.shadow)


@pytest.mark.parametrize(
    ("primary", "shadow", "kind", "is_equal"),
    [
        (b"\x89PNG\x00\xff", b"\x89PNG\x00\xff", BodyKind.BINARY, True),
        (b"\x89PNG\x00\xff", b"\x89PNG\x00\xfe", BodyKind.BINARY, False),
    ],
)
def test_binary_bodies(primary: bytes, shadow: bytes, kind: BodyKind, is_equal: bool) -> None:
    headers = (("Content-Type", "image/png"),)
    result = compare_responses(
        ResponseSample(200, headers, primary), ResponseSample(200, headers, shadow), DiffRules()
    )
    assert (result.kind, result.is_equal) == (kind, is_equal)
    if not is_equal:
        assert "6 bytes, sha256" in str(result.differences[0].primary)


def test_compressed_bodies_compare_as_bytes() -> None:
    headers = (("Content-Type", "application/json"), ("Content-Encoding", "gzip"))
    result = compare_responses(
        ResponseSample(200, headers, b"\x1f\x8b1"),
        ResponseSample(200, headers, b"\x1f\x8b2"),
        DiffRules(),
    )
    assert result.kind is BodyKind.BINARY and not result.is_equal


def test_charset_is_honoured() -> None:
    headers = (("Content-Type", "text/plain; charset=latin-1"),)
    result = compare_responses(
        ResponseSample(200, headers, "café".encode("latin-1")),
        ResponseSample(200, headers, "cafè".encode("latin-1")),
        DiffRules(),
    )
    assert result.kind is BodyKind.TEXT
    assert result.differences[0].primary == "café"


@pytest.mark.parametrize(
    ("primary_truncated", "shadow_truncated"), [(True, False), (False, True), (True, True)]
)
def test_truncated_body_is_not_compared(primary_truncated: bool, shadow_truncated: bool) -> None:
    result = compare_responses(
        ResponseSample(200, HTML, b"<p>a", is_truncated=primary_truncated),
        ResponseSample(200, HTML, b"<p>b", is_truncated=shadow_truncated),
        DiffRules(),
    )
    assert (result.kind, result.body_compared, result.is_equal) == (BodyKind.SKIPPED, False, True)


def test_truncated_body_still_compares_status() -> None:
    result = compare_responses(
        ResponseSample(200, HTML, b"a", is_truncated=True),
        ResponseSample(500, HTML, b"b", is_truncated=True),
        DiffRules(),
    )
    assert [d.path for d in result.differences] == ["status"]
    assert not result.body_compared


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (None, [("status", DifferenceKind.CHANGED, 200, 404)]),
        ({"status": False}, []),
    ],
)
def test_status(config: Any, expected: list[tuple[str, DifferenceKind, int, int]]) -> None:
    result = compare_responses(
        ResponseSample(200, (), b""), ResponseSample(404, (), b""), DiffRules.from_config(config)
    )
    assert [(d.path, d.kind, d.primary, d.shadow) for d in result.differences] == expected


Headers = list[tuple[str, str]]


@pytest.mark.parametrize(
    ("primary", "shadow", "config", "expected"),
    [
        ([("Content-Type", "text/html")], [("content-type", "text/html")], None, []),
        (
            [("Content-Type", "text/html; charset=UTF-8")],
            [("Content-Type", "text/html;charset=utf-8")],
            None,
            [],
        ),
        (
            [("Content-Type", "text/html")],
            [("Content-Type", "application/json")],
            None,
            [("header:content-type", DifferenceKind.CHANGED)],
        ),
        ([("Location", "/projects/1")], [], None, [("header:location", DifferenceKind.MISSING)]),
        ([], [("Location", "/projects/1")], None, [("header:location", DifferenceKind.EXTRA)]),
        (
            [("Location", "/Projects/1")],
            [("Location", "/projects/1")],
            None,
            [("header:location", DifferenceKind.CHANGED)],
        ),  # Location stays case-sensitive
        (
            [("Cache-Control", "max-age=0, private")],
            [("Cache-Control", "private,max-age=0")],
            None,
            [],
        ),
        (
            [("Cache-Control", "no-store")],
            [("Cache-Control", "max-age=60")],
            None,
            [("header:cache-control", DifferenceKind.CHANGED)],
        ),
        ([("X-Request-Id", "a")], [("X-Request-Id", "b")], None, []),  # not configured
        (
            [("X-Api-Version", "1")],
            [("X-Api-Version", "2")],
            {"headers": ["x-api-version"]},
            [("header:x-api-version", DifferenceKind.CHANGED)],
        ),
        (
            [("Location", "/p/123e4567-e89b-12d3-a456-426614174000")],
            [("Location", "/p/00000000-0000-0000-0000-000000000000")],
            {
                "normalize": [
                    {"pattern": "[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "replace": "<uuid>"}
                ]
            },
            [],
        ),
        # Set-Cookie: names only, never values.
        (
            [("Set-Cookie", "session=abc; Path=/")],
            [("Set-Cookie", "session=xyz; Path=/; Secure")],
            None,
            [],
        ),
        (
            [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")],
            [("set-cookie", "b=9"), ("Set-Cookie", "a=8")],
            None,
            [],
        ),
        (
            [("Set-Cookie", "session=abc")],
            [("Set-Cookie", "session=abc"), ("Set-Cookie", "csrf=1")],
            None,
            [("header:set-cookie", DifferenceKind.CHANGED)],
        ),
        (
            [("Set-Cookie", "session=abc")],
            [],
            None,
            [("header:set-cookie", DifferenceKind.MISSING)],
        ),
        ([], [("Set-Cookie", "session=abc")], None, [("header:set-cookie", DifferenceKind.EXTRA)]),
    ],
)
def test_headers(primary: Headers, shadow: Headers, config: Any, expected: list[Any]) -> None:
    result = compare_responses(
        ResponseSample(200, tuple(primary), b""),
        ResponseSample(200, tuple(shadow), b""),
        DiffRules.from_config(config),
    )
    assert [(d.path, d.kind) for d in result.differences] == expected


def test_cookie_values_never_reach_a_difference() -> None:
    result = compare_responses(
        ResponseSample(200, (("Set-Cookie", "session=SECRET1"),), b""),
        ResponseSample(
            200, (("Set-Cookie", "session=SECRET2"), ("Set-Cookie", "csrf=SECRET3")), b""
        ),
        DiffRules(),
    )
    (difference,) = result.differences
    assert (difference.primary, difference.shadow) == (["session"], ["csrf", "session"])
    assert "SECRET" not in repr(difference.as_dict())
    assert difference.detail == "only in shadow: csrf"


def test_status_and_headers_share_the_difference_budget() -> None:
    result = compare_responses(
        ResponseSample(200, (("Location", "/a"),), b"[1, 2]"),
        ResponseSample(201, (("Location", "/b"),), b"[3, 4]"),
        DiffRules.from_config({"max_differences": 3}),
    )
    assert [d.path for d in result.differences] == ["status", "header:location", "$[0]"]
    assert result.is_truncated
