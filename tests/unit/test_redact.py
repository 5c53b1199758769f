"""Redaction of difference examples: secrets never reach the store."""

from __future__ import annotations

import pytest

from strangler.config import DEFAULT_REDACT
from strangler.diff import Difference, DifferenceKind
from strangler.shadow.redact import FILTERED, Redactor

REDACTOR = Redactor(DEFAULT_REDACT)


def _difference(path: str, primary: object, shadow: object, detail: str = "") -> Difference:
    return Difference(path, DifferenceKind.CHANGED, primary, shadow, path, detail)


@pytest.mark.parametrize(
    ("path", "primary", "shadow", "expected_primary", "expected_shadow"),
    [
        ("$.user.password", "hunter2", "hunter3", FILTERED, FILTERED),
        ("$.user.password_confirmation", "a", "b", FILTERED, FILTERED),
        ("$['api_key']", "k1", "k2", FILTERED, FILTERED),
        ("$.session.csrf_token", "t1", "t2", FILTERED, FILTERED),
        ("$.tasks[3].title", "Write", "write", "Write", "write"),
        (
            "$.user",
            {"name": "ann", "auth_token": "t1"},
            {"name": "ann", "auth_token": "t2", "otp_secret": "s"},
            {"name": "ann", "auth_token": FILTERED},
            {"name": "ann", "auth_token": FILTERED, "otp_secret": FILTERED},
        ),
        ("$.items", [{"salt": "x"}], [{"salt": "y"}], [{"salt": FILTERED}], [{"salt": FILTERED}]),
        ("$.count", 1, 2, 1, 2),
    ],
)
def test_json_values_under_secret_keys_are_filtered(
    path: str, primary: object, shadow: object, expected_primary: object, expected_shadow: object
) -> None:
    redacted = REDACTOR.difference(_difference(path, primary, shadow))
    assert (redacted.primary, redacted.shadow) == (expected_primary, expected_shadow)
    assert redacted.path == path


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ('<input type="hidden" name="authenticity_token" value="AbC123==">', "AbC123=="),
        ('<meta name="csrf-token" content="XyZ987">', "XyZ987"),
        ("user[password]=hunter2&user[email]=a@b.c", "hunter2"),
        ('{"access_token": "eyJhbGciOi"}', "eyJhbGciOi"),
    ],
)
def test_secrets_in_text_bodies_are_filtered(text: str, secret: str) -> None:
    redacted = REDACTOR.difference(_difference("body", text, text, detail=f"-{text}\n+{text}"))
    for value in (redacted.primary, redacted.shadow, redacted.detail):
        assert isinstance(value, str)
        assert secret not in value
        assert FILTERED in value


def test_text_without_secrets_is_kept() -> None:
    text = "<h1>Projects</h1><p>5 tasks</p>"
    assert REDACTOR.difference(_difference("body", text, text)).primary == text


def test_no_filters_filters_nothing() -> None:
    redacted = Redactor([]).difference(_difference("$.password", "a", "b"))
    assert (redacted.primary, redacted.shadow) == ("a", "b")
