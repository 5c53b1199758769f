"""The legacy app's session: ActionDispatch::Session::CookieStore, as a Rails 6.1 app keeps it.

The whole session lives in the `_legacy_session` cookie, encrypted and authenticated the way a
Rails app on 6.1 defaults writes it (`config.load_defaults 6.1`, `cookies_serializer = :json`;
a monolith upgraded to 7.x keeps them until it migrates its cookies): AES-256-GCM with a key
derived by PBKDF2-HMAC-SHA1 from `secret_key_base`, the JSON session wrapped in the purpose
metadata `cookie._legacy_session`. The bytes come from strangler's own Rails encoder
(verified against real Rails 6.1), so the gateway's Rails bridge reads this cookie exactly as it
would read a real monolith's, given the same secret.

Rules:
- A cookie that does not decode (missing, tampered, expired, encrypted with another secret) is
  an empty session, as Rails treats it: never an error.
- `request.session` is a plain dict (Starlette reads it from scope["session"]). Handlers change
  it before the response starts; the middleware writes the cookie when the response starts.
- The cookie is written only when the session changed during the request. Rails re-encrypts it
  on every request that loads the session (a new IV, so a new value each time); writing only on
  change gives one cookie value per state of a session, which keeps the gateway's session cache
  (keyed by cookie value) useful and makes the traffic in the demo easy to follow.
- Every written session has Rack's `session_id` (32 hex characters), created on first write and
  after a reset, as Rack::Session::Abstract::Persisted does; the bridge hashes it into the
  identity token's `sid` claim.
- Development-mode cookie: HttpOnly, SameSite=Lax, path=/, no expiry (it ends with the browser)
  and not Secure, as `bin/rails server` sends it over plain HTTP.
"""

from __future__ import annotations

import copy
import secrets
import time
from typing import Any, Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strangler.identity import (
    KeyDigest,
    RailsSessionDecoder,
    RailsSessionEncoder,
    RailsSessionSettings,
    Serializer,
    SessionSecret,
)

SESSION_COOKIE: Final = "_legacy_session"
# The environment variable the runner sets for the legacy app and the gateway alike (the
# gateway's `rails.secret_key_base_env` in demo.yaml names it too).
SECRET_KEY_BASE_ENV: Final = "STRANGLER_DEMO_SECRET_KEY_BASE"
# A DEMO VALUE, public in this repository and useless anywhere else: it only lets the bundled
# legacy app and the gateway share a secret_key_base (128 hex characters, as `bin/rails secret`
# prints). A real deployment reads the monolith's own secret from its secret store.
DEMO_SECRET_KEY_BASE: Final = (
    "61d6234fc35dbb52932fda60461d13206bf67645baadb5d0a4251aa1aa18e02a"
    "a02551da2194ce4676d7e4c9b14211d349812afd7ca976b1ea0401177bae3e1a"
)
# Rack::Session::Abstract::Persisted#generate_sid: SecureRandom.hex(16).
_SESSION_ID_BYTES: Final = 16


class RailsCookieStore:
    """ASGI middleware giving each request `request.session`, kept in an encrypted Rails cookie.

    Keys are derived once, here; per request it decodes the cookie once before the app runs and
    encrypts at most once, when the response starts.
    """

    def __init__(
        self, app: ASGIApp, secret_key_base: str, cookie_name: str = SESSION_COOKIE
    ) -> None:
        self.app = app
        self.cookie_name = cookie_name
        # Rails 6.1: KeyGenerator with SHA1 (7.0's defaults switched to SHA256).
        secret = SessionSecret(secret_key_base.encode("utf-8"), KeyDigest.SHA1)
        self._encoder = RailsSessionEncoder(cookie_name, secret)
        settings = RailsSessionSettings(cookie_name, (secret,), Serializer.JSON)
        self._decoder = RailsSessionDecoder(settings, clock=time.time)

    def __repr__(self) -> str:
        return f"<RailsCookieStore {self.cookie_name}: {self._encoder!r}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # RFC 9113 §8.2.3 and Rack alike: several Cookie fields read as one, joined by "; ".
        cookie_header = b"; ".join(value for name, value in scope["headers"] if name == b"cookie")
        outcome = self._decoder.from_cookie_header(cookie_header or None)
        session: dict[str, Any] = dict(outcome.session) if outcome.session is not None else {}
        loaded = copy.deepcopy(session)
        scope["session"] = session

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and session != loaded:
                session.setdefault("session_id", secrets.token_hex(_SESSION_ID_BYTES))
                value = self._encoder.encode(session)
                # Rack's set_cookie_header spelling, attribute for attribute.
                MutableHeaders(scope=message).append(
                    "set-cookie", f"{self.cookie_name}={value}; path=/; HttpOnly; SameSite=Lax"
                )
            await send(message)

        await self.app(scope, receive, send_with_cookie)
