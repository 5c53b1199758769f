"""`GET /api/v1/identity`: the Rails bridge at a glance, for the dashboard's identity screen.

Rules: scope read. An async endpoint, like /metrics: the counts are brought up to date on the
event loop (a lone worker hands over its own), and the key ring file is read in the thread pool.
The signing keys are listed by kid, state and times only: never a key's
material, public or private (the public halves are at /.well-known/jwks.json). The counts are
the workers' counters as /metrics sums them (the metrics hub), null when metrics are off. 404
problem without `rails:`, 503 when the key ring can't be read (the reason in the log), as the
JWKS endpoint answers.
"""

from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from strangler.admin.auth import AUTH_RESPONSES, require_read
from strangler.admin.jwks import JwksSource
from strangler.admin.problems import problem_openapi
from strangler.admin.view import GatewayView
from strangler.identity.tokens import KeyRingError

log = logging.getLogger("strangler.admin")


class SigningKeyOut(BaseModel):
    kid: str = Field(description="The key's RFC 7638 thumbprint, as tokens name it.")
    state: str = Field(description="next, active, retired or removed.")
    published_at: float
    activated_at: float | None
    retired_at: float | None
    removed_at: float | None = Field(description="When a retired key stops being published.")


class IdentityOut(BaseModel):
    keys: list[SigningKeyOut]
    token_ttl_s: float
    sessions: dict[str, int] | None = Field(
        description="Rails session cookies read by the bridge, by outcome; null: metrics off."
    )
    csrf_refused: dict[str, int] | None = Field(
        description="Requests refused by Rails' forgery protection, by reason; null: metrics off."
    )
    tokens_issued: int | None = Field(description="Identity tokens minted; null: metrics off.")


def identity_router(gateway: GatewayView, source: JwksSource) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1/identity",
        tags=["identity"],
        dependencies=[Depends(require_read)],
        responses=AUTH_RESPONSES,
    )

    @router.get(
        "",
        summary="The identity signing keys (no key material) and the bridge's counts",
        responses={
            404: problem_openapi("`rails:` is not configured"),
            503: problem_openapi("The identity key ring cannot be read (see the gateway's log)"),
        },
    )
    async def identity() -> IdentityOut:
        bridge = gateway.snapshot.bridge
        if bridge is None:
            raise HTTPException(404, "no identity bridge: the gateway's config has no `rails:`")
        try:
            ring = await run_in_threadpool(source.ring, bridge)
        except KeyRingError as exc:
            log.error("identity: key ring unusable: %s", exc)
            raise HTTPException(503, "the identity key ring cannot be read") from exc
        now = time.time()
        keys = [
            SigningKeyOut(
                kid=key.kid,
                state=ring.state_at(key, now).value,
                published_at=key.published_at,
                activated_at=key.activated_at,
                retired_at=key.retired_at,
                removed_at=ring.removal_time(key),
            )
            for key in ring.keys
        ]
        hub = gateway.metrics_hub
        if hub is None:
            sessions = refused = None
            issued = None
        else:
            gateway.refresh_metrics()
            sessions = _by_label(hub.counter_totals("identity_sessions_total"))
            refused = _by_label(hub.counter_totals("identity_csrf_refused_total"))
            issued = int(sum(hub.counter_totals("identity_tokens_issued_total").values()))
        return IdentityOut(
            keys=keys,
            token_ttl_s=bridge.identity.ttl_s,
            sessions=sessions,
            csrf_refused=refused,
            tokens_issued=issued,
        )

    return router


def _by_label(totals: dict[tuple[str, ...], float]) -> dict[str, int]:
    return {(labels[0] if labels else ""): int(value) for labels, value in sorted(totals.items())}
