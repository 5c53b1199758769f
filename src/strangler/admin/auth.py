"""Who is calling the admin API: bearer tokens, browser sessions, and the scopes they carry.

Rules:
- Two scopes: `read` and `write`; write implies read. Routers take the principal with
  `principal: Principal = Depends(require_read)` (or `require_write`).
- A token is `stk_` + 43 base64url characters (32 random bytes); only its SHA-256 is stored.
  Presented as `Authorization: Bearer stk_...`.
- A browser session is the `strangler_admin` cookie (HttpOnly, SameSite=Strict; login and
  logout live in session_routes.py); only the SHA-256 of its value is stored. A cookie is an
  ambient credential, so every unsafe method (POST, PUT, PATCH, DELETE) made with one also
  needs the session's CSRF token in `X-CSRF-Token`: SameSite alone is not a CSRF defence (old
  browsers, same-site sibling hosts). The CSRF token is derived from the cookie value
  (`csrf_token_of`), so its owner can read it again after a page reload. A bearer token is
  never sent by a browser on its own, so it needs no CSRF token.
- When a request carries both, the bearer token decides; an invalid one is a 401 even if the
  cookie is good, so a client never silently acts as someone else.
- No credentials, unknown, revoked or expired ones: 401 problem+json with
  `WWW-Authenticate: Bearer realm="strangler"` (RFC 9110 §11.6.1). A missing or wrong CSRF
  token, or a read scope where write is needed: 403 problem+json.
- Secrets are compared as SHA-256 digests with `hmac.compare_digest`, in constant time.
- A token's `last_used_at` is written at most once a minute per token, not on every request.
- Every function that reads the store is a sync `def`: FastAPI runs it in the thread pool,
  never on the event loop.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from strangler.admin.problems import problem_openapi
from strangler.admin.store_access import STORE_UNAVAILABLE_RESPONSE, store_dependency
from strangler.admin.view import GatewayView
from strangler.config import AdminUserConfig
from strangler.control.state import SessionRecord, Store, TokenRecord

TOKEN_PREFIX = "stk_"
TOKEN_ID_PREFIX = "tok_"
_TOKEN_SHAPE = re.compile(r"^stk_[A-Za-z0-9_-]{43}$")
SESSION_COOKIE = "strangler_admin"
CSRF_HEADER = "X-CSRF-Token"
WWW_AUTHENTICATE = {"WWW-Authenticate": 'Bearer realm="strangler"'}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The HMAC message of csrf_token_of: names what the digest is for, so it is never reused.
_CSRF_LABEL = b"strangler admin session csrf token v1"
# A token's last_used_at is rewritten at most this often: a poller must not make every
# request a write (SQLite has one writer for every worker).
TOUCH_INTERVAL_S = 60.0
_MAX_TOUCHED = 10_000

# scrypt parameters of new password hashes: Percival's 2009 choice for interactive logins.
# 16 MiB and ~52 ms per attempt (hash_password, measured in the dev container, one core).
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_SALT_BYTES = 16
_HASH_BYTES = 32


class Scope(StrEnum):
    READ = "read"
    WRITE = "write"

    def allows(self, needed: Scope) -> bool:
        """Write implies read."""
        return self is Scope.WRITE or needed is Scope.READ


_SCOPES = frozenset(scope.value for scope in Scope)


class Via(StrEnum):
    """How the caller proved who they are."""

    TOKEN = "token"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: `token:<name>` or `user:<name>` (the audit log's actor)."""

    name: str
    scope: Scope
    via: Via
    # For a session: when it ends, and the hash logout deletes it by.
    expires_at: float | None = None
    session_hash: str | None = field(default=None, repr=False)


# --- secrets ---------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    """SHA-256 hex of a token, session cookie value or CSRF token: what the store keeps.

    A fast hash is enough here, unlike for passwords: each of these secrets is 32 random bytes
    (256 bits of entropy), so no dictionary or brute force can reverse its digest; a slow hash
    only protects secrets people choose.
    """
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token_of(cookie: str) -> str:
    """The CSRF token of the session whose cookie value is `cookie`: HMAC-SHA256 keyed by it.

    Derived, not random, so that the cookie's owner can get it again after a page reload
    (GET /api/v1/session) while the store still holds only hashes. Why this is as strong as a
    random token:
    - Only a request that carries the cookie can learn it, and no page script can read the
      cookie (HttpOnly). A cross-site page can make the browser send the cookie, but it can't
      read the answer (no CORS is ever granted), so it can't learn the token; that is all a
      CSRF token has to withstand.
    - The key is the cookie's 256 random bits, so the token is as unguessable as the cookie.
      No server key is needed: every admin process and replica derives the same token from the
      request alone, and there is no key to keep, rotate or leak.
    - The store keeps SHA-256 of the cookie and of the token; neither digest yields the other
      secret, or the cookie behind them.
    """
    digest = hmac.new(cookie.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_token(name: str, scope: Scope, created_by: str, now: float) -> tuple[str, TokenRecord]:
    """A fresh token (shown once, never stored) and the record that stores its hash."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = TokenRecord(
        id=TOKEN_ID_PREFIX + secrets.token_hex(4),
        name=name,
        scope=scope.value,
        hash=hash_token(token),
        created_at=now,
        created_by=created_by,
    )
    return token, record


def is_token_shaped(token: str) -> bool:
    """`stk_` + 43 base64url characters: anything else is refused before any store lookup."""
    return _TOKEN_SHAPE.match(token) is not None


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """`scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>` for `admin.users[].password_hash`."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, _HASH_BYTES)
    encoded = [base64.b64encode(part).decode() for part in (salt, digest)]
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${encoded[0]}${encoded[1]}"


def verify_password(user: AdminUserConfig | None, password: str) -> bool:
    """Whether `password` is `user`'s. For an unknown user (None) it still runs scrypt once,
    against a dummy hash, so the answer's timing does not tell which user names exist."""
    if user is None:
        _scrypt(password, *_dummy_parameters())
        return False
    n, r, p, salt, expected = user.scrypt_parameters()
    return hmac.compare_digest(_scrypt(password, salt, n, r, p, len(expected)), expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    # OpenSSL needs 128*r*(n + p + 2) bytes; the config caps n and r (256 MiB at most).
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=128 * r * (n + p + 2) + 2**16,
        dklen=length,
    )


@functools.cache
def _dummy_parameters() -> tuple[bytes, int, int, int, int]:
    return secrets.token_bytes(_SALT_BYTES), SCRYPT_N, SCRYPT_R, SCRYPT_P, _HASH_BYTES


# --- checking credentials ----------------------------------------------------------------------


def unauthorized(detail: str) -> HTTPException:
    """A 401 that tells the client which scheme to use (RFC 9110 §15.5.2 requires it)."""
    return HTTPException(401, detail, headers=WWW_AUTHENTICATE)


class TokenUses:
    """When each token's `last_used_at` was last written by this process. Thread-safe.

    Bounded: only tokens that authenticated are kept, and at most _MAX_TOUCHED of them.
    """

    def __init__(self, interval_s: float = TOUCH_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._written_at: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<TokenUses {len(self._written_at)} tokens>"

    def record(self, store: Store, token_id: str, now: float) -> None:
        """Write `last_used_at` unless this process wrote it for the token < a minute ago."""
        with self._lock:
            last = self._written_at.get(token_id)
            if last is not None and now - last < self._interval_s:
                return
            if len(self._written_at) >= _MAX_TOUCHED:
                self._written_at.clear()
            self._written_at[token_id] = now
        store.touch_token(token_id, now)


class Authenticator:
    """Turns presented credentials into a Principal, or raises a 401/403 HTTPException.

    `require_read`/`require_write` use the app's (`app.state.authenticator`); so does login.
    """

    def __init__(self, gateway: GatewayView) -> None:
        self._gateway = gateway
        self.token_uses = TokenUses()

    def __repr__(self) -> str:
        return f"<Authenticator {self.token_uses!r}>"

    def configured_user(self, name: str) -> AdminUserConfig | None:
        """The user of that name in the config in force (read per call: reloads apply)."""
        for user in self._gateway.snapshot.config.admin.users:
            if user.name == name:
                return user
        return None

    def token_record(self, store: Store, token: str, now: float) -> TokenRecord | None:
        """The live (unrevoked) record of `token`, marked used; None if there is none."""
        if not is_token_shaped(token):
            return None
        presented = hash_token(token)
        record = store.token_by_hash(presented)
        # The store finds the row by its hash; compare_digest then confirms the match in
        # constant time, whatever the database's own string comparison does. Timing of the
        # lookup itself reveals at most digests of the attacker's own guesses, which say
        # nothing about any real token.
        if record is None or not hmac.compare_digest(record.hash, presented):
            return None
        if record.revoked_at is not None or record.scope not in _SCOPES:
            return None
        self.token_uses.record(store, record.id, now)
        return record

    def from_token(self, store: Store, token: str, now: float) -> Principal:
        record = self.token_record(store, token, now)
        if record is None:
            raise unauthorized("the bearer token is unknown or revoked")
        return Principal(f"token:{record.name}", Scope(record.scope), Via.TOKEN)

    def from_session(
        self, store: Store, cookie: str, csrf_token: str | None, method: str, now: float
    ) -> Principal:
        presented = hash_token(cookie)
        session = store.session(presented, now)
        if session is None or not hmac.compare_digest(session.hash, presented):
            raise unauthorized("the session has expired or ended; log in again")
        scope = self._session_scope(session)
        if scope is None:
            raise unauthorized("the session's user is no longer configured; log in again")
        if method in UNSAFE_METHODS and not _is_csrf_token_of(session, csrf_token):
            raise HTTPException(
                403,
                f"csrf: a session needs its {CSRF_HEADER} header on POST, PUT, PATCH and "
                "DELETE, and it was missing or wrong",
            )
        return Principal(session.subject, scope, Via.SESSION, session.expires_at, session.hash)

    def _session_scope(self, session: SessionRecord) -> Scope | None:
        """The session's scope, or None when it may no longer be used.

        A user's session follows the config in force: a user removed from `admin.users` is
        logged out, and one whose scope was lowered to read loses write at once.
        """
        if session.scope not in _SCOPES:
            return None
        scope = Scope(session.scope)
        kind, _, name = session.subject.partition(":")
        if kind != "user":
            return scope
        user = self.configured_user(name)
        if user is None:
            return None
        return scope if Scope(user.scope).allows(scope) else Scope(user.scope)


def _is_csrf_token_of(session: SessionRecord, csrf_token: str | None) -> bool:
    if not csrf_token:
        return False
    return hmac.compare_digest(hash_token(csrf_token), session.csrf_hash)


# --- FastAPI dependencies ----------------------------------------------------------------------

# Both schemes are declared so the OpenAPI document says how to authenticate; auto_error is off
# because either one may be absent, and the 401 must be a problem+json of ours.
bearer_scheme = HTTPBearer(
    scheme_name="token",
    bearerFormat="stk_...",
    description="An admin token from `strangler token create` (scope read or write).",
    auto_error=False,
)
session_scheme = APIKeyCookie(
    name=SESSION_COOKIE,
    scheme_name="session",
    description=(
        "The browser session from POST /api/v1/session. Unsafe methods also need the "
        f"session's CSRF token in the {CSRF_HEADER} header."
    ),
    auto_error=False,
)


def authenticate(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(session_scheme)],
    csrf_token: Annotated[
        str | None,
        Header(
            alias=CSRF_HEADER,
            description="The session's CSRF token (from login); required with the session "
            "cookie on POST, PUT, PATCH and DELETE. Not needed with a bearer token.",
        ),
    ] = None,
) -> Principal:
    """The caller, from the bearer token or else the session cookie; a 401 without either."""
    authenticator: Authenticator = request.app.state.authenticator
    # The store only once there are credentials: without any, the answer is a 401 even while
    # the store is down.
    if bearer is not None:
        return authenticator.from_token(store_dependency(request), bearer.credentials, time.time())
    if cookie:
        store = store_dependency(request)
        return authenticator.from_session(store, cookie, csrf_token, request.method, time.time())
    raise unauthorized("credentials needed: a bearer token or the session cookie")


def require_read(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """Any authenticated caller (read or write scope)."""
    return principal


def require_write(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
    """A caller with scope write; 403 for read."""
    if not principal.scope.allows(Scope.WRITE):
        raise HTTPException(403, f"this needs scope write; {principal.name} has scope read")
    return principal


def _with_www_authenticate(entry: dict[str, Any]) -> dict[str, Any]:
    header = {"description": 'Always `Bearer realm="strangler"`', "schema": {"type": "string"}}
    return {**entry, "headers": {"WWW-Authenticate": {**header, "required": True}}}


UNAUTHORIZED_RESPONSE = _with_www_authenticate(
    problem_openapi("No credentials, or an unknown, revoked or expired token or session")
)
FORBIDDEN_RESPONSE = problem_openapi(
    "The scope is read where write is needed, or a session's CSRF token is missing or wrong"
)
# For `responses=` of every route behind require_read / require_write.
AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: UNAUTHORIZED_RESPONSE,
    403: FORBIDDEN_RESPONSE,
    422: problem_openapi("Invalid request parameters (named in the detail)"),
    503: STORE_UNAVAILABLE_RESPONSE,
}
