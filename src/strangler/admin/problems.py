"""Errors as RFC 9457 problem details (`application/problem+json`), for every admin response.

Rules: one function, `problem_response`, renders them. Unknown paths, wrong methods and bad
parameters get their 4xx as a problem; a path with a trailing slash too (the app never
redirects), whose 404 names the endpoint without the slash when there is one. An unexpected
exception gets a 500 problem that says nothing about the exception (the traceback goes to the
log, once, never to the client).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

PROBLEM_MEDIA_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 §3.1 members; `type` stays about:blank, so `title` is the status phrase (§4.2.1)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None


def problem_response(
    status: int, detail: str | None = None, *, headers: Mapping[str, str] | None = None
) -> Response:
    body: dict[str, Any] = {"type": "about:blank", "title": HTTPStatus(status).phrase}
    body["status"] = status
    if detail:
        body["detail"] = detail
    return Response(
        orjson.dumps(body), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


def problem_openapi(description: str) -> dict[str, Any]:
    """An OpenAPI `responses` entry for a problem answer."""
    return {
        "description": description,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": Problem.model_json_schema()}},
    }


async def _http_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for HTTPException only
    detail = exc.detail if exc.detail != HTTPStatus(exc.status_code).phrase else None
    if exc.status_code == HTTPStatus.NOT_FOUND and detail is None:
        detail = _not_found_detail(request)
    return problem_response(exc.status_code, detail, headers=exc.headers)


def _not_found_detail(request: Request) -> str:
    path: str = request.scope["path"]
    stripped = path.rstrip("/")
    if stripped and stripped != path:
        scope = {**request.scope, "path": stripped}
        routes: list[BaseRoute] = request.app.router.routes
        if any(route.matches(scope)[0] is not Match.NONE for route in routes):
            return (
                f"no admin endpoint at {path}; without the trailing slash, {stripped} is one. "
                "The endpoints are in /openapi.json"
            )
    return f"no admin endpoint at {path}; the endpoints are in /openapi.json"


async def _validation_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # registered for it only
    # Name the fields, never echo the values: a problem body must not reflect what was sent.
    fields = sorted({".".join(str(part) for part in error["loc"]) for error in exc.errors()})
    return problem_response(422, f"invalid request parameters: {', '.join(fields)}")


async def _unexpected_problem(request: Request, exc: Exception) -> Response:
    # Starlette logs the traceback after this returns (it re-raises to the server), so it is
    # logged once, by the server, and the client sees no stack trace.
    return problem_response(500, "unexpected error in the admin API; see the gateway's log")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_problem)
    app.add_exception_handler(RequestValidationError, _validation_problem)
    app.add_exception_handler(Exception, _unexpected_problem)
