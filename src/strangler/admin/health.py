"""`GET /healthz` (the process answers) and `GET /readyz` (it takes traffic), for probes.

Rules: public and cheap: no I/O, no lock, one attribute read of the view. `/readyz` turns 503
the moment the gateway starts draining (SIGTERM), so a load balancer stops sending it traffic
while requests in flight finish. A gateway whose control store is unreachable stays ready (it
serves its last-known-good state: it must never become the single point of failure) and says
`degraded`, with why; so does one with a balanced backend none of whose servers takes
requests (it stays `ready` while one server of each backend answers).
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.responses import Response

from strangler.admin.problems import problem_openapi, problem_response
from strangler.admin.view import GatewayView
from strangler.runtime.health_board import backends_down


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "degraded"] = "ready"
    # The snapshot version in force: 1 at start, +1 per accepted reload or state change.
    config_version: int
    # Why the gateway is degraded (a stale state, backends with no healthy server), else null.
    reason: str | None = None
    # Balanced backends with no server that takes requests (status degraded).
    backends_down: list[str] = []


def health_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Health, summary="The admin listener answers")
    async def healthz() -> Health:
        return Health()

    @router.get(
        "/readyz",
        response_model=Readiness,
        summary="The gateway takes traffic",
        responses={503: problem_openapi("The gateway is draining (stopping)")},
    )
    async def readyz() -> Readiness | Response:
        if gateway.is_draining:
            return problem_response(503, "the gateway is draining: it is stopping")
        reasons = [] if gateway.degraded is None else [gateway.degraded]
        down = backends_down(gateway.backend_health())
        if down:
            reasons.append(f"no healthy server in backend(s) {', '.join(down)}")
        if reasons:
            return Readiness(
                status="degraded",
                config_version=gateway.snapshot.version,
                reason="; ".join(reasons),
                backends_down=down,
            )
        return Readiness(config_version=gateway.snapshot.version)

    return router
