"""The progress resource of the admin API: where the migration stands, the same document
`strangler progress --json` prints (the CLI's `--admin` reads it here).

Rules: scope read; a sync `def` (store I/O runs in the thread pool). The stages are those of the
snapshot the gateway routes with, overrides included.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from strangler.admin.auth import AUTH_RESPONSES, require_read
from strangler.admin.store_access import store_dependency
from strangler.admin.view import GatewayView
from strangler.cli.progress import LEGACY_QUIET_DAYS, progress_report
from strangler.control.state import Store

_DESCRIPTION = """\
`routes_by_stage` counts routes per stage; `share_on_new` is the share of answers that came from
the new backend over the last `hour` and `day` (`new`, `total`, `ratio`, null without traffic);
`unmatched` counts the answers to requests no route matched. Each of `routes` has its stage,
its answers per side in the `last_hour` and `last_day` (`legacy`, `new`, and their 5xx in
`legacy_errors`, `new_errors`; null without traffic), its shadow `parity` with its 95 % lower
bound over `compared` comparisons, and `next_step`: what stands between it and its next stage.
"""


def progress_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(prefix="/api/v1/progress", tags=["progress"], responses=AUTH_RESPONSES)

    @router.get(
        "",
        dependencies=[Depends(require_read)],
        summary="Where the migration stands: routes by stage, share on new, next steps",
        description=_DESCRIPTION,
    )
    def progress(
        store: Annotated[Store, Depends(store_dependency)],
        days: Annotated[
            int,
            Query(ge=1, le=366, description="How long legacy must have answered nothing."),
        ] = LEGACY_QUIET_DAYS,
    ) -> dict[str, Any]:
        return progress_report(gateway.snapshot, store, now=time.time(), legacy_days=days)

    return router
