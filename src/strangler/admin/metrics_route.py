"""`GET /metrics`: the Prometheus exposition of the whole gateway process.

Rules: public when `admin.metrics_public` says so (by default only while the admin listener is
on loopback), else any read token or session. The document is rendered on a thread: with
thousands of routes it takes milliseconds that the event loop must not wait for.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from strangler.admin.auth import authenticate, bearer_scheme, session_scheme
from strangler.admin.problems import problem_openapi, problem_response
from strangler.admin.view import GatewayView
from strangler.observe.exposition import (
    OPENMETRICS_CONTENT_TYPE,
    TEXT_CONTENT_TYPE,
    wants_openmetrics,
)


def metrics_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    def may_read(
        request: Request,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
        cookie: Annotated[str | None, Depends(session_scheme)],
    ) -> None:
        if not gateway.snapshot.config.admin.is_metrics_public:
            authenticate(request, bearer, cookie)

    @router.get(
        "/metrics",
        summary="Prometheus metrics (text format 0.0.4, or OpenMetrics when asked for)",
        response_class=Response,
        responses={
            200: {"content": {TEXT_CONTENT_TYPE: {}, OPENMETRICS_CONTENT_TYPE: {}}},
            404: problem_openapi("Metrics are off (metrics.enabled: false)"),
        },
        dependencies=[Depends(may_read)],
        # Credentials are optional: `{}` says the operation may also be called without any
        # (admin.metrics_public), as OpenAPI 3.1 §4.8.10 spells "optional security".
        openapi_extra={"security": [{}, {"token": []}, {"session": []}]},
    )
    async def metrics(request: Request) -> Response:
        hub = gateway.metrics_hub
        if hub is None:
            return problem_response(404, "metrics are off in this gateway (metrics.enabled)")
        gateway.refresh_metrics()
        openmetrics = wants_openmetrics(request.headers.get("accept"))
        body = await run_in_threadpool(hub.render, openmetrics=openmetrics)
        media = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        return Response(body, media_type=media, headers={"Cache-Control": "no-store"})

    return router
