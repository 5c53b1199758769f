"""The ControlStore port (strangler.control.state) in SQLAlchemy Core, shared by the SQL
adapters through `SqlShadowStore`.

Rules: see the port. Additionally, `change` locks the unit's override row (FOR UPDATE where the
database locks rows; SQLite's BEGIN IMMEDIATE already serializes writers), and `_notify` lets
PostgreSQL wake every replica's listener when the transaction commits.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, delete, func, insert, select, update

from strangler.control.state import (
    Change,
    Decide,
    Override,
    SessionRecord,
    TokenRecord,
    VerdictRecord,
    WindowDelta,
    WindowTotals,
)
from strangler.control.stores.schema import (
    audit_t,
    leases_t,
    overrides_t,
    sessions_t,
    tokens_t,
    verdicts_t,
    windows_t,
)
from strangler.control.stores.sql_work import SqlWork

if TYPE_CHECKING:
    pass


def _dump(value: Mapping[str, object] | None) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"))


def _override(row: Row[Any]) -> Override:
    return Override(
        unit=row.unit,
        stage=row.stage,
        weight_bp=row.weight_bp,
        status=row.status,
        step_started_at=row.step_started_at,
        version=row.version,
        updated_at=row.updated_at,
        actor=row.actor,
        reason=row.reason,
    )


def _change(row: Row[Any]) -> Change:
    return Change(
        version=row.version,
        at=row.at,
        actor=row.actor,
        action=row.action,
        unit=row.unit,
        before=json.loads(row.before),
        after=json.loads(row.after),
        reason=row.reason,
        evidence=None if row.evidence is None else json.loads(row.evidence),
    )


def _token(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        name=row.name,
        scope=row.scope,
        hash=row.hash,
        created_at=row.created_at,
        created_by=row.created_by,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _add_counts(into: dict[str, int], text: str) -> None:
    for key, count in json.loads(text).items():
        into[key] = into.get(key, 0) + int(count)


class SqlControlState(SqlWork):
    """ControlStore statements; the adapter supplies transactions and the upsert spelling."""

    def _lock_changes(self, conn: Connection) -> None:
        """Serialize every `change` against every other, whatever the unit, until commit.

        Needed twice over: the first change of a unit has no row to lock yet, and versions
        must commit in the order they are numbered, or a reader could see version V+1 before
        V commits and never look again. SQLite's BEGIN IMMEDIATE already does this."""
        return None

    def _notify(self, conn: Connection, version: int) -> None:
        """Tell other replicas the state moved to `version` (delivered on commit). SQLite has
        no channel: its readers poll `state_version`, which is one indexed lookup."""
        return None

    def state_version(self) -> int:
        def work(conn: Connection) -> int:
            return int(conn.execute(select(func.max(audit_t.c.version))).scalar() or 0)

        return self._read(work)

    def overrides(self) -> dict[str, Override]:
        def work(conn: Connection) -> dict[str, Override]:
            rows = conn.execute(select(overrides_t).order_by(overrides_t.c.unit))
            return {row.unit: _override(row) for row in rows}

        return self._read(work)

    def change(
        self, unit: str, decide: Decide, *, actor: str, reason: str, now: float
    ) -> Change | None:
        def work(conn: Connection) -> Change | None:
            self._lock_changes(conn)
            row = conn.execute(
                select(overrides_t).where(overrides_t.c.unit == unit).with_for_update()
            ).first()
            current = None if row is None else _override(row)
            proposal = decide(current)
            if proposal is None:
                return None
            step_start = now
            if proposal.keeps_step_start and current is not None:
                step_start = current.step_started_at
            after = Override(
                unit=unit,
                stage=proposal.stage,
                weight_bp=proposal.weight_bp,
                status=proposal.status,
                step_started_at=step_start,
            )
            before = dict(proposal.baseline or {}) if current is None else current.as_dict()
            # A cleared override leaves the YAML's state in force: that is the entry's "after".
            after_json = dict(proposal.baseline or {}) if proposal.clears_override else None
            result = conn.execute(
                insert(audit_t).values(
                    at=now,
                    actor=actor,
                    action=proposal.action,
                    unit=unit,
                    before=_dump(before),
                    after=_dump(after.as_dict() if after_json is None else after_json),
                    reason=reason,
                    evidence=_dump(proposal.evidence),
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            version = int(key[0])
            values = {
                "stage": after.stage,
                "weight_bp": after.weight_bp,
                "status": after.status,
                "step_started_at": after.step_started_at,
                "version": version,
                "updated_at": now,
                "actor": actor,
                "reason": reason,
            }
            if proposal.clears_override:
                conn.execute(delete(overrides_t).where(overrides_t.c.unit == unit))
            elif current is None:
                conn.execute(insert(overrides_t).values(unit=unit, **values))
            else:
                conn.execute(update(overrides_t).where(overrides_t.c.unit == unit).values(values))
            self._notify(conn, version)
            return Change(
                version=version,
                at=now,
                actor=actor,
                action=proposal.action,
                unit=unit,
                before=before,
                after=after.as_dict() if after_json is None else after_json,
                reason=reason,
                evidence=proposal.evidence,
            )

        return self._write(work)

    def audit(self, unit: str | None = None, *, limit: int = 100) -> list[Change]:
        def work(conn: Connection) -> list[Change]:
            query = select(audit_t).order_by(audit_t.c.version.desc()).limit(limit)
            if unit is not None:
                query = query.where(audit_t.c.unit == unit)
            return [_change(row) for row in conn.execute(query)]

        return self._read(work)

    def add_windows(self, windows: Sequence[WindowDelta]) -> None:
        if not windows:
            return
        rows = [
            {
                "route": w.route,
                "side": w.side,
                "slot": w.slot,
                "requests": w.requests,
                "errors": w.errors,
                "statuses": _dump(w.statuses),
                "latency": _dump(w.latency),
            }
            for w in windows
        ]

        def work(conn: Connection) -> None:
            conn.execute(insert(windows_t), rows)

        self._write(work)

    def window_totals(
        self, routes: Sequence[str], since: float, until: float
    ) -> dict[str, WindowTotals]:
        def work(conn: Connection) -> dict[str, WindowTotals]:
            query = select(windows_t).where(
                windows_t.c.slot >= since,
                windows_t.c.slot < until,
                windows_t.c.route.in_(list(routes)),
            )
            sums: dict[str, WindowTotals] = {}
            for row in conn.execute(query):
                side = sums.get(row.side)
                if side is None:
                    side = sums[row.side] = WindowTotals()
                # Frozen dataclass: the counters are rebuilt, the dicts are filled in place.
                sums[row.side] = WindowTotals(
                    side.requests + row.requests, side.errors + row.errors,
                    side.statuses, side.latency,
                )  # fmt: skip
                _add_counts(side.statuses, row.statuses)
                _add_counts(side.latency, row.latency)
            return sums

        return self._read(work)

    def prune_windows(self, before: float) -> int:
        def work(conn: Connection) -> int:
            return conn.execute(delete(windows_t).where(windows_t.c.slot < before)).rowcount

        return self._write(work)

    def add_verdict(self, record: VerdictRecord) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                insert(verdicts_t).values(
                    unit=record.unit,
                    started_at=record.started_at,
                    ended_at=record.ended_at,
                    weight_bp=record.weight_bp,
                    outcome=record.outcome,
                    action=record.action,
                    verdict=_dump(record.verdict),
                )
            )

        self._write(work)

    def verdicts(self, unit: str, *, limit: int = 20) -> list[VerdictRecord]:
        def work(conn: Connection) -> list[VerdictRecord]:
            query = (
                select(verdicts_t)
                .where(verdicts_t.c.unit == unit)
                .order_by(verdicts_t.c.ended_at.desc(), verdicts_t.c.id.desc())
                .limit(limit)
            )
            return [
                VerdictRecord(
                    unit=row.unit,
                    started_at=row.started_at,
                    ended_at=row.ended_at,
                    weight_bp=row.weight_bp,
                    outcome=row.outcome,
                    action=row.action,
                    verdict=json.loads(row.verdict),
                )
                for row in conn.execute(query)
            ]

        return self._read(work)

    def try_lease(self, name: str, holder: str, ttl_s: float, now: float) -> bool:
        def work(conn: Connection) -> bool:
            stmt = self._upsert(leases_t).values(name=name, holder=holder, expires_at=now + ttl_s)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[leases_t.c.name],
                    set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
                    where=(leases_t.c.holder == holder) | (leases_t.c.expires_at < now),
                )
            )
            owner = conn.execute(select(leases_t.c.holder).where(leases_t.c.name == name))
            return bool(owner.scalar() == holder)

        return self._write(work)

    def add_token(self, token: TokenRecord) -> None:
        def work(conn: Connection) -> None:
            conn.execute(
                insert(tokens_t).values(
                    id=token.id,
                    name=token.name,
                    scope=token.scope,
                    hash=token.hash,
                    created_at=token.created_at,
                    created_by=token.created_by,
                )
            )

        self._write(work)

    def token_by_hash(self, token_hash: str) -> TokenRecord | None:
        def work(conn: Connection) -> TokenRecord | None:
            row = conn.execute(select(tokens_t).where(tokens_t.c.hash == token_hash)).first()
            return None if row is None else _token(row)

        return self._read(work)

    def tokens(self) -> list[TokenRecord]:
        def work(conn: Connection) -> list[TokenRecord]:
            rows = conn.execute(select(tokens_t).order_by(tokens_t.c.created_at, tokens_t.c.id))
            return [_token(row) for row in rows]

        return self._read(work)

    def revoke_token(self, token_id: str, now: float) -> bool:
        def work(conn: Connection) -> bool:
            result = conn.execute(
                update(tokens_t)
                .where(tokens_t.c.id == token_id, tokens_t.c.revoked_at.is_(None))
                .values(revoked_at=now)
            )
            conn.execute(delete(sessions_t).where(sessions_t.c.token_id == token_id))
            return bool(result.rowcount)

        return self._write(work)

    def touch_token(self, token_id: str, now: float) -> None:
        def work(conn: Connection) -> None:
            conn.execute(update(tokens_t).where(tokens_t.c.id == token_id).values(last_used_at=now))

        self._write(work)

    def add_session(self, session: SessionRecord) -> None:
        def work(conn: Connection) -> None:
            # Expired sessions go as new ones come: the table stays as small as the live ones.
            conn.execute(delete(sessions_t).where(sessions_t.c.expires_at < session.created_at))
            conn.execute(
                insert(sessions_t).values(
                    hash=session.hash,
                    subject=session.subject,
                    scope=session.scope,
                    csrf_hash=session.csrf_hash,
                    created_at=session.created_at,
                    expires_at=session.expires_at,
                    token_id=session.token_id,
                )
            )

        self._write(work)

    def session(self, session_hash: str, now: float) -> SessionRecord | None:
        def work(conn: Connection) -> SessionRecord | None:
            row = conn.execute(
                select(sessions_t).where(
                    sessions_t.c.hash == session_hash, sessions_t.c.expires_at > now
                )
            ).first()
            if row is None:
                return None
            return SessionRecord(
                hash=row.hash,
                subject=row.subject,
                scope=row.scope,
                csrf_hash=row.csrf_hash,
                created_at=row.created_at,
                expires_at=row.expires_at,
                token_id=row.token_id,
            )

        return self._read(work)

    def delete_session(self, session_hash: str) -> None:
        def work(conn: Connection) -> None:
            conn.execute(delete(sessions_t).where(sessions_t.c.hash == session_hash))

        self._write(work)
