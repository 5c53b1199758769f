"""The diffs resource of the admin API: shadow parity per route, a route's ranked difference
paths with their examples (stored redacted), and reviews (accepted / noise).

Rules: reads need scope read, a review needs write and is recorded with the principal's name;
every operation is a sync `def` (store I/O runs in the thread pool). The documents are the ones
`strangler diffs --json` builds (cli/diffs.py), so the CLI's `--admin` prints the same; which
routes are shadowed is read from the snapshot the gateway routes with.
"""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from strangler.admin.auth import AUTH_RESPONSES, Principal, require_read, require_write
from strangler.admin.problems import problem_openapi
from strangler.admin.store_access import store_dependency
from strangler.admin.view import GatewayView
from strangler.cli.diffs import route_report, routes_report, shadowed_routes
from strangler.control.state import Store

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: problem_openapi("No shadow results for that route (or path)")
}


class ReviewBody(BaseModel):
    path: Annotated[str, Field(min_length=1, max_length=2000, description="A rule path.")]
    verdict: Literal["accepted", "noise"]
    reason: Annotated[str, Field(max_length=2000)] = ""


def diffs_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(prefix="/api/v1/diffs", tags=["diffs"], responses=AUTH_RESPONSES)
    read = [Depends(require_read)]

    @router.get(
        "",
        dependencies=read,
        summary="Shadow parity of every shadowed route, and of every route with results",
    )
    def list_diffs(store: Annotated[Store, Depends(store_dependency)]) -> list[dict[str, Any]]:
        return routes_report(store, shadowed_routes(gateway.snapshot))

    @router.get(
        "/{route}",
        dependencies=read,
        responses=_NOT_FOUND,
        summary="A route's difference paths, most frequent first, with examples",
    )
    def route_diffs(
        route: str, store: Annotated[Store, Depends(store_dependency)]
    ) -> dict[str, Any]:
        report = route_report(store, route)
        if report is None:
            raise HTTPException(404, f"no shadow results for route {route!r}")
        return report

    @router.post(
        "/{route}/reviews",
        responses={**_NOT_FOUND, 400: problem_openapi("An accepted difference needs a reason")},
        summary="Mark a difference path accepted (an intended change) or noise",
    )
    def review(
        route: str,
        body: ReviewBody,
        principal: Annotated[Principal, Depends(require_write)],
        store: Annotated[Store, Depends(store_dependency)],
    ) -> dict[str, str]:
        try:
            store.review(route, body.path, body.verdict, body.reason, principal.name, time.time())
        except KeyError as exc:
            raise HTTPException(
                404, f"route {route!r} has no difference path {body.path!r}"
            ) from exc
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        return {"route": route, "path": body.path, "verdict": body.verdict}

    return router
