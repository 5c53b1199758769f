"""The Rails bridge on the request path: who the client is, and what the new backend is told.

Rules:
- Bridged requests are those the gateway sends to the new backend (its `new_backend`, and the
  shadow copies). Legacy gets the request as the client sent it.
- Identity headers are never taken from a client: the configured identity header (unless it is
  `Authorization`) and the fallback header are stripped from every request, to every backend.
- A session cookie that does not decode (missing, expired, tampered, foreign) is anonymous: no
  identity token, never an error. Outcomes are counted by reason.
- CSRF, for a state-changing request to the new backend that carries the Rails session cookie
  on a route with `csrf: true`: the Origin must be the app's own base URL (when present) and
  the authenticity token (X-CSRF-Token header, else the form's `authenticity_token` field) must
  be valid for the session, exactly as Rails checks it; otherwise 403 and nothing reaches the
  new backend. A request without the session cookie rides no session, so there is nothing to
  forge; it goes through anonymous, without an identity token.
- Decoded sessions are cached by cookie value (bounded LRU): AES-GCM and JSON per request would
  otherwise be paid again for every request of one browser. Tokens are cached by the minter.
- The secret never leaves the decoder; tokens and cookie values are never logged.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strangler.identity.csrf import (
    CsrfVerdict,
    form_authenticity_token,
    is_form_body,
    rack_form_type,
    request_base_url,
    verify_authenticity_token,
    verify_origin,
)
from strangler.identity.rails_session import (
    AnonymousReason,
    RailsSessionDecoder,
    SessionOutcome,
    find_cookie,
    session_id_hash,
    session_user_id,
)
from strangler.identity.tokens import IdentityMinter, KeyRingFile

if TYPE_CHECKING:
    from strangler.runtime.snapshot import BridgeSetup

# RFC 9110 §9.2.1: everything else changes state, and is what Rails' forgery protection guards.
SAFE_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE"})
_SESSION_CACHE_ENTRIES = 4096
# A form body is read whole before it is forwarded only to find its authenticity token; a bigger
# form than this is refused (Rails apps that take uploads send the token in a header via UJS or
# Turbo, or put the token field first, which this does not rely on).
MAX_FORM_BYTES = 1 << 20


class CsrfRefusal(enum.StrEnum):
    """Why a state-changing request to the new backend was refused (403)."""

    BAD_ORIGIN = "bad_origin"
    MISSING_TOKEN = "missing_token"
    MALFORMED_TOKEN = "malformed_token"
    WRONG_TOKEN = "wrong_token"
    UNMASKED_TOKEN = "unmasked_token"
    NO_SESSION_TOKEN = "no_session_token"
    FORM_TOO_LARGE = "form_too_large"
    # A WebSocket (or other Upgrade) with the session cookie, from a page of another origin.
    UPGRADE_ORIGIN = "upgrade_origin"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What the bridge needs from one request head (raw header values, None when absent)."""

    # The method Rails acts on (after a `_method` override), and the one on the wire.
    method: bytes
    wire_method: bytes
    path: bytes
    cookie: bytes | None
    has_authorization: bool
    csrf_token: bytes | None
    origin: bytes | None
    host: bytes | None
    forwarded_host: bytes | None
    forwarded_proto: bytes | None
    content_type: bytes | None


class IdentityBridge:
    """One worker's bridge: the session decoder, its cache, the token minter, the counters."""

    @classmethod
    def from_setup(cls, setup: BridgeSetup, key_ring: KeyRingFile) -> IdentityBridge:
        """The bridge for one snapshot; `key_ring` is the worker's (it outlives snapshots)."""
        identity = setup.identity
        # Without a configured audience, each token names the backend it is sent to (see
        # identity_header), so a token minted for one backend is refused by another.
        minter = IdentityMinter(
            key_ring, issuer=identity.issuer, ttl_s=identity.ttl_s, audience=identity.audience
        )
        bridge = cls(
            setup.decoder,
            minter,
            cookie_name=setup.rails.cookie,
            user_id_key=setup.rails.user_id,
            header=identity.header,
            fallback_header=identity.fallback_header,
            per_form_csrf_tokens=setup.rails.per_form_csrf_tokens,
            origin_check=setup.rails.origin_check,
            allowed_request_origins=setup.rails.allowed_request_origins,
        )
        bridge.new_backend = setup.new_backend
        bridge.csrf_exempt = setup.csrf_exempt
        bridge.passes_session_cookie = setup.passes_session_cookie
        return bridge

    def __init__(
        self,
        decoder: RailsSessionDecoder,
        minter: IdentityMinter,
        *,
        cookie_name: str,
        user_id_key: str,
        header: str,
        fallback_header: str,
        per_form_csrf_tokens: bool,
        origin_check: bool,
        allowed_request_origins: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.decoder = decoder
        self._clock = clock
        self.minter = minter
        self.cookie_name = cookie_name
        self._cookie_prefix = cookie_name.encode("latin-1") + b"="
        self.user_id_key = user_id_key
        self._header = header.encode("latin-1")
        self._fallback_header = fallback_header.encode("latin-1")
        self.per_form_csrf_tokens = per_form_csrf_tokens
        self.origin_check = origin_check
        self.allowed_request_origins = frozenset(allowed_request_origins)
        stripped = {fallback_header.lower()}
        if header.lower() != "authorization":
            stripped.add(header.lower())
        self.stripped_headers = frozenset(name.encode("latin-1") for name in stripped)
        self._sessions: OrderedDict[str, SessionOutcome] = OrderedDict()
        self.outcomes: dict[str, int] = {}
        self.tokens_issued = 0
        self.last_user_id: str | None = None
        # Set from the snapshot (from_setup): whose requests are bridged, and route exceptions.
        self.new_backend = ""
        self.csrf_exempt: frozenset[str] = frozenset()
        self.passes_session_cookie: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        return (
            f"<IdentityBridge cookie={self.cookie_name!r}: {len(self._sessions)} sessions cached,"
            f" {self.minter!r}>"
        )

    # -- the session ----------------------------------------------------------------------------

    def session(self, cookie: bytes | None) -> SessionOutcome:
        """The Rails session the Cookie header carries, or why it is anonymous; counted."""
        value = find_cookie(cookie, self.cookie_name) if cookie is not None else None
        if not value:
            outcome = self.decoder.decode("")
        else:
            cached = self._sessions.get(value)
            expires_at = cached.expires_at if cached is not None else None
            if cached is not None and (expires_at is None or self._clock() < expires_at):
                self._sessions.move_to_end(value)
                outcome = cached
            else:
                # Not cached, or past its metadata's expiry: decode again (and say "expired").
                outcome = self.decoder.decode(value)
                if outcome.session is not None:
                    # Only authenticated sessions: garbage cookies are cheap to judge again and
                    # would let a client fill the cache.
                    self._sessions[value] = outcome
                    if len(self._sessions) > _SESSION_CACHE_ENTRIES:
                        self._sessions.popitem(last=False)
                else:
                    self._sessions.pop(value, None)
        key = "authenticated" if outcome.is_authenticated else str(outcome.anonymous_reason)
        self.outcomes[key] = self.outcomes.get(key, 0) + 1
        return outcome

    def without_session_cookie(self, cookie: bytes) -> bytes | None:
        """The Cookie header value without the Rails session cookie; None if nothing is left."""
        kept = [
            pair
            for pair in (part.strip() for part in cookie.split(b";"))
            if pair and not pair.startswith(self._cookie_prefix)
        ]
        return b"; ".join(kept) if kept else None

    # -- identity -------------------------------------------------------------------------------

    def identity_header(
        self, outcome: SessionOutcome, route: str, *, backend: str, has_authorization: bool
    ) -> bytes:
        """The header line carrying the identity token for a request to `backend` (its `aud`,
        unless identity.audience is set), or b"" for an anonymous request."""
        session = outcome.session
        self.last_user_id = None
        if session is None:
            return b""
        user_id = session_user_id(session, self.user_id_key)
        if user_id is None:
            return b""
        # Read right after by the proxy for the access log (one event loop: nothing between).
        self.last_user_id = user_id
        token = self.minter.mint(
            sub=user_id, session_id_hash=session_id_hash(session), route=route, audience=backend
        )
        # Tokens sent with requests (a cached one counts each time it goes out).
        self.tokens_issued += 1
        if self._header.lower() == b"authorization":
            if has_authorization:
                # The client's own credentials pass untouched; the identity goes beside them.
                return self._fallback_header + b": " + token.encode("ascii") + b"\r\n"
            return b"Authorization: Bearer " + token.encode("ascii") + b"\r\n"
        return self._header + b": " + token.encode("ascii") + b"\r\n"

    # -- CSRF -----------------------------------------------------------------------------------

    def needs_csrf_check(self, method: bytes, outcome: SessionOutcome) -> bool:
        """A state change that carries the session cookie (valid or not): the cookie was found
        by name when the session was read, so another cookie whose name merely ends the same
        (`my_app_session` beside `_app_session`) does not count."""
        return (
            method not in SAFE_METHODS and outcome.anonymous_reason is not AnonymousReason.MISSING
        )

    def check_origin(self, facts: RequestFacts, *, is_tls: bool) -> CsrfRefusal | None:
        if not self.origin_check or facts.origin is None:
            return None
        base_url = _base_url(facts, is_tls=is_tls)
        return None if verify_origin(_text(facts.origin), base_url) else CsrfRefusal.BAD_ORIGIN

    def check_upgrade_origin(self, facts: RequestFacts, *, is_tls: bool) -> CsrfRefusal | None:
        """Action Cable's allow_request_origin?: an Upgrade request's Origin must be one of
        `allowed_request_origins` or the app's own; a missing Origin is refused too (browsers
        always send one on a WebSocket, so its absence is not a browser of this app)."""
        origin = _text(facts.origin)
        if origin is not None and origin in self.allowed_request_origins:
            return None
        base_url = _base_url(facts, is_tls=is_tls)
        if origin is None or origin == "null" or base_url is None or origin != base_url:
            return CsrfRefusal.UPGRADE_ORIGIN
        return None

    def check_token(
        self, facts: RequestFacts, outcome: SessionOutcome, form_body: bytes | None
    ) -> CsrfRefusal | None:
        """None when the request's authenticity token is valid for its session."""
        token = _text(facts.csrf_token)
        if token is None and form_body is not None:
            token = form_authenticity_token(
                form_body, rack_form_type(facts.wire_method, facts.content_type)
            )
        session: Mapping[str, object] = outcome.session or {}
        verdict = verify_authenticity_token(
            session,
            token,
            request_path=_rails_path(facts.path),
            request_method=facts.method.decode("latin-1"),
            per_form_tokens=self.per_form_csrf_tokens,
        )
        if verdict is CsrfVerdict.OK:
            return None
        return CsrfRefusal(verdict.value)

    def wants_form_body(self, facts: RequestFacts) -> bool:
        """Whether the token can only be in the body: no header token, and a form body."""
        return facts.csrf_token is None and is_form_body(facts.wire_method, facts.content_type)


def _base_url(facts: RequestFacts, *, is_tls: bool) -> str | None:
    return request_base_url(
        host=_text(facts.host),
        forwarded_host=_text(facts.forwarded_host),
        forwarded_proto=_text(facts.forwarded_proto),
        is_tls=is_tls,
    )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")


def _rails_path(path: bytes) -> str:
    # Rails' per-form token is keyed by request.path without a trailing slash.
    text = path.decode("latin-1")
    return text[:-1] if len(text) > 1 and text.endswith("/") else text


__all__ = [
    "MAX_FORM_BYTES",
    "SAFE_METHODS",
    "AnonymousReason",
    "CsrfRefusal",
    "IdentityBridge",
    "RequestFacts",
]
