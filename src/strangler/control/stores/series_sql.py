"""The route series (strangler.control.store.SeriesBucket) in SQLAlchemy Core, shared by the
SQL adapters through `SqlShadowStore`.

Rules:
- One row per (route, bucket width, slot, side) holds the bucket's answers, 5xx and whole
  latency histogram. A flush adds to it: counts with `+`, the histogram's bucket counts with
  the adapter's `_json_add` (SQL can't add two JSON objects with an operator; both dialects can
  with their json_each functions, inside the same upsert). Rows per key stay one, so a 7 d read
  of a route is 84 buckets x 2 sides, whatever the number of workers and flushes.
  Rejected: a row per worker flush (a 7 d read would sum ~100,000 histograms), and a row per
  histogram bucket (~200 rows per route, side and minute written at each flush).
- Each width is written at every flush (three upserts per route, side and minute instead of
  one), in sorted key order like every other flush, so two flushes on PostgreSQL take their
  row locks in the same order.
- Pruned with the traffic counts: a width is kept as long as its longest window needs it, and
  never past the store's retention.
"""

from __future__ import annotations

import json
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence

from sqlalchemy import ColumnElement, Connection, delete, func, select

from strangler.control.store import SERIES_WIDTHS_S, SeriesBucket, TrafficDelta
from strangler.control.stores.schema import series_t
from strangler.control.stores.sql_work import SqlWork
from strangler.rollout import LatencyHistogram

# How long each width is kept (capped by the retention): its window, plus a margin for clocks.
SERIES_KEEP_S = {60: 3 * 3600.0, 900: 2 * 86400.0, 7200: 8 * 86400.0}


class SqlRouteSeries(SqlWork):
    """Route series statements; the adapter supplies transactions, the upsert and `_json_add`."""

    @abstractmethod
    def _json_add(self, table: str, column: str) -> ColumnElement[str]:
        """In an upsert's SET: the JSON object `table.column` with the counts of the row being
        inserted (`excluded.column`) added key by key, as text."""

    def _apply_series(self, conn: Connection, traffic: Sequence[TrafficDelta]) -> None:
        rows: dict[tuple[str, int, int, str], tuple[list[int], LatencyHistogram]] = {}
        for delta in traffic:
            at = delta.minute * 60
            for side, requests, errors, latency in (
                ("legacy", delta.legacy, delta.legacy_errors, delta.legacy_latency),
                ("new", delta.new, delta.new_errors, delta.new_latency),
                ("shadow", delta.shadow, delta.shadow_errors, delta.shadow_latency),
            ):
                if not requests:
                    continue
                histogram = LatencyHistogram.from_json(latency)
                for width in SERIES_WIDTHS_S:
                    key = (delta.route, width, at // width, side)
                    row = rows.get(key)
                    if row is None:
                        row = rows[key] = ([0, 0], LatencyHistogram())
                    row[0][0] += requests
                    row[0][1] += errors
                    row[1].merge(histogram)
        if not rows:
            return
        stmt = self._upsert(series_t)
        added = stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[
                    series_t.c.route,
                    series_t.c.width_s,
                    series_t.c.slot,
                    series_t.c.side,
                ],
                set_={
                    "requests": series_t.c.requests + added.requests,
                    "errors": series_t.c.errors + added.errors,
                    "latency": self._json_add(series_t.name, "latency"),
                },
            ),
            [
                {
                    "route": route,
                    "width_s": width,
                    "slot": slot,
                    "side": side,
                    "requests": counts[0],
                    "errors": counts[1],
                    "latency": json.dumps(histogram.to_json(), separators=(",", ":")),
                }
                for (route, width, slot, side), (counts, histogram) in sorted(rows.items())
            ],
        )

    def route_series(
        self, route: str | None, since: float, until: float, width_s: int
    ) -> list[SeriesBucket]:
        if width_s not in SERIES_WIDTHS_S:
            raise ValueError(f"width_s must be one of {SERIES_WIDTHS_S}, not {width_s}")
        c = series_t.c
        in_range = (
            c.width_s == width_s,
            c.slot >= math.ceil(since / width_s),
            c.slot < math.ceil(until / width_s),
        )
        if route is None:
            query = (
                select(c.slot, c.side, func.sum(c.requests), func.sum(c.errors))
                .where(*in_range)
                .group_by(c.slot, c.side)
                .order_by(c.slot, c.side)
            )
            rows = self._read(lambda conn: conn.execute(query).all())
            return [
                SeriesBucket(int(slot) * width_s, side, int(requests), int(errors), {})
                for slot, side, requests, errors in rows
            ]
        one = (
            select(c.slot, c.side, c.requests, c.errors, c.latency)
            .where(c.route == route, *in_range)
            .order_by(c.slot, c.side)
        )
        found = self._read(lambda conn: conn.execute(one).all())
        return [
            SeriesBucket(int(slot) * width_s, side, int(requests), int(errors), _counts(latency))
            for slot, side, requests, errors, latency in found
        ]

    def _prune_series(self, conn: Connection, now: float, max_age_s: float) -> None:
        for width, keep_s in SERIES_KEEP_S.items():
            cutoff = int((now - min(keep_s, max_age_s)) // width)
            conn.execute(
                delete(series_t).where(series_t.c.width_s == width, series_t.c.slot < cutoff)
            )


def _counts(text: str) -> Mapping[str, int]:
    value = json.loads(text)
    return {str(k): int(n) for k, n in value.items()} if isinstance(value, dict) else {}
