"""The DataWatchStore port (strangler.control.data_watch) in SQLAlchemy Core, shared by the SQL
adapters through `SqlShadowStore`.

A save is one transaction: drift records, the tables' counters, then the stream's position, so
the position never runs ahead of the outcomes it stands for.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, delete, func, select, update

from strangler.control.data_watch import (
    DRIFT_SAMPLES,
    KEEP_DRIFT_PER_TABLE,
    Drift,
    DriftUpdate,
    TableWatchDelta,
    WatchPosition,
    WatchStatus,
)
from strangler.control.stores.schema import drift_t, watch_positions_t, watch_tables_t
from strangler.control.stores.sql_work import SqlWork


class SqlDataWatch(SqlWork):
    """DataWatchStore statements; the adapter supplies the transactions and the upsert."""

    def watch_position(self, stream: str) -> WatchPosition | None:
        t = watch_positions_t
        row = self._read(lambda conn: conn.execute(select(t).where(t.c.stream == stream)).first())
        return None if row is None else WatchPosition(row.stream, row.position, row.updated_at)

    def watch_positions(self) -> list[WatchPosition]:
        t = watch_positions_t
        rows = self._read(lambda conn: conn.execute(select(t).order_by(t.c.stream)).all())
        return [WatchPosition(row.stream, row.position, row.updated_at) for row in rows]

    def save_watch(
        self,
        stream: str,
        position: str,
        drift: list[DriftUpdate],
        tables: list[TableWatchDelta],
        now: float,
    ) -> None:
        def work(conn: Connection) -> None:
            untracked: dict[str, tuple[int, float]] = {}
            for change in drift:
                if not self._apply_drift(conn, change):
                    count, _ = untracked.get(change.table, (0, 0.0))
                    untracked[change.table] = (count + 1, change.checked_at)
            names = sorted({delta.table for delta in tables} | set(untracked))
            deltas = {delta.table: delta for delta in tables}
            for name in names:
                self._add_counters(conn, name, deltas.get(name), untracked.get(name))
            stmt = self._upsert(watch_positions_t)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[watch_positions_t.c.stream],
                    set_={
                        "position": stmt.excluded.position,
                        "updated_at": stmt.excluded.updated_at,
                    },
                ),
                [{"stream": stream, "position": position, "updated_at": now}],
            )

        self._write(work)

    def _apply_drift(self, conn: Connection, change: DriftUpdate) -> bool:
        """Apply one update; False when it is new drift past the table's cap (not kept)."""
        t = drift_t
        where = (t.c.table_name == change.table, t.c.drift_key == change.key)
        row = conn.execute(select(t.c.resolved_at).where(*where)).first()
        if change.kind is None:
            if row is not None and row.resolved_at is None:
                conn.execute(
                    update(t)
                    .where(*where)
                    .values(resolved_at=change.checked_at, last_checked=change.checked_at)
                )
            return True
        columns = json.dumps(change.columns, ensure_ascii=False, sort_keys=True)
        if row is not None:
            values: dict[str, Any] = {
                "kind": change.kind,
                "columns": columns,
                "last_checked": change.checked_at,
            }
            if row.resolved_at is not None:  # drifted again: a new episode
                values.update(first_seen=change.checked_at, resolved_at=None)
            conn.execute(update(t).where(*where).values(**values))
            return True
        kept = conn.execute(
            select(func.count()).select_from(t).where(t.c.table_name == change.table)
        ).scalar_one()
        if kept >= KEEP_DRIFT_PER_TABLE:
            oldest = conn.execute(
                select(t.c.drift_key)
                .where(t.c.table_name == change.table, t.c.resolved_at.is_not(None))
                .order_by(t.c.resolved_at, t.c.drift_key)
                .limit(1)
            ).first()
            if oldest is None:
                return False
            conn.execute(
                delete(t).where(t.c.table_name == change.table, t.c.drift_key == oldest.drift_key)
            )
        conn.execute(
            t.insert().values(
                table_name=change.table,
                drift_key=change.key,
                kind=change.kind,
                columns=columns,
                first_seen=change.checked_at,
                last_checked=change.checked_at,
                resolved_at=None,
            )
        )
        return True

    def _add_counters(
        self,
        conn: Connection,
        name: str,
        delta: TableWatchDelta | None,
        untracked: tuple[int, float] | None,
    ) -> None:
        t = watch_tables_t
        row = conn.execute(select(t).where(t.c.table_name == name)).first()
        if row is None:
            conn.execute(
                t.insert().values(
                    table_name=name, checked=0, lag_s=None, last_checked_at=None, untracked=0,
                    untracked_at=None,
                )
            )  # fmt: skip
        values: dict[str, Any] = {}
        if delta is not None:
            values["checked"] = t.c.checked + delta.checked
            if delta.lag_s is not None:
                values.update(lag_s=delta.lag_s, last_checked_at=delta.checked_at)
        if untracked is not None:
            values.update(untracked=t.c.untracked + untracked[0], untracked_at=untracked[1])
        if values:
            conn.execute(update(t).where(t.c.table_name == name).values(**values))

    def forget_watch(self, stream: str) -> None:
        t = watch_positions_t
        self._write(lambda conn: conn.execute(delete(t).where(t.c.stream == stream)))

    def watch_statuses(self) -> dict[str, WatchStatus]:
        def work(conn: Connection) -> dict[str, WatchStatus]:
            tables = {row.table_name: row for row in conn.execute(select(watch_tables_t))}
            d = drift_t
            open_rows = conn.execute(
                select(d)
                .where(d.c.resolved_at.is_(None))
                .order_by(d.c.table_name, d.c.first_seen, d.c.drift_key)
            ).all()
            opened: dict[str, list[str]] = {}
            samples: dict[str, list[Drift]] = {}
            for row in open_rows:
                keys = opened.setdefault(row.table_name, [])
                keys.append(row.drift_key)
                if len(keys) <= DRIFT_SAMPLES:
                    samples.setdefault(row.table_name, []).append(_drift(row))
            statuses = {}
            for name in sorted(tables.keys() | opened.keys()):
                counters = tables.get(name)
                keys = opened.get(name, [])
                statuses[name] = WatchStatus(
                    table=name,
                    checked=int(counters.checked) if counters is not None else 0,
                    lag_s=counters.lag_s if counters is not None else None,
                    last_checked_at=counters.last_checked_at if counters is not None else None,
                    open_drift=len(keys),
                    example_key=keys[0] if keys else None,
                    untracked=int(counters.untracked) if counters is not None else 0,
                    untracked_at=counters.untracked_at if counters is not None else None,
                    samples=tuple(samples.get(name, [])),
                )
            return statuses

        return self._read(work)

    def drift(
        self, table: str | None = None, *, is_open: bool = True, limit: int = 100
    ) -> list[Drift]:
        d = drift_t
        query = select(d).order_by(d.c.first_seen, d.c.table_name, d.c.drift_key).limit(limit)
        if table is not None:
            query = query.where(d.c.table_name == table)
        if is_open:
            query = query.where(d.c.resolved_at.is_(None))
        rows = self._read(lambda conn: conn.execute(query).all())
        return [_drift(row) for row in rows]


def _drift(row: Any) -> Drift:
    return Drift(
        table=row.table_name,
        key=row.drift_key,
        kind=row.kind,
        columns=json.loads(row.columns),
        first_seen=row.first_seen,
        last_checked=row.last_checked,
        resolved_at=row.resolved_at,
    )
