"""`GET /.well-known/jwks.json`: the public keys that verify the gateway's identity tokens.

Public on purpose: a JWK Set is public keys only (RFC 7517), and the new backend's verifiers
fetch it without credentials. The authenticated admin API comes with the control plane.

Rules:
- The set is the identity key ring's (`identity.keys_path`, shared with the workers through the
  file): its `next`, `active` and not-yet-removed `retired` keys, public members only.
- `Cache-Control: public, max-age=N` with N at most half the ring's `publish_ahead_s` (and at
  most 60 s): a verifier that honours it has seen a `next` key before any token names it.
- `Content-Type: application/json`, which RFC 7517 §8.5 allows beside application/jwk-set+json
  and which every JWKS client accepts (PyJWT's PyJWKClient ignores the type; so do most).
- 404 problem when `rails:` is not configured (there is no ring), 503 problem when the ring
  file cannot be used (the reason goes to the log, not to the client).
- The ring is followed across reloads: a changed `identity.keys_path` is read at the next
  request. The file is read off the event loop (a sync endpoint runs in the thread pool), so a
  worker's loop never waits on the disk for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from pathlib import Path

import orjson
from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from strangler.admin.problems import problem_openapi, problem_response
from strangler.admin.view import GatewayView
from strangler.identity.tokens import KeyRing, KeyRingError, KeyRingFile
from strangler.runtime.snapshot import BridgeSetup

log = logging.getLogger("strangler.admin")

JWKS_PATH = "/.well-known/jwks.json"
MAX_CACHE_AGE_S = 60


class JsonWebKey(BaseModel):
    """An Ed25519 public key (RFC 8037 §2); `kid` is its RFC 7638 thumbprint."""

    kty: str
    crv: str
    x: str
    kid: str
    use: str
    alg: str


class JsonWebKeySet(BaseModel):
    keys: list[JsonWebKey]


def cache_max_age_s(ring: KeyRing) -> int:
    """Half the time a next key is published before it signs, capped at MAX_CACHE_AGE_S."""
    return max(0, min(MAX_CACHE_AGE_S, math.floor(ring.publish_ahead_s / 2)))


class JwksSource:
    """The key ring of the snapshot in force, loaded once per (path, ttl) and then re-read by
    `KeyRingFile.current()` when the file changes (a stat at most once a second).

    Thread-safe: the sync endpoint runs in the thread pool, so two requests may ask at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._file: KeyRingFile | None = None
        self._key: tuple[Path, float] | None = None

    def ring(self, bridge: BridgeSetup) -> KeyRing:
        """The ring for `bridge`, creating its file if it is missing; raises KeyRingError."""
        key = (bridge.keys_path, bridge.identity.ttl_s)
        with self._lock:
            if self._file is None or self._key != key:
                self._file = KeyRingFile(bridge.keys_path, max_token_ttl_s=bridge.identity.ttl_s)
                self._key = key
            return self._file.current()

    def prime(self, bridge: BridgeSetup | None) -> None:
        """Load (or create) the ring now, at start-up, rather than on the first request.

        The supervisor forks workers while its admin thread runs; a ring created by that thread
        mid-fork could leave its flock descriptor in a worker. Priming before any fork avoids it.
        A ring that cannot be used is logged; the endpoint answers 503 and retries.
        """
        if bridge is None:
            return
        try:
            self.ring(bridge)
        except KeyRingError as exc:
            log.error("identity key ring unusable, JWKS answers 503 until fixed: %s", exc)

    def __repr__(self) -> str:
        return f"<JwksSource {self._file!r}>"


def jwks_router(gateway: GatewayView, source: JwksSource) -> APIRouter:
    router = APIRouter(tags=["identity"])

    @router.get(
        JWKS_PATH,
        response_model=JsonWebKeySet,
        summary="Public keys that verify the identity tokens sent to the new backend",
        responses={
            404: problem_openapi("`rails:` is not configured, so there are no identity keys"),
            503: problem_openapi("The identity key ring cannot be read (see the gateway's log)"),
        },
    )
    def jwks() -> Response:
        bridge = gateway.snapshot.bridge
        if bridge is None:
            return problem_response(
                404, "no identity keys: the gateway's config has no `rails:` section"
            )
        try:
            ring = source.ring(bridge)
        except KeyRingError as exc:
            log.error("JWKS: identity key ring unusable: %s", exc)
            return problem_response(503, "the identity key ring cannot be read")
        return Response(
            orjson.dumps(ring.jwks(time.time())),
            media_type="application/json",
            headers={"Cache-Control": f"public, max-age={cache_max_age_s(ring)}"},
        )

    return router
