"""The data parity resource of the admin API: each table's last `data diff` run.

Rules: scope read; a sync `def` (store I/O runs in the thread pool). The same entries as the
`data` list of GET /api/v1/progress.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from strangler.admin.auth import AUTH_RESPONSES, require_read
from strangler.admin.store_access import store_dependency
from strangler.admin.view import GatewayView
from strangler.control.state import Store
from strangler.data.status import data_report

_DESCRIPTION = """\
`tables` has one entry per table under `data.tables` (then any table the store has runs of that
the config no longer lists): its newest run in `last_run` (`finished_at`, `seconds`,
`rows_legacy`, `rows_new`, `missing_in_new`, `missing_in_legacy`, `different`, `complete`; null
before any run), the time of its newest complete run in `last_complete_at`, `strangler data
watch`'s state in `watch` (`checked`, `lag_s`, `last_checked_at`, `open_drift`, `example_key`,
`untracked`, and in `drift` the oldest 10 open drift records: `key`, `kind`, `columns` with
both values (redacted) as `{column: [legacy, new]}`, `first_seen`, `last_checked`,
`resolved_at`; null before its first check), and in `blocks_new` why the data gate keeps its
routes from moving to stage new (null when it does not).
"""


def data_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(prefix="/api/v1/data", tags=["data"], responses=AUTH_RESPONSES)

    @router.get(
        "",
        dependencies=[Depends(require_read)],
        summary="Data parity: each table's last diff and whether it blocks a move to new",
        description=_DESCRIPTION,
    )
    def data(store: Annotated[Store, Depends(store_dependency)]) -> dict[str, Any]:
        config = gateway.snapshot.config
        return {
            "tables": data_report(
                config, store.data_statuses(), now=time.time(), watched=store.watch_statuses()
            )
        }

    return router
