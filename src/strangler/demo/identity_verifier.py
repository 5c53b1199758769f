"""How the demo's new app knows who is calling: the gateway's identity token, verified.

For a request that carries a logged-in Rails session, the gateway sends the new backend a short
lived JWT (EdDSA, claims iss, sub, aud, iat, exp, jti, sid, route) in `Authorization: Bearer
...`, or in `X-Strangler-Identity` when the client sent an Authorization header of its own. The
new app verifies it as any real service would: with PyJWT, against the gateway's JWKS (`GET
/.well-known/jwks.json` on the admin listener), the issuer and audience checked and EdDSA the
only algorithm.

Rules:
- No token is 401; a token that does not verify (signature, unknown key, issuer, expiry, missing
  claims) is 401 with RFC 6750's `error="invalid_token"`. A JWKS that cannot be fetched is 503:
  the app cannot tell who is calling, so it says so instead of guessing. No JWKS URL configured
  is 503 too, for a request that brings a token.
- X-Strangler-Identity is read before Authorization: the gateway strips it from every client
  request, so only the gateway can have set it, while Authorization may be the client's own.
- PyJWKClient fetches with blocking urllib, so verification runs in the thread pool, never on
  the event loop. It caches the key set for JWKS_CACHE_S and refetches it when a token names an
  unknown key id (after its cooldown), which is how a rotated key is found.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Final

import jwt
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers

__all__ = [
    "FALLBACK_HEADER",
    "Identity",
    "IdentityRefusal",
    "IdentitySource",
    "IdentityVerifier",
]

FALLBACK_HEADER: Final = "x-strangler-identity"
# Below the gateway's JWKS max-age cap (60 s): a new `next` key is seen well before it signs.
JWKS_CACHE_S: Final = 30.0
JWKS_FETCH_TIMEOUT_S: Final = 2.0
_LEEWAY_S: Final = 5
_REQUIRED_CLAIMS: Final = ["iss", "sub", "aud", "iat", "exp"]
_BEARER_CHALLENGE: Final = 'Bearer realm="strangler-demo"'


class IdentitySource(enum.StrEnum):
    """The request header the identity token came in."""

    AUTHORIZATION = "authorization"
    FALLBACK_HEADER = FALLBACK_HEADER


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller the gateway vouched for: the claims of a verified token."""

    user_id: str
    source: IdentitySource
    issuer: str
    key_id: str
    route: str | None
    session_id_hash: str | None
    expires_at: int

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source.value,
            "issuer": self.issuer,
            "kid": self.key_id,
            "route": self.route,
            "session_id_hash": self.session_id_hash,
            "expires_at": self.expires_at,
        }


@dataclass(frozen=True, slots=True)
class IdentityRefusal:
    """Why a request has no identity: the status to answer, a detail, and response headers."""

    status: int
    detail: str
    headers: tuple[tuple[str, str], ...] = ()


class IdentityVerifier:
    """Verifies the gateway's identity tokens; one per app, shared by its requests."""

    def __init__(self, jwks_url: str | None, *, issuer: str, audience: str) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        # The gateway's tokens name the backend they are for (`aud`, by default the backend's
        # name in its config): a token minted for another backend is refused here.
        self.audience = audience
        self._client = (
            jwt.PyJWKClient(jwks_url, lifespan=JWKS_CACHE_S, timeout=JWKS_FETCH_TIMEOUT_S)
            if jwks_url
            else None
        )

    def __repr__(self) -> str:
        return f"<IdentityVerifier issuer={self.issuer!r} jwks={self.jwks_url or 'none'}>"

    async def identify(self, headers: Headers) -> Identity | IdentityRefusal:
        """The caller of a request with these headers, or why there is none."""
        found = _token_of(headers)
        if found is None:
            return IdentityRefusal(
                401,
                "no identity token: log in on the legacy app (through the gateway) first",
                (("www-authenticate", _BEARER_CHALLENGE),),
            )
        token, source = found
        if self._client is None:
            return IdentityRefusal(503, "this app has no JWKS URL to verify identity tokens with")
        return await run_in_threadpool(self._verify, self._client, token, source)

    def _verify(
        self, client: jwt.PyJWKClient, token: str, source: IdentitySource
    ) -> Identity | IdentityRefusal:
        try:
            signing_key = client.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=["EdDSA"],
                issuer=self.issuer,
                audience=self.audience,
                leeway=_LEEWAY_S,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWKClientConnectionError as exc:
            return IdentityRefusal(503, f"cannot fetch the gateway's JWKS: {exc}")
        except jwt.PyJWTError as exc:
            challenge = f'{_BEARER_CHALLENGE}, error="invalid_token"'
            return IdentityRefusal(
                401, f"invalid identity token: {exc}", (("www-authenticate", challenge),)
            )
        return Identity(
            user_id=str(claims["sub"]),
            source=source,
            issuer=str(claims["iss"]),
            key_id=str(signing_key.key_id),
            route=_optional_text(claims.get("route")),
            session_id_hash=_optional_text(claims.get("sid")),
            expires_at=int(claims["exp"]),
        )


def _token_of(headers: Headers) -> tuple[str, IdentitySource] | None:
    fallback = headers.get(FALLBACK_HEADER)
    if fallback:
        return fallback.strip(), IdentitySource.FALLBACK_HEADER
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), IdentitySource.AUTHORIZATION
    return None


def _optional_text(value: object) -> str | None:
    return value if isinstance(value, str) else None
