"""The drill statements of the ControlStore port (strangler.control.state) in SQLAlchemy Core,
shared by the SQL adapters through `SqlShadowStore`.

A drill is written like an override: the row and its audit entry in one transaction, under the
lock every change takes, so the state version moves and every worker's watcher reads it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Row, delete, insert, select

from strangler.control.state import Change, Drill
from strangler.control.stores.control_sql import SqlControlState
from strangler.control.stores.schema import audit_t, drills_t


def _drill(row: Row[Any]) -> Drill:
    return Drill(
        unit=row.unit,
        fault=json.loads(row.fault),
        expires_at=row.expires_at,
        version=row.version,
        updated_at=row.updated_at,
        actor=row.actor,
        reason=row.reason,
    )


def _dump(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SqlDrills(SqlControlState):
    """Drill statements; the adapter supplies transactions, the change lock and NOTIFY."""

    def drills(self) -> dict[str, Drill]:
        def work(conn: Connection) -> dict[str, Drill]:
            rows = conn.execute(select(drills_t).order_by(drills_t.c.unit))
            return {row.unit: _drill(row) for row in rows}

        return self._read(work)

    def set_drill(
        self, unit: str, drill: Drill | None, *, actor: str, reason: str, now: float
    ) -> Change:
        def work(conn: Connection) -> Change:
            self._lock_changes(conn)
            row = conn.execute(
                select(drills_t).where(drills_t.c.unit == unit).with_for_update()
            ).first()
            before = {} if row is None else _drill(row).as_dict()
            after = {} if drill is None else drill.as_dict()
            action = "drill" if drill is not None else "drill_clear"
            result = conn.execute(
                insert(audit_t).values(
                    at=now,
                    actor=actor,
                    action=action,
                    unit=unit,
                    before=_dump(before),
                    after=_dump(after),
                    reason=reason,
                    evidence=None,
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            version = int(key[0])
            conn.execute(delete(drills_t).where(drills_t.c.unit == unit))
            if drill is not None:
                conn.execute(
                    insert(drills_t).values(
                        unit=unit,
                        fault=_dump(dict(drill.fault)),
                        expires_at=drill.expires_at,
                        version=version,
                        updated_at=now,
                        actor=actor,
                        reason=reason,
                    )
                )
            self._notify(conn, version)
            return Change(version, now, actor, action, unit, before, after, reason)

        return self._write(work)
