"""The DataStore port (strangler.control.data_runs) in SQLAlchemy Core, shared by the SQL
adapters through `SqlShadowStore`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, func, insert, select

from strangler.control.data_runs import KEEP_RUNS_PER_TABLE, DataRun, DataStatus
from strangler.control.stores.schema import data_runs_t
from strangler.control.stores.sql_work import SqlWork


class SqlDataRuns(SqlWork):
    """DataStore statements; the adapter supplies the transactions."""

    def add_data_run(self, run: DataRun) -> None:
        row = run.to_json()
        row["table_name"] = row.pop("table")
        row["complete"] = int(run.complete)
        t = data_runs_t
        newest = (
            select(t.c.id)
            .where(t.c.table_name == run.table)
            .order_by(t.c.finished_at.desc(), t.c.id.desc())
            .limit(KEEP_RUNS_PER_TABLE)
        )

        def work(conn: Connection) -> None:
            conn.execute(insert(t), [row])
            # A derived table around the LIMIT: MySQL-style engines refuse LIMIT in IN (...).
            kept = select(newest.subquery().c.id)
            conn.execute(delete(t).where(t.c.table_name == run.table, t.c.id.not_in(kept)))

        self._write(work)

    def data_runs(self, table: str, *, limit: int = 20) -> list[DataRun]:
        t = data_runs_t
        query = (
            select(t)
            .where(t.c.table_name == table)
            .order_by(t.c.finished_at.desc(), t.c.id.desc())
            .limit(limit)
        )
        rows = self._read(lambda conn: conn.execute(query).mappings().all())
        return [_run(row) for row in rows]

    def data_statuses(self) -> dict[str, DataStatus]:
        t = data_runs_t

        def newest(*where: Any) -> Any:
            ranked = select(
                t,
                func.row_number()
                .over(partition_by=t.c.table_name, order_by=(t.c.finished_at.desc(), t.c.id.desc()))
                .label("rank"),
            ).where(*where)
            sub = ranked.subquery()
            return select(sub).where(sub.c.rank == 1)

        def work(conn: Connection) -> dict[str, DataStatus]:
            last = {row["table_name"]: _run(row) for row in conn.execute(newest()).mappings()}
            complete = {
                row["table_name"]: _run(row)
                for row in conn.execute(newest(t.c.complete == 1)).mappings()
            }
            return {name: DataStatus(run, complete.get(name)) for name, run in sorted(last.items())}

        return self._read(work)


def _run(row: Any) -> DataRun:
    return DataRun(
        table=row["table_name"],
        finished_at=float(row["finished_at"]),
        seconds=float(row["seconds"]),
        rows_legacy=int(row["rows_legacy"]),
        rows_new=int(row["rows_new"]),
        missing_in_new=int(row["missing_in_new"]),
        missing_in_legacy=int(row["missing_in_legacy"]),
        different=int(row["different"]),
        complete=bool(row["complete"]),
    )
