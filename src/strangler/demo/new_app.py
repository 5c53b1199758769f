"""The demo's new backend: the read side of the projects API, reimplemented from the same seed.

It plays the replacement service (in the playbook, an axum service behind the BFF). It answers
`GET /api/projects(.json)`, `GET /api/projects/:id(.json)` and `GET /api/projects/:id/tasks(.json)`
with the legacy app's JSON, apart from the small differences a real rewrite tends to ship, which
a response diff should find (they are listed in `INTENDED_DIFFERENCES` so tests can check that
they, and only they, differ):

- `updated_at` carries milliseconds ("...:58.000Z"); `created_at` is still printed Rails' way;
- every project has an extra `"archived": false`;
- a task's `done` is called `completed` (a renamed field; the shadowed tasks route shows it);
- the tasks index's `meta.pending_count` is one short (an off-by-one in a count, shown there too);
- responses say `X-Served-By: new`, use `Content-Type: application/json` without a charset, and
  carry none of Rails' X-Runtime, ETag or security headers;
- errors are RFC 9457 problem+json: 404 for unknown paths and ids, 405 (with Allow) for a known
  path and the wrong method, as axum's router answers.

It also has what only the new service has: `GET /api/me` (who the gateway says the caller is)
and `POST /api/projects/:id/star` (a feature built in the new service, called from the legacy
app's project page). Both need a caller: the gateway's identity token, verified against its JWKS
(identity_verifier.py); the Rails session cookie never reaches this app.

And a chaos switch, so the demo can show the canary analyzer rolling back a bad release: in
mode `slow`, `GET /api/projects/:id` answers CHAOS_DELAY_S later; in mode `fail` it answers 503
problem+json. Every other route is untouched. The mode starts from CHAOS_ENV (`ok` when unset)
and is read or flipped at runtime with `GET|POST /_demo/chaos` on this app itself, never through
the gateway (no route sends `/_demo/` there).

Rules: projects and tasks are read-only here; their data is the seed and never changes, so
writes sent to the legacy app show up here as drift, which is the point. Stars are this app's
own table (in memory), written only by a verified caller. The chaos mode is per app, in memory.
"""

from __future__ import annotations

import asyncio
import enum
import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from strangler.demo.identity_verifier import Identity, IdentityVerifier
from strangler.demo.seed import Project, Task, seed_projects, seed_tasks

SERVED_BY = "new"
# Set by the runner: the gateway admin listener's JWKS, and the gateway's `identity.issuer`.
JWKS_URL_ENV = "STRANGLER_DEMO_JWKS_URL"
ISSUER_ENV = "STRANGLER_DEMO_IDENTITY_ISSUER"
DEFAULT_ISSUER = "strangler"
AUDIENCE_ENV = "STRANGLER_DEMO_IDENTITY_AUDIENCE"
# The demo config's name for this backend, which the gateway puts in each token's `aud`.
DEFAULT_AUDIENCE = "new"
# The chaos mode the app starts in (`ok`, `slow`, `fail`); the runner passes it on.
CHAOS_ENV = "STRANGLER_DEMO_NEW_CHAOS"
CHAOS_PATH = "/_demo/chaos"
# What the chaos switch breaks: the route the demo's canary moves, and only that one.
CHAOS_ROUTE = "GET /api/projects/:id"
# Over 20x the p99 both demo apps show through the gateway (4-7 ms in the demo), so far past the
# analyzer's latency checks (p50 1.5x and p99 2x legacy's, plus 5 ms of slack), yet short
# enough that the demo's traffic and pages keep flowing.
CHAOS_DELAY_S = 0.15
INTENDED_DIFFERENCES = (
    "updated_at has milliseconds",
    'projects have "archived": false',
    'tasks say "completed", not "done"',
    "meta.pending_count of a task list is one short",
    "X-Served-By: new header",
    "Content-Type has no charset",
    "no X-Runtime, ETag or Rails security headers",
    "errors are application/problem+json",
)


class ChaosMode(enum.StrEnum):
    """How the new app answers CHAOS_ROUTE: normally, CHAOS_DELAY_S late, or 503."""

    OK = "ok"
    SLOW = "slow"
    FAIL = "fail"

    @classmethod
    def parse(cls, text: str) -> ChaosMode:
        """`ok`, `slow` or `fail` (any case, spaces around ignored); ValueError names them."""
        try:
            return cls(text.strip().lower())
        except ValueError:
            choices = ", ".join(mode.value for mode in cls)
            raise ValueError(f"chaos mode {text!r} is not one of {choices}") from None


def chaos_from_env() -> ChaosMode:
    """CHAOS_ENV, `ok` when unset or empty; ValueError on anything else."""
    return ChaosMode.parse(os.environ.get(CHAOS_ENV) or ChaosMode.OK.value)


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time_ms(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _project_json(project: Project, tasks_count: int) -> dict[str, Any]:
    return {
        "id": project.id,
        "name": project.name,
        "owner": project.owner,
        "tasks_count": tasks_count,
        "created_at": _time(project.created_at),
        "updated_at": _time_ms(project.updated_at),
        "archived": False,
    }


def _task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "project_id": task.project_id,
        "title": task.title,
        "completed": task.is_done,
        "due_on": task.due_on.isoformat() if task.due_on else None,
        "created_at": _time(task.created_at),
        "updated_at": _time_ms(task.updated_at),
    }


def _request_id(request: Request) -> str:
    # Keep the id the gateway (or client) sent, so one request can be followed across both apps;
    # picked once per request, so the header and the body's meta always agree.
    request_id = getattr(request.state, "request_id", None)
    if not isinstance(request_id, str):
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        request.state.request_id = request_id
    return request_id


def _json(request: Request, body: dict[str, Any], status: int = 200) -> JSONResponse:
    headers = {"x-served-by": SERVED_BY, "x-request-id": _request_id(request)}
    return JSONResponse(body, status_code=status, headers=headers)


def _problem(
    request: Request, status: int, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    response = _json(request, body, status)
    response.headers["content-type"] = "application/problem+json"
    response.headers.update(headers or {})
    return response


class _Catalog:
    """The seed, indexed once per app."""

    def __init__(self) -> None:
        self.projects = {project.id: project for project in seed_projects()}
        self.tasks_by_project: dict[int, list[Task]] = {}
        for task in seed_tasks():
            self.tasks_by_project.setdefault(task.project_id, []).append(task)

    def project_json(self, project: Project) -> dict[str, Any]:
        return _project_json(project, len(self.tasks_by_project.get(project.id, [])))


def _catalog(request: Request) -> _Catalog:
    catalog: _Catalog = request.app.state.catalog
    return catalog


def _meta(request: Request) -> dict[str, object]:
    return {
        "request_id": _request_id(request),
        "generated_at": _time(datetime.now(UTC)),
        "db_runtime_ms": round(random.uniform(0.2, 3.0), 3),
    }


async def list_projects(request: Request) -> Response:
    catalog = _catalog(request)
    projects = [catalog.project_json(p) for p in sorted(catalog.projects.values(), key=_by_id)]
    return _json(request, {"projects": projects, "meta": _meta(request)})


async def show_project(request: Request) -> Response:
    mode: ChaosMode = request.app.state.chaos
    if mode is ChaosMode.FAIL:
        detail = f"chaos mode {mode.value} (see {CHAOS_PATH} on the new app)"
        return _problem(request, 503, "Service Unavailable", detail)
    if mode is ChaosMode.SLOW:
        await asyncio.sleep(CHAOS_DELAY_S)
    catalog = _catalog(request)
    project_id: int = request.path_params["id"]
    project = catalog.projects.get(project_id)
    if project is None:
        return _problem(request, 404, "Not Found", f"project {project_id} does not exist")
    return _json(request, {"project": catalog.project_json(project), "meta": _meta(request)})


async def list_tasks(request: Request) -> Response:
    catalog = _catalog(request)
    project_id: int = request.path_params["id"]
    if project_id not in catalog.projects:
        return _problem(request, 404, "Not Found", f"project {project_id} does not exist")
    tasks = catalog.tasks_by_project.get(project_id, [])
    # The deliberate off-by-one: the port's slice drops the last task, which is pending in
    # every seeded project, so this count is one short of legacy's.
    meta = {"pending_count": sum(not task.is_done for task in tasks[:-1]), **_meta(request)}
    return _json(request, {"tasks": [_task_json(t) for t in tasks], "meta": meta})


async def _caller(request: Request) -> Identity | Response:
    verifier: IdentityVerifier = request.app.state.identity
    found = await verifier.identify(request.headers)
    if isinstance(found, Identity):
        return found
    title = "Unauthorized" if found.status == 401 else "Service Unavailable"
    return _problem(request, found.status, title, found.detail, dict(found.headers))


async def show_me(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    body = {"user": {"id": caller.user_id}, "identity": caller.to_json(), "meta": _meta(request)}
    return _json(request, body)


async def star_project(request: Request) -> Response:
    caller = await _caller(request)
    if isinstance(caller, Response):
        return caller
    project_id: int = request.path_params["id"]
    if project_id not in _catalog(request).projects:
        return _problem(request, 404, "Not Found", f"project {project_id} does not exist")
    stars: dict[int, set[str]] = request.app.state.stars
    starred_by = stars.setdefault(project_id, set())
    starred_by.add(caller.user_id)
    body = {
        "project_id": project_id,
        "starred": True,
        "stars_count": len(starred_by),
        "user": {"id": caller.user_id},
    }
    return _json(request, body)


def _chaos_json(request: Request) -> dict[str, Any]:
    mode: ChaosMode = request.app.state.chaos
    return {
        "mode": mode.value,
        "modes": [choice.value for choice in ChaosMode],
        "affects": CHAOS_ROUTE,
        "delay_ms": round(CHAOS_DELAY_S * 1000),
    }


async def show_chaos(request: Request) -> Response:
    return _json(request, _chaos_json(request))


async def set_chaos(request: Request) -> Response:
    """`{"mode": "fail"}` as JSON, or `mode=fail` as a form: the mode from now on."""
    text: object = None
    content_type = request.headers.get("content-type", "").lower()
    if content_type.startswith("application/json"):
        try:
            body = await request.json()
        except ValueError:  # not JSON, or not UTF-8
            body = None
        text = body.get("mode") if isinstance(body, dict) else None
    elif content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        text = (await request.form()).get("mode")
    if not isinstance(text, str):
        detail = 'send {"mode": "ok|slow|fail"} as JSON, or the form field mode'
        return _problem(request, 422, "Unprocessable Content", detail)
    try:
        request.app.state.chaos = ChaosMode.parse(text)
    except ValueError as exc:
        return _problem(request, 422, "Unprocessable Content", str(exc))
    return _json(request, _chaos_json(request))


async def healthz(request: Request) -> Response:
    return _json(request, {"status": "ok"})


def _by_id(project: Project) -> int:
    return project.id


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
        return _problem(request, 405, "Method Not Allowed", detail, dict(exc.headers or {}))
    detail = f"no route for {request.method} {request.url.path}"
    return _problem(request, 404, "Not Found", detail)


def create_new_app(
    jwks_url: str | None = None, issuer: str | None = None, chaos: ChaosMode | None = None
) -> Starlette:
    """A fresh new-backend app; no I/O until a server runs it (the JWKS is fetched on first use).

    `jwks_url` and `issuer` default to the JWKS_URL_ENV and ISSUER_ENV variables (the runner
    sets them); without a JWKS URL, requests that bring an identity token are answered 503.
    `chaos` defaults to CHAOS_ENV; a value there that is not a mode raises ValueError.
    """
    routes: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route(CHAOS_PATH, show_chaos, methods=["GET"]),
        Route(CHAOS_PATH, set_chaos, methods=["POST"]),
    ]
    for path, endpoint, method in (
        ("/api/projects", list_projects, "GET"),
        ("/api/projects/{id:int}", show_project, "GET"),
        ("/api/projects/{id:int}/tasks", list_tasks, "GET"),
        ("/api/projects/{id:int}/star", star_project, "POST"),
        ("/api/me", show_me, "GET"),
    ):
        routes += [
            Route(path, endpoint, methods=[method]),
            Route(f"{path}.json", endpoint, methods=[method]),
        ]
    app = Starlette(routes=routes, exception_handlers={404: _http_error, 405: _http_error})
    app.state.catalog = _Catalog()
    app.state.stars = {}
    app.state.chaos = chaos_from_env() if chaos is None else chaos
    app.state.identity = IdentityVerifier(
        jwks_url or os.environ.get(JWKS_URL_ENV) or None,
        issuer=issuer or os.environ.get(ISSUER_ENV) or DEFAULT_ISSUER,
        audience=os.environ.get(AUDIENCE_ENV) or DEFAULT_AUDIENCE,
    )
    return app
