"""The parts of Rails' behaviour the demo's legacy app copies, kept apart from its pages.

`RailsConventions` is the middleware stack a Rails 7.1 app puts around every response
(ActionDispatch::RequestId, Rack::Runtime, the default security headers, Rack::ETag,
Rack::ConditionalGet, Rack::Head). The CSRF functions are ActionController::RequestForgeryProtection
with Rails 6.1+ defaults, built on strangler's own implementation of it (strangler.identity.csrf,
the one the gateway checks requests to the new backend with): the session keeps one 32-byte
`_csrf_token`; `csrf_meta_tags` carry a freshly masked copy of the global token
HMAC(token, "!real_csrf_token"), each form a masked per-form token for its action and method
(`per_form_csrf_tokens`); a state-changing request must bring back any of them and, when it
sends an Origin, come from the app's own origin (`forgery_protection_origin_check`).

Rules: the middleware never changes a status other than 200 -> 304, buffers only responses that
declare a Content-Length (streamed bodies pass through untouched, as Rack::ETag skips them), and
is pure ASGI, so it adds no task or thread per request.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strangler.identity.csrf import (
    AUTHENTICITY_TOKEN_BYTES,
    CsrfVerdict,
    mint_masked_token,
    new_session_token,
    request_base_url,
    session_csrf_token,
    verify_authenticity_token,
    verify_origin,
)

CSRF_SESSION_KEY = "_csrf_token"
CSRF_HEADER = "x-csrf-token"
CSRF_PARAM = "authenticity_token"

# Rails 7.1's default_headers; a gateway that drops or duplicates them should show up in a diff.
_SECURITY_HEADERS = (
    ("x-frame-options", "SAMEORIGIN"),
    ("x-xss-protection", "0"),
    ("x-content-type-options", "nosniff"),
    ("x-permitted-cross-domain-policies", "none"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
)
# ActionDispatch::RequestId keeps a client's id if it is made of these characters, cut to 255.
_UNSAFE_REQUEST_ID = re.compile(r"[^\w\-@]")
_MAX_REQUEST_ID_CHARS = 255


def _session_token(session: MutableMapping[str, Any]) -> bytes:
    """The session's raw CSRF token, created on first use as Rails' real_csrf_token does."""
    raw = session_csrf_token(session)
    if raw is not None:
        return raw
    fresh = secrets.token_bytes(AUTHENTICITY_TOKEN_BYTES)
    session[CSRF_SESSION_KEY] = new_session_token(lambda _size: fresh)
    return fresh


def csrf_meta_token(session: MutableMapping[str, Any]) -> str:
    """The token `csrf_meta_tags` puts in a page: the global token, freshly masked.

    Masking makes every page's token different (BREACH cannot learn the token from compressed
    pages) while any of them verifies. Creates the session's token on first use, which is why
    Rails sets a session cookie on the first page that shows a form or `csrf_meta_tags`.
    """
    return mint_masked_token(_session_token(session))


def form_csrf_token(session: MutableMapping[str, Any], action: str, method: str) -> str:
    """The per-form token `form_with(url: action, method:)` puts in its hidden field."""
    return mint_masked_token(_session_token(session), form_action=action, form_method=method)


def request_id_of(scope: Scope) -> str:
    """The request id `RailsConventions` chose for this request (set before the app runs)."""
    state: dict[str, Any] = scope.get("state", {})
    request_id = state.get("request_id")
    return request_id if isinstance(request_id, str) else ""


class RailsConventions:
    """ASGI middleware giving every response the headers and caching a Rails 7.1 app has.

    Per request it fires once: it picks the request id before the app runs, and rewrites the
    response head when the app sends it (streamed) or when the body is complete (buffered).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_s = time.perf_counter()
        request_headers = Headers(scope=scope)
        request_id = _UNSAFE_REQUEST_ID.sub("", request_headers.get("x-request-id", ""))
        request_id = request_id[:_MAX_REQUEST_ID_CHARS] or str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = request_id
        # Rack::Head: the app renders HEAD as GET, so the ETag matches; the body is dropped below.
        is_head = scope["method"] == "HEAD"
        if is_head:
            scope = {**scope, "method": "GET"}
        is_get = scope["method"] == "GET"
        if_none_match = request_headers.get("if-none-match", "")
        start: Message = {}
        body_parts: list[bytes] = []
        is_streaming = False

        def finish_head(headers: MutableHeaders) -> None:
            headers["x-request-id"] = request_id
            headers["x-runtime"] = f"{time.perf_counter() - started_s:.6f}"
            for name, value in _SECURITY_HEADERS:
                headers.setdefault(name, value)

        async def send_wrapper(message: Message) -> None:
            nonlocal start, is_streaming
            if message["type"] == "http.response.start":
                start = message
                headers = MutableHeaders(scope=message)
                is_streaming = "content-length" not in headers
                if is_streaming:
                    finish_head(headers)
                    await send(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            if is_streaming:
                await send({**message, "body": b""} if is_head else message)
                return
            body_parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(body_parts)
            headers = MutableHeaders(scope=start)
            status = start["status"]
            if is_get and status == 200 and "etag" not in headers:
                etag = f'W/"{hashlib.md5(body, usedforsecurity=False).hexdigest()}"'
                headers["etag"] = etag
                headers.setdefault("cache-control", "max-age=0, private, must-revalidate")
                if _matches(if_none_match, etag):
                    start = {**start, "status": 304}
                    headers = MutableHeaders(scope=start)
                    del headers["content-length"]
                    del headers["content-type"]
                    body = b""
            headers.setdefault("cache-control", "no-cache")
            finish_head(headers)
            await send(start)
            await send({"type": "http.response.body", "body": b"" if is_head else body})

        await self.app(scope, receive, send_wrapper)


def _matches(if_none_match: str, etag: str) -> bool:
    # RFC 9110 §13.1.2: If-None-Match uses the weak comparison, so W/ prefixes are ignored.
    wanted = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",") if tag.strip()}
    return "*" in wanted or etag.removeprefix("W/") in wanted


def is_authentic(request: Request, form_token: object) -> bool:
    """verified_request?: the Origin, then the X-CSRF-Token header, else the form's token.

    Never creates a session token: a session without one has nothing a request could match.
    """
    headers = request.headers
    base_url = request_base_url(
        host=headers.get("host"),
        forwarded_host=headers.get("x-forwarded-host"),
        forwarded_proto=headers.get("x-forwarded-proto"),
        is_tls=request.url.scheme == "https",
    )
    if not verify_origin(headers.get("origin"), base_url):
        return False
    token = headers.get(CSRF_HEADER) or (form_token if isinstance(form_token, str) else None)
    verdict = verify_authenticity_token(
        request.session,
        token,
        request_path=request.url.path,
        request_method=request.method,
        per_form_tokens=True,
    )
    return verdict is CsrfVerdict.OK
