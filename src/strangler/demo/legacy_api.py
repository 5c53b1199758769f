"""The legacy app's records and its JSON API, answering as a Rails 7.1 API controller does.

Routes are `resources :projects` with `(.:format)`: index, show, create, update (PATCH and PUT),
destroy, and the nested tasks index. JSON is compact UTF-8 with `charset=utf-8`; times have no
fractions (`time_precision = 0`); errors are the bodies Rails' exceptions app renders
(`{"status":404,"error":"Not Found"}`), and validation errors are `{"errors": {field: [..]}}`.

Rules:
- State lives in one `LegacyStore` per app, seeded from `seed.py`. Handlers never await between
  reading and writing it, so the single event loop is its lock.
- Writes check the authenticity token first and the login second, in Rails' callback order
  (verify_authenticity_token runs before authenticate_user!): a bad token is 422 even when
  logged out, a good token without a login is 401.
- The table is bounded (`MAX_PROJECTS`): generated traffic creates projects for hours.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from strangler.demo.databases import LegacyDatabase
from strangler.demo.rails_conventions import is_authentic, request_id_of
from strangler.demo.seed import Project, Task, seed_projects, seed_tasks

MAX_PROJECTS = 200

Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class RailsJSONResponse(JSONResponse):
    """JSON as Rails renders it: compact, UTF-8, and a charset in the Content-Type."""

    media_type = "application/json; charset=utf-8"


def rails_time(moment: datetime) -> str:
    """ISO 8601 in UTC without fractions (`ActiveSupport::JSON::Encoding.time_precision = 0`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class LegacyStore:
    """The legacy app's database: projects, tasks and users, in memory."""

    projects: dict[int, Project] = field(default_factory=dict)
    tasks: tuple[Task, ...] = ()
    users: dict[str, int] = field(default_factory=dict)
    next_project_id: int = 1
    # The SQLite file every project write also goes to, when the demo gave the app one.
    database: LegacyDatabase | None = None

    @classmethod
    def from_seed(cls) -> LegacyStore:
        projects = {project.id: project for project in seed_projects()}
        return cls(projects=projects, tasks=seed_tasks(), next_project_id=max(projects) + 1)

    def put(self, project: Project) -> None:
        self.projects[project.id] = project
        if self.database is not None:
            self.database.save(project)

    def remove(self, project_id: int) -> None:
        del self.projects[project_id]
        if self.database is not None:
            self.database.delete(project_id)

    def tasks_of(self, project_id: int) -> list[Task]:
        return [task for task in self.tasks if task.project_id == project_id]

    def project_json(self, project: Project) -> dict[str, Any]:
        return {
            "id": project.id,
            "name": project.name,
            "owner": project.owner,
            "tasks_count": len(self.tasks_of(project.id)),
            "created_at": rails_time(project.created_at),
            "updated_at": rails_time(project.updated_at),
        }


def task_json(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "project_id": task.project_id,
        "title": task.title,
        "done": task.is_done,
        "due_on": task.due_on.isoformat() if task.due_on else None,
        "created_at": rails_time(task.created_at),
        "updated_at": rails_time(task.updated_at),
    }


def store_of(request: Request) -> LegacyStore:
    """The store of the app serving `request`."""
    store: LegacyStore = request.app.state.store
    return store


def _meta(request: Request) -> dict[str, object]:
    return {
        "request_id": request_id_of(request.scope),
        "generated_at": rails_time(_now()),
        # Like ActiveRecord's runtime in a Rails log: different on every answer (natural noise).
        "db_runtime_ms": round(random.uniform(0.2, 3.0), 3),
    }


def _now() -> datetime:
    return datetime.now(UTC)


def rails_error(status: int, error: str) -> RailsJSONResponse:
    """A JSON error response with the body Rails' exceptions app renders in production."""
    return RailsJSONResponse({"status": status, "error": error}, status_code=status)


def project_or_none(request: Request) -> Project | None:
    """The project named by the `id` path parameter, if it exists."""
    project_id: int = request.path_params["id"]
    return store_of(request).projects.get(project_id)


async def api_index(request: Request) -> Response:
    store = store_of(request)
    projects = [store.project_json(p) for p in sorted(store.projects.values(), key=lambda p: p.id)]
    return RailsJSONResponse({"projects": projects, "meta": _meta(request)})


async def api_show(request: Request) -> Response:
    project = project_or_none(request)
    if project is None:
        return rails_error(404, "Not Found")
    return RailsJSONResponse(
        {"project": store_of(request).project_json(project), "meta": _meta(request)}
    )


async def api_tasks(request: Request) -> Response:
    project = project_or_none(request)
    if project is None:
        return rails_error(404, "Not Found")
    tasks = store_of(request).tasks_of(project.id)
    meta = {"pending_count": sum(not task.is_done for task in tasks), **_meta(request)}
    return RailsJSONResponse({"tasks": [task_json(t) for t in tasks], "meta": meta})


async def _project_params(request: Request) -> dict[str, Any] | Response:
    try:
        payload = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return rails_error(400, "Bad Request")
    if not isinstance(payload, dict):
        return rails_error(400, "Bad Request")
    # wrap_parameters: {"project": {...}} and a bare {...} both reach params[:project].
    params = payload.get("project", payload)
    return params if isinstance(params, dict) else rails_error(400, "Bad Request")


def _guard_write(request: Request) -> Response | None:
    if not is_authentic(request, None):
        return rails_error(422, "Unprocessable Entity")
    if not request.session.get("user_email"):
        return RailsJSONResponse(
            {"error": "You need to sign in or sign up before continuing."}, status_code=401
        )
    return None


async def api_create(request: Request) -> Response:
    if (denied := _guard_write(request)) is not None:
        return denied
    params = await _project_params(request)
    if isinstance(params, Response):
        return params
    name = str(params.get("name") or "").strip()
    store = store_of(request)
    errors = {} if name else {"name": ["can't be blank"]}
    if len(store.projects) >= MAX_PROJECTS:
        errors["base"] = [f"the demo keeps at most {MAX_PROJECTS} projects"]
    if errors:
        return RailsJSONResponse({"errors": errors}, status_code=422)
    now = _now()
    owner = str(request.session["user_email"])
    project = Project(store.next_project_id, name, owner, now, now)
    store.put(project)
    store.next_project_id += 1
    location = f"{str(request.base_url).rstrip('/')}/api/projects/{project.id}"
    body = {"project": store.project_json(project)}
    return RailsJSONResponse(body, status_code=201, headers={"location": location})


async def api_update(request: Request) -> Response:
    if (denied := _guard_write(request)) is not None:
        return denied
    project = project_or_none(request)
    if project is None:
        return rails_error(404, "Not Found")
    params = await _project_params(request)
    if isinstance(params, Response):
        return params
    store = store_of(request)
    if "name" in params:
        name = str(params["name"] or "").strip()
        if not name:
            return RailsJSONResponse({"errors": {"name": ["can't be blank"]}}, status_code=422)
        project = replace(project, name=name, updated_at=_now())
        store.put(project)
    return RailsJSONResponse({"project": store.project_json(project)})


async def api_destroy(request: Request) -> Response:
    if (denied := _guard_write(request)) is not None:
        return denied
    project = project_or_none(request)
    if project is None:
        return rails_error(404, "Not Found")
    store = store_of(request)
    store.remove(project.id)
    # dependent: :destroy
    store.tasks = tuple(t for t in store.tasks if t.project_id != project.id)
    return Response(status_code=204)


def with_format(path: str, endpoint: Endpoint, methods: list[str]) -> list[BaseRoute]:
    """`path(.:format)`: the route with and without a `.json` suffix."""
    return [
        Route(path, endpoint, methods=methods),
        Route(f"{path}.json", endpoint, methods=methods),
    ]


def api_routes() -> list[BaseRoute]:
    """`resources :projects, only: ... do resources :tasks, only: :index end`, under /api."""
    return [
        *with_format("/api/projects", api_index, ["GET"]),
        *with_format("/api/projects", api_create, ["POST"]),
        *with_format("/api/projects/{id:int}/tasks", api_tasks, ["GET"]),
        *with_format("/api/projects/{id:int}", api_show, ["GET"]),
        *with_format("/api/projects/{id:int}", api_update, ["PATCH", "PUT"]),
        *with_format("/api/projects/{id:int}", api_destroy, ["DELETE"]),
    ]
