"""The SloStore port (strangler.control.state) in SQLAlchemy Core, shared by the SQL adapters
through `SqlShadowStore`.

Counts are upserts that add, so every worker's flushes merge exactly; a flush writes its rows in
sorted order (SLO, then time), so two flushes on PostgreSQL take their row locks in the same
order and never deadlock each other.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Table, delete, func, select

from strangler.control.state import SloDelta, SloSample
from strangler.control.stores.schema import slo_minutes_t, slo_seconds_t, slo_states_t
from strangler.control.stores.sql_work import SqlWork

if TYPE_CHECKING:
    pass


class SqlSloState(SqlWork):
    """SloStore statements; the adapter supplies transactions and the upsert spelling."""

    def add_slo_counts(self, deltas: Sequence[SloDelta]) -> None:
        if not deltas:
            return
        seconds: dict[tuple[str, int], list[int]] = {}
        minutes: dict[tuple[str, int], list[int]] = {}
        for delta in deltas:
            for sums, at in ((seconds, delta.second), (minutes, delta.second // 60)):
                row = sums.setdefault((delta.slo, at), [0, 0])
                row[0] += delta.good
                row[1] += delta.bad

        def work(conn: Connection) -> None:
            self._add(conn, slo_seconds_t, "second", seconds)
            self._add(conn, slo_minutes_t, "minute", minutes)

        self._write(work)

    def _add(
        self, conn: Connection, table: Table, column: str, sums: dict[tuple[str, int], list[int]]
    ) -> None:
        stmt = self._upsert(table)
        added = stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[table.c.slo, table.c[column]],
                set_={"good": table.c.good + added.good, "bad": table.c.bad + added.bad},
            ),
            [
                {"slo": slo, column: at, "good": good, "bad": bad}
                for (slo, at), (good, bad) in sorted(sums.items())
            ],
        )

    def slo_samples(self, slo: str, since: float, until: float, bucket_s: int) -> list[SloSample]:
        if bucket_s < 1 or (60 % bucket_s and bucket_s % 60):
            raise ValueError(f"bucket_s must divide 60 or be a multiple of it, not {bucket_s}")
        if bucket_s < 60:
            table, column, unit, first, end = (
                slo_seconds_t, "second", 1, _ceil(since, 1), _ceil(until, 1),
            )  # fmt: skip
        else:
            table, column, unit, first, end = (
                slo_minutes_t, "minute", 60, _ceil(since, 60), _ceil(until, 60),
            )  # fmt: skip
        per_bucket = bucket_s // unit
        at = table.c[column]
        bucket = (at - at % per_bucket) if per_bucket > 1 else at
        query = (
            select(bucket.label("bucket"), func.sum(table.c.good), func.sum(table.c.bad))
            .where(table.c.slo == slo, at >= first, at < end)
            .group_by(bucket)
            .order_by(bucket)
        )
        rows = self._read(lambda conn: conn.execute(query).all())
        return [SloSample(float(b * unit), int(good), int(bad)) for b, good, bad in rows]

    def prune_slo_counts(self, slo: str, before: float, fine_before: float) -> int:
        def work(conn: Connection) -> int:
            minutes = delete(slo_minutes_t).where(
                slo_minutes_t.c.slo == slo, slo_minutes_t.c.minute < int(before // 60)
            )
            seconds = delete(slo_seconds_t).where(
                slo_seconds_t.c.slo == slo, slo_seconds_t.c.second < int(fine_before)
            )
            return int(conn.execute(minutes).rowcount) + int(conn.execute(seconds).rowcount)

        return self._write(work)

    def put_slo_state(self, slo: str, state: Mapping[str, object], now: float) -> None:
        text = json.dumps(state, sort_keys=True, separators=(",", ":"))

        def work(conn: Connection) -> None:
            stmt = self._upsert(slo_states_t)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[slo_states_t.c.slo],
                    set_={"evaluated_at": stmt.excluded.evaluated_at, "state": stmt.excluded.state},
                ),
                [{"slo": slo, "evaluated_at": now, "state": text}],
            )

        self._write(work)

    def slo_states(self) -> dict[str, dict[str, object]]:
        def work(conn: Connection) -> dict[str, dict[str, object]]:
            rows = conn.execute(select(slo_states_t.c.slo, slo_states_t.c.state)).all()
            return {slo: json.loads(state) for slo, state in rows}

        return self._read(work)


def _ceil(at: float, unit: int) -> int:
    """The first second or minute (`unit` 1 or 60) that starts at or after `at`: a bucket
    counts when it starts inside the range, as the evaluator's windows define it."""
    return math.ceil(at / unit)
