"""Redaction of difference examples: secrets never reach the store."""

from __future__ import annotations

import pytest

from strangler.config import DEFAULT_REDACT
from strangler.diff import Difference, DifferenceKind
from strangler.identity import KeyDigest, RailsSessionEncoder, SessionSecret
from strangler.shadow.redact import FILTERED, Redactor

REDACTOR = Redactor(DEFAULT_REDACT)
# A JWT as PyJWT makes one (HS256, {"sub": "42"}), and one cut at the store's 200 characters.
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiJ9."
    "3xD8bJfBqYRp6XgDlNXcW2mPZ1m4v0bQk7b0aH6nG9s"
)
CUT_JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI0MiIsIm…"
# A Rails 7 encrypted session cookie as Rack sends it: data--iv--tag, URL-escaped base64.
RAILS_COOKIE = RailsSessionEncoder(
    "_app_session", SessionSecret(b"k" * 64, KeyDigest.SHA256)
).encode({"user_id": 42})


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


@pytest.mark.parametrize(
    ("key", "is_secret"),
    [
        ("Cookie", True),
        ("set-cookie", True),
        ("Authorization", True),
        ("Proxy-Authorization", True),
        ("sessionid", True),
        ("_myapp_session", True),
        ("X-Api-Key", True),  # `-` reads as `_`: "_key"
        ("apiKey", True),
        ("jwt", True),
        ("bearer_token", True),
        ("cvv", True),
        # "^code$" is the whole key (or a whole bracketed part), never a piece of a longer one.
        ("code", True),
        ("CODE", True),
        ("user[code]", True),
        ("status_code", False),
        ("postcode", False),
        ("error_code", False),
        ("codes", False),
        ("title", False),
        ("email", False),
    ],
)
def test_default_filters(key: str, is_secret: bool) -> None:
    assert REDACTOR.is_secret(key) is is_secret


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"Bearer {JWT}", f"Bearer {FILTERED}"),
        (JWT, FILTERED),
        (f"saw {CUT_JWT}", f"saw {FILTERED}…"),
        ("authorization: Bearer 0123456789abcdef", "authorization: " + FILTERED),
        ("note: bearer 0123456789abcdef", f"note: bearer {FILTERED}"),
        ("Basic YW5uOmh1bnRlcjI=", f"Basic {FILTERED}"),  # ann:hunter2
        (f"{RAILS_COOKIE}", FILTERED),
        ("sessionid=9f86d081884c7d65; theme=dark", f"sessionid={FILTERED}; theme=dark"),
        ("/oauth/callback?code=4/0AY0e-g7&state=xyz", f"/oauth/callback?code={FILTERED}&state=xyz"),
        ('{"password": "hunter 2", "name": "ann"}', f'{{"password": "{FILTERED}", "name": "ann"}}'),
        ("status_code=500 postcode=75001", "status_code=500 postcode=75001"),
        # Ordinary words after "bearer" and "basic", a request id, a digest: kept.
        ("the bearer of bad news", "the bearer of bad news"),
        ("Basic information here", "Basic information here"),
        ("request 00-c6a11778bed6587f32beeed80181bcc3-b0207cd299212978-01", None),
        ("sha256 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", None),
    ],
)
def test_credentials_in_text_are_filtered_whatever_their_key(
    text: str, expected: str | None
) -> None:
    assert REDACTOR.text(text) == (text if expected is None else expected)


def test_credentials_are_filtered_under_innocuous_keys_even_without_filters() -> None:
    redactor = Redactor([])
    primary = {"note": f"Bearer {JWT}", "remark": JWT, "blob": RAILS_COOKIE, "count": 2}
    redacted = redactor.difference(_difference("$.debug", primary, None))
    assert redacted.primary == {
        "note": f"Bearer {FILTERED}",
        "remark": FILTERED,
        "blob": FILTERED,
        "count": 2,
    }


@pytest.mark.parametrize(
    ("path", "primary"),
    [
        ("$.cookies._app_s", {"a": 1}),
        ("$.headers", {"_app_s": "opaque-value-of-any-shape"}),
        ("$.raw", "theme=dark; _app_s=opaque-value-of-any-shape"),
    ],
)
def test_the_rails_cookie_is_filtered_by_its_configured_name(path: str, primary: object) -> None:
    redactor = Redactor([], cookie="_app_s")
    redacted = redactor.difference(_difference(path, primary, None))
    assert "opaque-value" not in repr(redacted.primary)
    assert "a': 1" not in repr(redacted.primary)
    assert Redactor([]).difference(_difference(path, primary, None)).primary == primary


@pytest.mark.parametrize(
    ("path", "filtered"),
    [
        ("header:authorization", True),
        ("$.headers.cookie", True),
        ("$['x-api-key']", True),
        ("$.query.code", True),
        ("$.error.status_code", False),
        # Set-Cookie differences hold cookie names only (the diff engine never keeps values).
        ("header:set-cookie", False),
    ],
)
def test_differences_under_secret_paths_are_filtered(path: str, filtered: bool) -> None:
    redacted = REDACTOR.difference(_difference(path, "a", "b", detail="d"))
    assert (redacted.primary, redacted.shadow) == ((FILTERED,) * 2 if filtered else ("a", "b"))


def test_request_lines_lose_credentials_in_the_path() -> None:
    assert REDACTOR.request_line("GET /projects/3") == "GET /projects/3"
    assert REDACTOR.request_line(f"GET /reset/{JWT}") == f"GET /reset/{FILTERED}"
    assert REDACTOR.request_line("GET /a;jsessionid=ABC123") == f"GET /a;jsessionid={FILTERED}"
