"""The routes resource of the admin API: state and live figures, stage changes, verdicts and
the audit log.

Rules:
- Every change goes through ControlService, like the CLI and the analyzer: one place validates
  and audits, through one table (control.changes.CHANGES, the CLI's too). The actor is the
  authenticated principal (`token:ci`, `user:ana`).
- A change needs a reason; a refused change is a problem+json with the service's status (404
  unknown route, 409 wrong stage, closed evidence gate or no override to reset, 400 bad value).
- Store reads and writes block: every operation is a sync `def`, run in the thread pool.
- The YAML in force is `gateway.base` (the file as loaded, without overrides).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from strangler.admin.auth import AUTH_RESPONSES, Principal, require_read, require_write
from strangler.admin.problems import problem_openapi, problem_response
from strangler.admin.store_access import store_dependency
from strangler.admin.view import GatewayView
from strangler.config import FaultsConfig
from strangler.control.changes import CHANGES, ChangeRequest
from strangler.control.reports import rollout_report, status_report
from strangler.control.service import ChangeRefused, ControlService
from strangler.control.state import Change, Store

Reason = Annotated[str, Field(min_length=1, max_length=2000, description="Goes to the audit log.")]


class ChangeBody(BaseModel):
    reason: Reason


class PromoteBody(BaseModel):
    reason: Reason
    weight: Annotated[float, Field(ge=0.01, le=100)] | None = Field(
        default=None, description="Canary weight (%) to move to; default: the plan's next step."
    )
    force: bool = Field(
        default=False,
        description=(
            "Promote although the evidence gate or an SLO's budget gate is closed (audited)."
        ),
    )


class RollbackBody(BaseModel):
    reason: Reason
    force: bool = Field(
        default=False,
        description="Roll back a retired route too (legacy must still have its code; audited).",
    )


class DrillBody(BaseModel):
    reason: Reason
    fault: FaultsConfig | None = Field(
        default=None, description="The fault, as the YAML's `faults:` spells it."
    )
    for_s: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="Seconds until the drill ends by itself (with `fault`)."
    )
    clear: bool = Field(default=False, description="End the drill in force now.")


class WeightBody(BaseModel):
    reason: Reason
    weight: Annotated[float, Field(ge=0, le=100)]


class ChangeOut(BaseModel):
    """One audit entry: the change just made, or one from the log."""

    version: int
    at: float
    actor: str
    action: str
    unit: str
    before: dict[str, Any]
    after: dict[str, Any]
    reason: str
    evidence: dict[str, Any] | None


def _out(change: Change) -> ChangeOut:
    return ChangeOut.model_validate(change.to_json())


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **AUTH_RESPONSES,
    400: problem_openapi("The value is out of range (named in the detail)"),
    404: problem_openapi("No route or rollout group by that name"),
    409: problem_openapi("The change does not apply: wrong stage, or the evidence gate is closed"),
}


async def _refused_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ChangeRefused)  # registered for it only
    return problem_response(exc.status, str(exc))


def install_change_refused_handler(app: FastAPI) -> None:
    """A change the service refuses (or an unknown route) answers with its status as a
    problem: 404, 409 or 400, whichever operation raised it."""
    app.add_exception_handler(ChangeRefused, _refused_problem)


def rollouts_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["routes"], responses=AUTH_RESPONSES)
    read = [Depends(require_read)]

    def service(store: Store) -> ControlService:
        return ControlService(store, gateway.base)

    def changed(
        action: str, name: str, request: ChangeRequest, principal: Principal, store: Store
    ) -> ChangeOut:
        return _out(CHANGES[action](service(store), name, request, actor=principal.name))

    @router.get("/routes", dependencies=read, summary="Every route's stage, weight and figures")
    def list_routes(store: Annotated[Store, Depends(store_dependency)]) -> dict[str, Any]:
        report = status_report(store, gateway.base)
        # Live, from the running gateway: its balanced backends' servers and their health.
        report["backends"] = gateway.backend_health()
        return report

    @router.get(
        "/routes/{name}",
        dependencies=read,
        summary="One route (or rollout group): plan, gate, verdicts and audit",
        responses={404: problem_openapi("No route or rollout group by that name")},
    )
    def get_route(name: str, store: Annotated[Store, Depends(store_dependency)]) -> dict[str, Any]:
        return rollout_report(store, gateway.base, name)

    @router.post("/routes/{name}/promote", responses=_CHANGE_RESPONSES, summary="One step on")
    def promote(
        name: str,
        body: PromoteBody,
        principal: Annotated[Principal, Depends(require_write)],
        store: Annotated[Store, Depends(store_dependency)],
    ) -> ChangeOut:
        request = ChangeRequest(body.reason, weight=body.weight, force=body.force)
        return changed("promote", name, request, principal, store)

    def simple(action: str, summary: str, description: str = "") -> None:
        @router.post(
            f"/routes/{{name}}/{action}",
            responses=_CHANGE_RESPONSES,
            summary=summary,
            description=description,
        )
        def change(
            name: str,
            body: ChangeBody,
            principal: Annotated[Principal, Depends(require_write)],
            store: Annotated[Store, Depends(store_dependency)],
        ) -> ChangeOut:
            return changed(action, name, ChangeRequest(body.reason), principal, store)

        change.__name__ = action

    @router.post(
        "/routes/{name}/rollback",
        responses=_CHANGE_RESPONSES,
        summary="Everyone back on legacy, at once",
        description="409 for a retired route unless `force`.",
    )
    def rollback(
        name: str,
        body: RollbackBody,
        principal: Annotated[Principal, Depends(require_write)],
        store: Annotated[Store, Depends(store_dependency)],
    ) -> ChangeOut:
        return changed(
            "rollback", name, ChangeRequest(body.reason, force=body.force), principal, store
        )

    simple("pause", "Stop the analyzer moving this rollout")
    simple("resume", "Let the analyzer move this rollout again")
    simple(
        "reset",
        "Drop the runtime override: the YAML's stage and weight stand again",
        "The audit entry keeps the dropped override (`before`, and who set it in "
        "`evidence.dropped`); `after` is the YAML's state. 409 when the route has no runtime "
        "override. A unit the YAML no longer has can be reset by its name.",
    )

    @router.post(
        "/routes/{name}/drill",
        responses=_CHANGE_RESPONSES,
        summary="Inject faults into a route's answers for a while (a drill), or end one",
        description="Audited; every worker applies it within a second and ignores it once "
        "`for_s` has passed. 409 to clear a unit without a drill in force.",
    )
    def drill(
        name: str,
        body: DrillBody,
        principal: Annotated[Principal, Depends(require_write)],
        store: Annotated[Store, Depends(store_dependency)],
    ) -> ChangeOut:
        request = ChangeRequest(body.reason, fault=body.fault, for_s=body.for_s, clear=body.clear)
        return changed("drill", name, request, principal, store)

    @router.put("/routes/{name}/weight", responses=_CHANGE_RESPONSES, summary="Set the weight")
    def set_weight(
        name: str,
        body: WeightBody,
        principal: Annotated[Principal, Depends(require_write)],
        store: Annotated[Store, Depends(store_dependency)],
    ) -> ChangeOut:
        request = ChangeRequest(body.reason, weight=body.weight)
        return changed("weight", name, request, principal, store)

    @router.get(
        "/audit",
        dependencies=read,
        summary="Changes, newest first",
        responses={404: problem_openapi("No route, rollout group or audited unit by that name")},
    )
    def audit(
        store: Annotated[Store, Depends(store_dependency)],
        unit: Annotated[
            str | None,
            Query(max_length=200, description="A rollout unit, or a route (its unit's changes)."),
        ] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> list[ChangeOut]:
        return [_out(change) for change in service(store).audit(unit, limit=limit)]

    return router
