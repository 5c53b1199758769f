"""The SLOs resource of the admin API: each SLO's budget and alerts, and the alerts that are
firing across them, the same documents `strangler slo status --json` prints (the CLI's `--admin`
reads them here).

Rules:
- Scope read; every operation is a sync `def` (store I/O runs in the thread pool).
- The SLOs are those of the config in force (the snapshot the gateway routes with); each is the
  monitor's stored evaluation when it is fresh, else one computed now (control/slo_status.py).
- The answers are typed models that forbid extra fields: a field `SloView.to_json` gains
  without its model here is a 500 the schemathesis test finds, not a field the API silently
  drops while the CLI's local `--json` prints it.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from strangler.admin.auth import AUTH_RESPONSES, require_read
from strangler.admin.problems import problem_openapi
from strangler.admin.store_access import store_dependency
from strangler.admin.view import GatewayView
from strangler.control.slo_status import SloView, alert_rows, slo_views, unknown_slo
from strangler.control.state import Store

Severity = Literal["page", "ticket"]
AlertStateName = Literal["inactive", "firing", "resolved"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WindowOut(_Out):
    """Counts over one window, [start, end) in epoch seconds."""

    start: float
    end: float
    requests: int
    bad: int
    burn_rate: float = Field(description="Error ratio over the budget share; 1 spends it exactly.")


class BurnOut(_Out):
    """An alert's two windows, measured at one evaluation."""

    long: WindowOut
    short: WindowOut


class AlertStatusOut(_Out):
    severity: Severity
    burn: float = Field(description="The burn rate at which the alert fires.")
    long_s: float
    short_s: float
    burn_long: float = Field(description="The burn rate over the long window now.")
    burn_short: float = Field(description="The burn rate over the short window now.")
    now: BurnOut
    requests: int = Field(description="Requests in the long window now.")
    bad: int = Field(description="Bad requests in the long window now.")
    state: AlertStateName
    low_traffic: bool = Field(description="Fewer than `min_requests` in the long window: quiet.")
    fired_at: float | None
    fired_with: BurnOut | None
    resolved_at: float | None
    resolved_with: BurnOut | None


class SloOut(_Out):
    name: str
    objective: float = Field(description="Good answers, in %, over the window.")
    window_s: float
    evaluated_at: float
    good: int
    bad: int
    budget_left_pct: float = Field(description="Not clamped: -50 is 1.5 times the budget spent.")
    budget_exhausted: bool
    outage_minutes_left: float | None = Field(
        description="How long a full outage could last before the budget is spent, at the "
        "last hour's request rate; null without requests in that hour."
    )
    alerts: list[AlertStatusOut]
    routes: list[str]
    window_days: float
    latency_ms: float | None
    side: Literal["all", "new", "legacy"]
    min_requests: int
    on_page: Literal["none", "pause", "rollback"]
    budget_gate: float | None
    source: Literal["monitor", "computed"] = Field(
        description="`monitor`: the gateway's evaluation, with its alert history; `computed`: "
        "no fresh one, evaluated now from the stored counts, alerts without history."
    )
    age_s: float = Field(description="Seconds since the evaluation.")


class SloList(_Out):
    slos: list[SloOut]


class AlertRowOut(_Out):
    slo: str
    severity: Severity
    burn: float
    long_s: float
    short_s: float
    state: AlertStateName
    burn_long: float
    burn_short: float
    fired_at: float | None
    fired_with: BurnOut | None
    resolved_at: float | None
    low_traffic: bool


class AlertList(_Out):
    alerts: list[AlertRowOut]


_SLO_DESCRIPTION = """\
Each SLO's `good` and `bad` answers over its window, the error budget left
(`budget_left_pct`, and `outage_minutes_left`: minutes of full outage it still allows), and per
alert the burn rates over its long and short windows now and its state (`inactive`, `firing`,
`resolved`, with when and with which numbers it last fired and resolved). `source` says whether
the gateway's SLO monitor evaluated it (`monitor`) or it was computed for this answer from the
stored counts (`computed`: no gateway evaluated it recently, so alerts have no history).
"""


def _out(view: SloView) -> SloOut:
    return SloOut.model_validate(view.to_json())


def slos_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["slos"], responses=AUTH_RESPONSES)
    read = [Depends(require_read)]

    def views(store: Store) -> list[SloView]:
        return slo_views(store, gateway.snapshot.config, time.time())

    @router.get(
        "/slos",
        dependencies=read,
        summary="Every SLO: objective, counts, error budget left, burn rates and alert states",
        description=_SLO_DESCRIPTION + "\nEmpty when the config has no `slos:`.",
    )
    def list_slos(store: Annotated[Store, Depends(store_dependency)]) -> SloList:
        return SloList(slos=[_out(view) for view in views(store)])

    @router.get(
        "/slos/{name}",
        dependencies=read,
        summary="One SLO: objective, counts, error budget left, burn rates and alert states",
        description=_SLO_DESCRIPTION,
        responses={404: problem_openapi("No SLO by that name in the config in force")},
    )
    def get_slo(name: str, store: Annotated[Store, Depends(store_dependency)]) -> SloOut:
        config = gateway.snapshot.config
        if not any(slo.name == name for slo in config.slos):
            raise HTTPException(404, unknown_slo(name, [slo.name for slo in config.slos]))
        (view,) = [view for view in views(store) if view.slo.name == name]
        return _out(view)

    @router.get(
        "/alerts",
        dependencies=read,
        summary="The SLO alerts that are firing (or every alert), firing first, pages first",
        description="One row per alert with its SLO's name, its threshold and windows, the "
        "burn rates over them now and its state. Firing alerts come first, pages before "
        "tickets; then the config's order.",
    )
    def list_alerts(
        store: Annotated[Store, Depends(store_dependency)],
        include_all: Annotated[
            bool,
            Query(alias="all", description="Every alert of every SLO, not only those firing."),
        ] = False,
    ) -> AlertList:
        rows = alert_rows(views(store), include_all=include_all)
        return AlertList(alerts=[AlertRowOut.model_validate(row) for row in rows])

    return router
