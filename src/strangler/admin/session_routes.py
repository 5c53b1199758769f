"""`/api/v1/session`: log in (a token or a configured user), who am I, log out.

Rules:
- Login answers the session's CSRF token in its body, once, and sets the `strangler_admin`
  cookie: `HttpOnly` (page scripts never read it), `SameSite=Strict`, `Path=/`, `Max-Age` of
  `admin.session_ttl_s`, and `Secure` when the request came over https. Only the SHA-256 of the
  cookie value and of the CSRF token are stored; neither can be shown again.
- Login takes JSON only (`application/json`; FastAPI leaves any other body unparsed, a 422):
  a cross-site HTML form can't send it, and a cross-site script can't without a CORS preflight
  this API never grants. So another site can't log a browser in as someone else.
- Failed logins are rate-limited per client address: a token bucket of
  `admin.login_attempts_per_minute`, in memory, per process. Every attempt takes a token before
  the credentials are checked; a successful one gives it back, and so does one the store
  could not judge (503), so only failures count and concurrent guesses can't overdraw. Over the
  limit: 429 problem with Retry-After, whatever the credentials.
- Logout deletes the session that made the request (a bearer caller has none) and expires the
  cookie; like every unsafe call with a session, it needs the CSRF token.
- Sessions end at `expires_at`; there is no sliding renewal. A user's session follows the
  config (auth.py); a session begun with a token ends when the token is revoked.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request
from fastapi import Response as FastAPIResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from strangler.admin.auth import (
    AUTH_RESPONSES,
    CSRF_HEADER,
    SESSION_COOKIE,
    UNAUTHORIZED_RESPONSE,
    Authenticator,
    Principal,
    Scope,
    Via,
    hash_token,
    require_read,
    unauthorized,
    verify_password,
)
from strangler.admin.problems import problem_openapi
from strangler.admin.store_access import STORE_UNAVAILABLE_RESPONSE, store_dependency
from strangler.admin.view import GatewayView
from strangler.control.state import SessionRecord, Store

SESSION_PATH = "/api/v1/session"
# Client addresses whose failures are remembered; past it the least recently failed is forgotten.
MAX_TRACKED_ADDRESSES = 10_000
_NO_STORE = "no-store"


class FailedLogins:
    """Token buckets of login attempts by client address. Thread-safe, bounded.

    Each address has `per_minute` attempts, refilled continuously at per_minute/60 a second.
    A full bucket is not kept (it is what an unknown address gets), so the map holds only
    addresses that failed recently, at most MAX_TRACKED_ADDRESSES of them.
    """

    def __init__(
        self,
        *,
        max_addresses: int = MAX_TRACKED_ADDRESSES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_addresses = max_addresses
        self._clock = clock
        self._lock = threading.Lock()
        # address -> (attempts left, when that was computed), least recently updated first.
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def __repr__(self) -> str:
        return f"<FailedLogins {len(self._buckets)} addresses>"

    def take(self, address: str, per_minute: int) -> float:
        """Take one attempt for `address`: 0.0 when taken, else the seconds until one is left."""
        with self._lock:
            now = self._clock()
            left = self._left(address, per_minute, now)
            if left < 1.0:
                return (1.0 - left) * 60.0 / per_minute
            self._put(address, left - 1.0, now)
            return 0.0

    def give_back(self, address: str, per_minute: int) -> None:
        """Return the attempt a successful login took."""
        with self._lock:
            now = self._clock()
            left = self._left(address, per_minute, now) + 1.0
            if left >= per_minute:
                self._buckets.pop(address, None)
            else:
                self._put(address, left, now)

    def _left(self, address: str, per_minute: int, now: float) -> float:
        entry = self._buckets.get(address)
        if entry is None:
            return float(per_minute)
        left, then = entry
        return min(float(per_minute), left + (now - then) * per_minute / 60.0)

    def _put(self, address: str, left: float, now: float) -> None:
        self._buckets[address] = (left, now)
        self._buckets.move_to_end(address)
        while len(self._buckets) > self._max_addresses:
            self._buckets.popitem(last=False)


class TokenLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: Annotated[str, Field(min_length=1, max_length=256, description="An stk_ token")]


class PasswordLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: Annotated[str, Field(min_length=1, max_length=64, description="An admin.users name")]
    password: Annotated[str, Field(min_length=1, max_length=1024)]


class SessionCreated(BaseModel):
    subject: str = Field(description="token:<name> or user:<name>")
    scope: Scope
    csrf_token: str = Field(
        description="Send it as X-CSRF-Token on every POST, PUT, PATCH and DELETE of this "
        "session. Shown once: only its hash is stored."
    )
    expires_at: float = Field(description="Unix time when the session ends")


class Caller(BaseModel):
    subject: str = Field(description="token:<name> or user:<name>")
    scope: Scope
    via: Via
    expires_at: float | None = Field(
        description="Unix time when the session ends; null for a token"
    )


def session_cookie(value: str, max_age_s: int, *, is_secure: bool) -> str:
    """The Set-Cookie value; `max_age_s` 0 expires it (logout)."""
    cookie = f"{SESSION_COOKIE}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict"
    # Secure only over https: over plain http (the default 127.0.0.1 listener) a browser would
    # drop a Secure cookie and nobody could log in.
    return cookie + "; Secure" if is_secure else cookie


def _client_address(request: Request) -> str:
    # The socket peer: the admin server believes no X-Forwarded-For (uvicorn proxy_headers off).
    return request.client.host if request.client is not None else "unknown"


_TOO_MANY = {
    **problem_openapi("Too many failed logins from this address; wait Retry-After seconds"),
    "headers": {
        "Retry-After": {
            "description": "Seconds until the next attempt is allowed",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


def session_router(gateway: GatewayView, failed_logins: FailedLogins) -> APIRouter:
    router = APIRouter(prefix=SESSION_PATH, tags=["session"])

    @router.post(
        "",
        response_model=SessionCreated,
        operation_id="login",
        summary="Log in with a token or a configured user; sets the session cookie",
        responses={
            200: {
                "headers": {
                    "Set-Cookie": {
                        "description": f"{SESSION_COOKIE}=...; HttpOnly; SameSite=Strict",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                },
                # OpenAPI links (3.0 §4.7.21): how a client (and Schemathesis) goes on.
                "links": {
                    "whoami": {
                        "operationId": "whoami",
                        "description": "The session, with the cookie just set",
                    },
                    "logout": {
                        "operationId": "logout",
                        "parameters": {f"header.{CSRF_HEADER}": "$response.body#/csrf_token"},
                        "description": "End the session: its CSRF token goes in the header",
                    },
                },
            },
            400: problem_openapi("The body can't be read"),
            401: UNAUTHORIZED_RESPONSE,
            422: problem_openapi("The body is not one of the two login forms"),
            429: _TOO_MANY,
            503: STORE_UNAVAILABLE_RESPONSE,
        },
    )
    def login(
        request: Request,
        response: FastAPIResponse,
        credentials: Annotated[TokenLogin | PasswordLogin, Body()],
    ) -> SessionCreated:
        admin = gateway.snapshot.config.admin
        address = _client_address(request)
        wait_s = failed_logins.take(address, admin.login_attempts_per_minute)
        if wait_s:
            raise HTTPException(
                429,
                "too many failed logins from this address; try again later",
                headers={"Retry-After": str(max(1, math.ceil(wait_s)))},
            )
        authenticator: Authenticator = request.app.state.authenticator
        now = time.time()
        try:
            store = store_dependency(request)
            subject_scope = _check_login(authenticator, store, credentials, now)
        except BaseException:
            # Not a failed login: the store was down (503), and the attempt was never judged.
            failed_logins.give_back(address, admin.login_attempts_per_minute)
            raise
        if subject_scope is None:
            raise unauthorized("wrong token, user or password")
        failed_logins.give_back(address, admin.login_attempts_per_minute)
        subject, scope, token_id = subject_scope
        value, csrf_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        expires_at = now + admin.session_ttl_s
        store.add_session(
            SessionRecord(
                hash=hash_token(value),
                subject=subject,
                scope=scope.value,
                csrf_hash=hash_token(csrf_token),
                created_at=now,
                expires_at=expires_at,
                token_id=token_id,
            )
        )
        is_secure = request.url.scheme == "https"
        response.headers.append(
            "Set-Cookie", session_cookie(value, admin.session_ttl_s, is_secure=is_secure)
        )
        response.headers["Cache-Control"] = _NO_STORE  # the body holds the CSRF token
        return SessionCreated(
            subject=subject, scope=scope, csrf_token=csrf_token, expires_at=expires_at
        )

    @router.get(
        "",
        response_model=Caller,
        operation_id="whoami",
        summary="Who the credentials of this request belong to",
        responses=AUTH_RESPONSES,
    )
    def whoami(principal: Annotated[Principal, Depends(require_read)]) -> Caller:
        return Caller(
            subject=principal.name,
            scope=principal.scope,
            via=principal.via,
            expires_at=principal.expires_at,
        )

    @router.delete(
        "",
        status_code=204,
        operation_id="logout",
        summary="Log out: end this session and expire its cookie",
        responses=AUTH_RESPONSES,
    )
    def logout(
        request: Request, principal: Annotated[Principal, Depends(require_read)]
    ) -> FastAPIResponse:
        if principal.session_hash is not None:
            store_dependency(request).delete_session(principal.session_hash)
        answer = FastAPIResponse(status_code=204)
        is_secure = request.url.scheme == "https"
        answer.headers.append("Set-Cookie", session_cookie("", 0, is_secure=is_secure))
        return answer

    return router


def _check_login(
    authenticator: Authenticator,
    store: Store,
    credentials: TokenLogin | PasswordLogin,
    now: float,
) -> tuple[str, Scope, str | None] | None:
    """(subject, scope, token id) of good credentials, None otherwise."""
    if isinstance(credentials, TokenLogin):
        record = authenticator.token_record(store, credentials.token, now)
        if record is None:
            return None
        return f"token:{record.name}", Scope(record.scope), record.id
    user = authenticator.configured_user(credentials.user)
    # Checked before looking at `user`: an unknown name costs the same scrypt as a known one.
    is_match = verify_password(user, credentials.password)
    if user is None or not is_match:
        return None
    return f"user:{user.name}", Scope(user.scope), None
