"""`/api/v1/session`: log in (a token or a configured user), who am I, log out.

Rules:
- Login answers the session's CSRF token in its body and sets the `strangler_admin` cookie:
  `HttpOnly` (page scripts never read it), `SameSite=Strict`, `Path=/`, `Max-Age` of
  `admin.session_ttl_s`, and `Secure` when the request came over https. Only the SHA-256 of the
  cookie value and of the CSRF token are stored. The CSRF token is an HMAC of the cookie value
  (auth.csrf_token_of), so `GET /api/v1/session` made with the cookie answers it again (a
  dashboard reloaded keeps its session); no other caller ever gets it. Answers that hold it are
  `Cache-Control: no-store`.
- Login takes JSON only (`application/json`; FastAPI leaves any other body unparsed, a 422):
  a cross-site HTML form can't send it, and a cross-site script can't without a CORS preflight
  this API never grants. So another site can't log a browser in as someone else.
- Failed logins are throttled per (user name, client address) with exponential backoff
  (login_throttle.py): during a backoff an attempt is a 429 problem with Retry-After, refused
  before the credentials are looked at; after it, the right credentials log in. The client
  address is the socket peer, or, when the peer is in `forwarding.trusted_proxies`, the client
  its X-Forwarded-For names, by the rule the proxy applies (`routing.canary.client_address`).
  Every judged failure is logged (user name, client, failures in a row, refusals, the wait).
- Logout deletes the session that made the request (a bearer caller has none) and expires the
  cookie; like every unsafe call with a session, it needs the CSRF token.
- Sessions end at `expires_at`; there is no sliding renewal. A user's session follows the
  config (auth.py); a session begun with a token ends when the token is revoked.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import time
from typing import Annotated, assert_never

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
    csrf_token_of,
    hash_token,
    require_read,
    session_scheme,
    unauthorized,
    verify_password,
)
from strangler.admin.login_throttle import (
    Failure,
    LoginKey,
    LoginThrottle,
    Refusal,
    Refused,
)
from strangler.admin.problems import problem_openapi
from strangler.admin.store_access import STORE_UNAVAILABLE_RESPONSE, store_dependency
from strangler.admin.view import GatewayView
from strangler.control.state import SessionRecord, Store
from strangler.routing.canary import client_address, is_in_networks

log = logging.getLogger("strangler.admin")

SESSION_PATH = "/api/v1/session"
_NO_STORE = "no-store"


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
        "session. GET /api/v1/session with the session cookie answers it again."
    )
    expires_at: float = Field(description="Unix time when the session ends")


class Caller(BaseModel):
    subject: str = Field(description="token:<name> or user:<name>")
    scope: Scope
    via: Via
    expires_at: float | None = Field(
        description="Unix time when the session ends; null for a token"
    )
    csrf_token: str | None = Field(
        description="The session's CSRF token, to the session cookie's owner only; null for a "
        "token, and for a session begun before CSRF tokens were derived (log in again)"
    )


def session_cookie(value: str, max_age_s: int, *, is_secure: bool) -> str:
    """The Set-Cookie value; `max_age_s` 0 expires it (logout)."""
    cookie = f"{SESSION_COOKIE}={value}; Max-Age={max_age_s}; Path=/; HttpOnly; SameSite=Strict"
    # Secure only over https (see is_https): over plain http (the default 127.0.0.1 listener) a
    # browser would drop a Secure cookie and nobody could log in.
    return cookie + "; Secure" if is_secure else cookie


def is_https(request: Request, gateway: GatewayView) -> bool:
    """Whether the browser reached the admin over https: directly, or through a proxy in
    `forwarding.trusted_proxies` that terminated TLS and said so in X-Forwarded-Proto (its
    last value: the one that proxy wrote)."""
    if request.url.scheme == "https":
        return True
    peer = request.client.host if request.client is not None else ""
    proto = request.headers.getlist("x-forwarded-proto")
    return (
        bool(proto)
        and proto[-1].rsplit(",", 1)[-1].strip().lower() == "https"
        and is_in_networks(peer, gateway.snapshot.trusted_networks)
    )


def login_key(request: Request, gateway: GatewayView, user: str | None) -> LoginKey:
    """Whose failures this login counts towards: `user` (None for a token) and the client.

    uvicorn's proxy_headers stay off: X-Forwarded-For is believed here, and only from a peer
    in `forwarding.trusted_proxies`, by the same rule as the proxy's.
    """
    peer = request.client.host if request.client is not None else "unknown"
    forwarded = request.headers.getlist("x-forwarded-for")
    client = client_address(
        peer, ", ".join(forwarded) if forwarded else None, gateway.snapshot.trusted_networks
    )
    return LoginKey(user, client)


def too_many(key: LoginKey, refused: Refused) -> HTTPException:
    """The 429 of an attempt the throttle refused. Its detail never echoes the user name."""
    logins = "logins for this user" if key.user is not None else "token logins"
    match refused.reason:
        case Refusal.BACKOFF:
            detail = f"too many failed {logins} from this address"
        case Refusal.USER_HELD:
            detail = f"too many failed {logins} from several addresses"
        case Refusal.BUSY:
            detail = "another login attempt like this one is being checked"
        case unreachable:
            assert_never(unreachable)
    return HTTPException(
        429,
        f"{detail}; try again in Retry-After seconds",
        headers={"Retry-After": str(max(1, math.ceil(refused.wait_s)))},
    )


def log_failure(key: LoginKey, failure: Failure) -> None:
    who = "a token" if key.user is None else f"user {key.user!r}"
    held = "; the user is held: failures from several addresses" if failure.is_user_held else ""
    log.warning(
        "admin login failed for %s from %s: %d in a row (%d refused during backoff); "
        "next attempt in %d s%s",
        who,
        key.client,
        failure.in_a_row,
        failure.refused,
        max(1, math.ceil(failure.wait_s)),
        held,
    )


_TOO_MANY = {
    **problem_openapi(
        "Failed logins of this user from this client (or from several clients) hold its next "
        "attempt back; wait Retry-After seconds"
    ),
    "headers": {
        "Retry-After": {
            "description": "Seconds until the next attempt is allowed",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        }
    },
}


def session_router(gateway: GatewayView, throttle: LoginThrottle) -> APIRouter:
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
        user = credentials.user if isinstance(credentials, PasswordLogin) else None
        key = login_key(request, gateway, user)
        refused = throttle.admit(key)
        if refused is not None:
            raise too_many(key, refused)
        authenticator: Authenticator = request.app.state.authenticator
        now = time.time()
        try:
            store = store_dependency(request)
            subject_scope = _check_login(authenticator, store, credentials, now)
        except BaseException:
            # Not a failed login: the store was down (503), and the attempt was never judged.
            throttle.unjudged(key)
            raise
        if subject_scope is None:
            log_failure(key, throttle.failed(key, admin.login_attempts_per_minute))
            raise unauthorized("wrong token, user or password")
        throttle.succeeded(key)
        subject, scope, token_id = subject_scope
        value = secrets.token_urlsafe(32)
        csrf_token = csrf_token_of(value)
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
        is_secure = is_https(request, gateway)
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
    def whoami(
        request: Request,
        response: FastAPIResponse,
        principal: Annotated[Principal, Depends(require_read)],
        cookie: Annotated[str | None, Depends(session_scheme)],
    ) -> Caller:
        csrf_token = None
        if principal.via is Via.SESSION and principal.session_hash is not None and cookie:
            csrf_token = _session_csrf_token(store_dependency(request), principal, cookie)
            response.headers["Cache-Control"] = _NO_STORE
        return Caller(
            subject=principal.name,
            scope=principal.scope,
            via=principal.via,
            expires_at=principal.expires_at,
            csrf_token=csrf_token,
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
        is_secure = is_https(request, gateway)
        answer.headers.append("Set-Cookie", session_cookie("", 0, is_secure=is_secure))
        return answer

    return router


def _session_csrf_token(store: Store, principal: Principal, cookie: str) -> str | None:
    """The CSRF token of the session this cookie authenticated, if it is the derived one."""
    assert principal.session_hash is not None  # the caller checked: a session principal
    session = store.session(principal.session_hash, time.time())
    token = csrf_token_of(cookie)
    if session is None or not hmac.compare_digest(session.csrf_hash, hash_token(token)):
        return None
    return token


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
