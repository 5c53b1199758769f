"""Time series of the admin API, from the store (so they need no Prometheus and every replica
answers the same): one route's answers, 5xx and latency quantiles per side and bucket, and the
share of all answers that came from new (the migration's burndown). A shadowed route's new
side is its shadow copies' answers, listed apart from the client's.

Rules: scope read; sync `def`s (store I/O runs in the thread pool). A window has one bucket
width (1 h: 1 min, 24 h: 15 min, 7 d: 2 h), the widths the store keeps; every bucket of the
window is listed, empty ones with zero answers and null quantiles, the last one (the current
bucket) with the seconds it has covered so far, so rates are not understated.
"""

from __future__ import annotations

import math
import time
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, Field

from strangler.admin.auth import AUTH_RESPONSES, require_read
from strangler.admin.problems import problem_openapi
from strangler.admin.store_access import store_dependency
from strangler.admin.view import GatewayView
from strangler.control.state import Store
from strangler.control.store import SeriesBucket
from strangler.rollout import LatencyHistogram


class Window(StrEnum):
    HOUR = "1h"
    DAY = "24h"
    WEEK = "7d"


# (window length, bucket width), in seconds.
WINDOWS: dict[Window, tuple[int, int]] = {
    Window.HOUR: (3600, 60),
    Window.DAY: (86400, 900),
    Window.WEEK: (7 * 86400, 7200),
}


class SideFigures(BaseModel):
    """One side's answers in one bucket."""

    requests: int
    errors: int = Field(description="5xx answers, the gateway's own 502/503/504 included.")
    p50_ms: float | None = Field(description="Median latency (ms); null without answers.")
    p99_ms: float | None = Field(description="99th percentile latency (ms); null without answers.")


class RouteBucket(BaseModel):
    start: int = Field(description="Unix seconds.")
    seconds: int = Field(description="Seconds covered: the width, less for the current bucket.")
    legacy: SideFigures
    new: SideFigures
    shadow: SideFigures = Field(
        description="The new backend's answers to shadow copies (stage shadow): what new would "
        "have answered; no client saw them. Timed from the client request's head; dropped "
        "copies are not in them."
    )


class RouteSeries(BaseModel):
    route: str
    window: Window
    bucket_s: int
    buckets: list[RouteBucket]


class ShareBucket(BaseModel):
    start: int = Field(description="Unix seconds.")
    seconds: int
    legacy: int = Field(description="Answers from legacy, every route summed.")
    new: int = Field(description="Answers from new, every route summed.")
    ratio: float | None = Field(description="new / (legacy + new); null without answers.")


class ProgressSeries(BaseModel):
    window: Window
    bucket_s: int
    buckets: list[ShareBucket]


def _starts(window: Window, now: float) -> tuple[list[int], int]:
    length_s, width_s = WINDOWS[window]
    last = int(now // width_s) * width_s
    count = length_s // width_s
    return [last - width_s * (count - 1 - i) for i in range(count)], width_s


def _covered(start: int, width_s: int, now: float) -> int:
    return max(1, min(width_s, math.ceil(now - start)))


def _figures(bucket: SeriesBucket | None) -> SideFigures:
    if bucket is None:
        return SideFigures(requests=0, errors=0, p50_ms=None, p99_ms=None)
    histogram = LatencyHistogram.from_json(bucket.latency)
    p50, p99 = histogram.quantile(0.5), histogram.quantile(0.99)
    return SideFigures(
        requests=bucket.requests,
        errors=bucket.errors,
        p50_ms=None if p50 is None else round(p50 * 1000, 3),
        p99_ms=None if p99 is None else round(p99 * 1000, 3),
    )


def route_series(store: Store, route: str, window: Window, now: float) -> RouteSeries:
    starts, width_s = _starts(window, now)
    found = {(b.start, b.side): b for b in store.route_series(route, starts[0], now, width_s)}
    return RouteSeries(
        route=route,
        window=window,
        bucket_s=width_s,
        buckets=[
            RouteBucket(
                start=start,
                seconds=_covered(start, width_s, now),
                legacy=_figures(found.get((start, "legacy"))),
                new=_figures(found.get((start, "new"))),
                shadow=_figures(found.get((start, "shadow"))),
            )
            for start in starts
        ],
    )


def progress_series(store: Store, window: Window, now: float) -> ProgressSeries:
    starts, width_s = _starts(window, now)
    found = {
        (b.start, b.side): b.requests for b in store.route_series(None, starts[0], now, width_s)
    }
    buckets = []
    for start in starts:
        legacy, new = found.get((start, "legacy"), 0), found.get((start, "new"), 0)
        total = legacy + new
        buckets.append(
            ShareBucket(
                start=start,
                seconds=_covered(start, width_s, now),
                legacy=legacy,
                new=new,
                ratio=round(new / total, 6) if total else None,
            )
        )
    return ProgressSeries(window=window, bucket_s=width_s, buckets=buckets)


WindowQuery = Annotated[
    Window, Query(description="1h (1 min buckets), 24h (15 min buckets) or 7d (2 h buckets).")
]


def series_router(gateway: GatewayView) -> APIRouter:
    router = APIRouter(
        prefix="/api/v1",
        dependencies=[Depends(require_read)],
        responses=AUTH_RESPONSES,
    )

    @router.get(
        "/routes/{name}/series",
        tags=["routes"],
        summary="One route's answers, 5xx, p50 and p99 per side over a window",
        responses={404: problem_openapi("No route by that name")},
    )
    def get_route_series(
        name: str,
        store: Annotated[Store, Depends(store_dependency)],
        window: WindowQuery = Window.HOUR,
    ) -> RouteSeries:
        if name not in {route.name for route in gateway.snapshot.config.routes}:
            raise HTTPException(404, f"no route named {name!r}")
        return route_series(store, name, window, time.time())

    @router.get(
        "/progress/series",
        tags=["progress"],
        summary="The share of all answers that came from new, per bucket over a window",
    )
    def get_progress_series(
        store: Annotated[Store, Depends(store_dependency)],
        window: WindowQuery = Window.DAY,
    ) -> ProgressSeries:
        return progress_series(store, window, time.time())

    return router
