"""Check Rails authenticity tokens and request origins the way a Rails app would. Pure.

Rules, from actionpack ActionController::RequestForgeryProtection (v6.1.7, v7.0.10, v7.1.6;
lib/action_controller/metal/request_forgery_protection.rb, valid_authenticity_token? and the
methods it calls):

- The session holds `_csrf_token`: 32 random bytes in base64 (strict before 6.1's
  urlsafe_csrf_tokens, URL-safe after; Rails 6.1 pads even its URL-safe tokens, because it calls
  SecureRandom.urlsafe_base64(32, padding: false) and that method's padding is positional).
- Pages carry a masked token: 32 random pad bytes, then the pad XOR a 32-byte token, in base64
  (strict or URL-safe without padding). Masking changes the bytes on every page, so a BREACH
  compression side channel cannot learn the token from responses.
- A submitted token is decoded like Ruby's Base64.urlsafe_decode64 (which also takes the strict
  alphabet and padding, so one decoder covers 6.1's strict-then-urlsafe and 7.1's urlsafe-only),
  unmasked, and compared in constant time with: the raw session token; the global token
  HMAC-SHA256(raw, "!real_csrf_token") (what csrf_meta_tags and forms carry since the
  CVE-2020-8166 fix: 5.2.4.3, 6.0.3.1 and 6.1.0); and, when
  per-form tokens are on, HMAC-SHA256(raw, "<path minus one trailing slash>#<method lowercased>")
  for the request's own path and method (the method after Rack::MethodOverride: a POST form
  with `_method=patch` is PATCH).
- Deviation, on purpose: Rails also accepts an UNMASKED 32-byte token equal to the raw session
  token, for pages rendered before Rails 4.2 introduced masking. We refuse it by default
  (`accept_unmasked=False`, verdict UNMASKED_TOKEN): the unmasked raw token is exactly what a
  BREACH attack extracts, and no page from Rails 4.2 or later emits one.
- Origin (valid_request_origin?): no Origin header passes, "null" fails, and anything else
  must equal request.base_url exactly. base_url is computed as ActionDispatch::Request does
  behind a proxy: the LAST X-Forwarded-Host value (ActionDispatch::Http::URL#raw_host_with_port,
  split on /,\\s?/), the scheme from TLS or X-Forwarded-Proto (Rack 2.2 takes the text before
  the first comma; Rack 3, under Rails 7.1+, the last allowed value), default ports dropped.
  X-Forwarded-Ssl, X-Forwarded-Scheme and RFC 7239 Forwarded are not read; callers that trust
  them fold them into `is_tls` or `forwarded_proto`.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from typing import Final, assert_never
from urllib.parse import unquote_to_bytes

from strangler.identity.rails_session import urlsafe_decode64

__all__ = [
    "AUTHENTICITY_TOKEN_BYTES",
    "CsrfVerdict",
    "ForwardedProtoRule",
    "form_authenticity_token",
    "form_field",
    "is_form_body",
    "mint_masked_token",
    "new_session_token",
    "request_base_url",
    "session_csrf_token",
    "verify_authenticity_token",
    "verify_origin",
]

AUTHENTICITY_TOKEN_BYTES: Final = 32
_SESSION_KEY: Final = "_csrf_token"
_GLOBAL_IDENTIFIER: Final = b"!real_csrf_token"
# Rack::Request ALLOWED_SCHEMES.
_ALLOWED_SCHEMES: Final = frozenset({"https", "http", "wss", "ws"})
_PORT_SUFFIX: Final = re.compile(r":(\d+)\Z")
# A token is 32 or 64 bytes; its base64 is far below this. Longer input is not decoded at all.
_MAX_TOKEN_CHARS: Final = 256


class CsrfVerdict(enum.StrEnum):
    """The answer for one submitted token; only OK lets an unsafe request through."""

    OK = "ok"
    MISSING_TOKEN = "missing_token"
    MALFORMED_TOKEN = "malformed_token"  # not base64, or neither 32 nor 64 bytes
    WRONG_TOKEN = "wrong_token"  # well formed, matches nothing this session issued
    UNMASKED_TOKEN = "unmasked_token"  # a bare 32-byte token while accept_unmasked is off
    NO_SESSION_TOKEN = "no_session_token"  # the session holds no usable _csrf_token


class ForwardedProtoRule(enum.StrEnum):
    """Which X-Forwarded-Proto value Rack believes when a proxy chain sent several."""

    FIRST = "first"  # Rack 2.2 (Rails <= 7.0 and 7.x on Rack 2): text before the first comma
    LAST_ALLOWED = "last_allowed"  # Rack 3 (Rails 7.1+ on Rack 3): last of http/https/ws/wss


def session_csrf_token(session: Mapping[str, object]) -> bytes | None:
    """The 32 raw bytes of session["_csrf_token"], or None when absent or unusable."""
    encoded = session.get(_SESSION_KEY)
    if not isinstance(encoded, str) or not encoded or len(encoded) > _MAX_TOKEN_CHARS:
        return None
    raw = urlsafe_decode64(encoded)
    return raw if raw is not None and len(raw) == AUTHENTICITY_TOKEN_BYTES else None


def verify_authenticity_token(
    session: Mapping[str, object],
    token: str | None,
    *,
    request_path: str,
    request_method: str,
    per_form_tokens: bool,
    accept_unmasked: bool = False,
) -> CsrfVerdict:
    """Judge the token from X-CSRF-Token or the authenticity_token field against the session.

    `request_path` is the path Rails routes (script name plus path info, no query string).
    """
    if not token:
        return CsrfVerdict.MISSING_TOKEN
    if len(token) > _MAX_TOKEN_CHARS or not token.isascii():
        return CsrfVerdict.MALFORMED_TOKEN
    submitted = urlsafe_decode64(token)
    if submitted is None or len(submitted) not in (
        AUTHENTICITY_TOKEN_BYTES,
        2 * AUTHENTICITY_TOKEN_BYTES,
    ):
        return CsrfVerdict.MALFORMED_TOKEN
    raw = session_csrf_token(session)
    if raw is None:
        return CsrfVerdict.NO_SESSION_TOKEN
    if len(submitted) == AUTHENTICITY_TOKEN_BYTES:
        if not accept_unmasked:
            return CsrfVerdict.UNMASKED_TOKEN
        return CsrfVerdict.OK if hmac.compare_digest(submitted, raw) else CsrfVerdict.WRONG_TOKEN
    candidate = _unmask(submitted)
    if hmac.compare_digest(candidate, _csrf_hmac(raw, _GLOBAL_IDENTIFIER)):
        return CsrfVerdict.OK
    if hmac.compare_digest(candidate, raw):
        return CsrfVerdict.OK
    if per_form_tokens:
        expected = _csrf_hmac(raw, _per_form_identifier(request_path, request_method))
        if hmac.compare_digest(candidate, expected):
            return CsrfVerdict.OK
    return CsrfVerdict.WRONG_TOKEN


def _unmask(masked: bytes) -> bytes:
    pad, encrypted = masked[:AUTHENTICITY_TOKEN_BYTES], masked[AUTHENTICITY_TOKEN_BYTES:]
    return bytes(a ^ b for a, b in zip(pad, encrypted, strict=True))


def _csrf_hmac(raw: bytes, identifier: bytes) -> bytes:
    return hmac.new(raw, identifier, hashlib.sha256).digest()


def _per_form_identifier(path: str, method: str) -> bytes:
    # Ruby's String#chomp("/") drops one trailing slash, so "/" itself becomes "".
    return f"{path.removesuffix('/')}#{method.lower()}".encode()


def mint_masked_token(
    session_raw_token: bytes,
    *,
    form_action: str | None = None,
    form_method: str | None = None,
    urlsafe: bool = True,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> str:
    """A masked token as Rails 6.1+ puts in csrf_meta_tags, or a per-form token for one form.

    `session_raw_token` is the decoded session token (session_csrf_token). With both
    form_action and form_method, the token is the per-form one form_authenticity_token
    (form_options: {action:, method:}) makes; `form_action` is a path, its query ignored.
    """
    if len(session_raw_token) != AUTHENTICITY_TOKEN_BYTES:
        raise ValueError("a session CSRF token is 32 bytes")
    if form_action is not None and form_method is not None:
        path = form_action.split("?", 1)[0].split("#", 1)[0]
        token = _csrf_hmac(session_raw_token, _per_form_identifier(path, form_method))
    else:
        token = _csrf_hmac(session_raw_token, _GLOBAL_IDENTIFIER)
    pad = random_bytes(AUTHENTICITY_TOKEN_BYTES)
    masked = pad + bytes(a ^ b for a, b in zip(pad, token, strict=True))
    if urlsafe:
        return base64.urlsafe_b64encode(masked).rstrip(b"=").decode("ascii")
    return base64.b64encode(masked).decode("ascii")


def new_session_token(random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh session["_csrf_token"] as Rails 7.x makes it: urlsafe base64, unpadded."""
    raw = random_bytes(AUTHENTICITY_TOKEN_BYTES)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


# -- extracting the token from a form body ------------------------------------------------------


def form_authenticity_token(body: bytes, content_type: str | None) -> str | None:
    """The `authenticity_token` field of a urlencoded or multipart form body, or None."""
    return form_field(body, content_type, "authenticity_token")


def form_field(body: bytes, content_type: str | None, name: str) -> str | None:
    """One field of a form body (the last one, as Rack keeps); files are never returned.

    Reads application/x-www-form-urlencoded (fields split on "&" as Rack 3 does) and
    multipart/form-data; other bodies have no form fields.
    """
    if not content_type:
        return None
    media_type, _, params = content_type.partition(";")
    media_type = media_type.strip().lower()
    if media_type == "application/x-www-form-urlencoded":
        return _urlencoded_field(body, name.encode())
    if media_type == "multipart/form-data":
        boundary = _param(params, "boundary")
        return _multipart_field(body, boundary.encode("latin-1"), name) if boundary else None
    return None


_FORM_MEDIA_TYPES: Final = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})


def is_form_body(method: bytes, content_type: bytes | None) -> bool:
    """Whether Rack reads this request's body as form fields (Rack::Request#form_data?): a
    urlencoded or multipart/form-data body, or a POST's body without Content-Type."""
    if content_type is None:
        return method == b"POST"
    return content_type.split(b";", 1)[0].strip().lower() in _FORM_MEDIA_TYPES


def rack_form_type(method: bytes, content_type: bytes | None) -> str | None:
    """The Content-Type `form_field` should read the body as: a POST without one is a
    urlencoded form to Rack."""
    if content_type is None:
        return "application/x-www-form-urlencoded" if method == b"POST" else None
    return content_type.decode("latin-1")


def _urlencoded_field(body: bytes, name: bytes) -> str | None:
    found: bytes | None = None
    for pair in body.split(b"&"):
        key, _, value = pair.partition(b"=")
        if unquote_to_bytes(key.replace(b"+", b" ")) == name:
            found = unquote_to_bytes(value.replace(b"+", b" "))
    return found.decode("utf-8", "replace") if found is not None else None


# RFC 9110 §5.6.6: parameters are `; name=token` or `; name="quoted string"`; a quoted value
# may hold ";" and backslash escapes.
_PARAM: Final = re.compile(
    r';\s*([!#$%&\'*+\-.^_`|~0-9A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))'
)


def _param(params: str, wanted: str) -> str | None:
    """One parameter of a header value's `; a=b; c="d"` tail, unquoted; None when absent."""
    for match in _PARAM.finditer(params if params.startswith(";") else ";" + params):
        if match.group(1).lower() == wanted:
            quoted, token = match.group(2), match.group(3)
            value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else token
            return value or None
    return None


def _multipart_field(body: bytes, boundary: bytes, name: str) -> str | None:
    # RFC 7578 / RFC 2046 §5.1.1: parts sit between CRLF "--boundary" lines; the last is
    # followed by "--"; each part is headers, an empty line, then the content.
    found: bytes | None = None
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, separator, content = part.partition(b"\r\n\r\n")
        if not separator:
            continue
        disposition = _content_disposition(head)
        if disposition is None:
            continue
        field_name, is_file = disposition
        if field_name == name and not is_file:
            found = content.removesuffix(b"\r\n")
    return found.decode("utf-8", "replace") if found is not None else None


def _content_disposition(head: bytes) -> tuple[str, bool] | None:
    for line in head.decode("latin-1").split("\r\n"):
        header, colon, value = line.partition(":")
        if colon and header.strip().lower() == "content-disposition":
            kind, _, params = value.partition(";")
            field_name = _param(params, "name")
            if kind.strip().lower() != "form-data" or field_name is None:
                return None
            return field_name, _param(params, "filename") is not None
    return None


# -- origin -------------------------------------------------------------------------------------


def request_base_url(
    *,
    host: str | None,
    forwarded_host: str | None,
    forwarded_proto: str | None,
    is_tls: bool,
    proto_rule: ForwardedProtoRule = ForwardedProtoRule.FIRST,
) -> str | None:
    """request.base_url as Rails computes it, or None when no host is known.

    Rails would fall back to SERVER_NAME:SERVER_PORT; the gateway has no such thing to offer.
    """
    scheme = _scheme(forwarded_proto, is_tls=is_tls, rule=proto_rule)
    raw_host = _raw_host_with_port(host, forwarded_host)
    if not raw_host:
        return None
    # ActionDispatch::Http::URL#host, #port, #standard_port and #port_string.
    port_match = _PORT_SUFFIX.search(raw_host)
    bare_host = raw_host[: port_match.start()] if port_match else raw_host
    standard_port = 443 if scheme in ("https", "wss") else 80
    port = int(port_match.group(1)) if port_match else standard_port
    port_string = "" if port == standard_port else f":{port}"
    return f"{scheme}://{bare_host}{port_string}"


def _scheme(forwarded_proto: str | None, *, is_tls: bool, rule: ForwardedProtoRule) -> str:
    # Rack::Request#scheme: TLS first, then the forwarded scheme, then rack.url_scheme.
    if is_tls:
        return "https"
    if forwarded_proto is not None:
        match rule:
            case ForwardedProtoRule.FIRST:
                first = forwarded_proto.split(",", 1)[0]
                if first in _ALLOWED_SCHEMES:
                    return first
            case ForwardedProtoRule.LAST_ALLOWED:
                for candidate in reversed(re.split(r"[,\s]+", forwarded_proto.strip())):
                    if candidate in _ALLOWED_SCHEMES:
                        return candidate
            case _:
                assert_never(rule)
    return "http"


def _raw_host_with_port(host: str | None, forwarded_host: str | None) -> str | None:
    # ActionDispatch::Http::URL#raw_host_with_port: x_forwarded_host.presence, its last value.
    if forwarded_host is not None and forwarded_host.strip():
        values = re.split(r",\s?", forwarded_host)
        while values and not values[-1]:
            values.pop()  # Ruby's String#split drops trailing empty fields
        return values[-1] if values else None
    return host or None


def verify_origin(origin: str | None, base_url: str | None) -> bool:
    """Rails' valid_request_origin?: no Origin passes, "null" fails, else an exact match."""
    if origin is None:
        return True
    if origin == "null" or base_url is None:
        return False
    return origin == base_url
