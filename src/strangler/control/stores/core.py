"""The ShadowStore port written once, in SQLAlchemy Core, for every SQL adapter.

`SqlShadowStore` builds every statement. An adapter (`sqlite.py`, `postgres.py`) brings the
engine and the transactions (how they begin, what is retried, which driver errors become
StoreUnavailable), plus the few expressions the dialects spell differently: the upsert construct,
the two-argument max/min, and how text is ordered.

Rules:
- Writes are additive upserts, so concurrent flushes from any number of processes merge exactly.
- A flush writes its routes in sorted order, each route's row first, then its traffic in sorted
  order. Where the database locks rows (PostgreSQL), the route's row lock is held to commit: it
  serializes everything written under that route (paths, examples and their trimming), and two
  flushes take their locks in the same order, so they never deadlock each other.
- Text is ordered byte-wise (codepoint order) on every dialect: the same data lists the same way.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import (
    ColumnElement,
    Connection,
    Delete,
    Table,
    case,
    delete,
    exists,
    func,
    insert,
    select,
    tuple_,
    update,
)

from strangler.control.store import (
    PathDelta,
    PathKind,
    PathTotals,
    RouteDelta,
    RouteTotals,
    TrafficDelta,
    TrafficTotals,
    Verdict,
    check_review,
    is_learned_noise,
)
from strangler.control.stores.data_sql import SqlDataRuns
from strangler.control.stores.data_watch_sql import SqlDataWatch
from strangler.control.stores.drill_sql import SqlDrills
from strangler.control.stores.schema import (
    dropped_t,
    examples_t,
    paths_t,
    routes_t,
    signatures_t,
    storable,
    traffic_t,
)
from strangler.control.stores.series_sql import SqlRouteSeries
from strangler.control.stores.slo_sql import SqlSloState

if TYPE_CHECKING:
    pass


class SqlShadowStore(SqlDrills, SqlSloState, SqlDataRuns, SqlDataWatch, SqlRouteSeries):
    """ShadowStore over SQLAlchemy Core; subclasses supply transactions and dialect spellings."""

    def __init__(self, *, max_examples_per_path: int) -> None:
        if max_examples_per_path < 0:
            raise ValueError("max_examples_per_path must be >= 0")
        self.max_examples_per_path = max_examples_per_path

    # What each adapter provides, besides SqlWork's transactions and upsert.

    @abstractmethod
    def _greatest(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        """The larger of two values (one row, not an aggregate)."""

    @abstractmethod
    def _least(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        """The smaller of two values (one row, not an aggregate)."""

    def _text_order(self, column: ColumnElement[str]) -> ColumnElement[str]:
        """`column` as an ORDER BY key in codepoint order (SQLite's default BINARY collation)."""
        return column

    # The port.

    def apply(
        self, deltas: Sequence[RouteDelta], now: float, traffic: Sequence[TrafficDelta] = ()
    ) -> None:
        if not deltas and not traffic:
            return
        routes = sorted(deltas, key=lambda delta: delta.route)
        minutes = sorted(traffic, key=lambda t: (t.route, t.minute))

        def work(conn: Connection) -> None:
            for delta in routes:
                self._apply_route(conn, delta, now)
            # A minute with only shadow copies is no traffic: the series alone keeps it.
            answered = [t for t in minutes if t.legacy or t.new]
            if answered:
                self._apply_traffic(conn, answered)
            if minutes:
                self._apply_series(conn, minutes)

        self._write(work)

    def _apply_traffic(self, conn: Connection, traffic: Sequence[TrafficDelta]) -> None:
        stmt = self._upsert(traffic_t)
        added = stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[traffic_t.c.route, traffic_t.c.minute],
                set_={
                    "legacy": traffic_t.c.legacy + added.legacy,
                    "new": traffic_t.c.new + added.new,
                    "legacy_errors": traffic_t.c.legacy_errors + added.legacy_errors,
                    "new_errors": traffic_t.c.new_errors + added.new_errors,
                },
            ),
            [
                {
                    "route": t.route,
                    "minute": t.minute,
                    "legacy": t.legacy,
                    "new": t.new,
                    "legacy_errors": t.legacy_errors,
                    "new_errors": t.new_errors,
                }
                for t in traffic
            ],
        )

    def traffic(self, since: float) -> list[TrafficTotals]:
        query = (
            select(
                traffic_t.c.route,
                func.sum(traffic_t.c.legacy),
                func.sum(traffic_t.c.new),
                func.sum(traffic_t.c.legacy_errors),
                func.sum(traffic_t.c.new_errors),
            )
            .where(traffic_t.c.minute >= int(since // 60))
            .group_by(traffic_t.c.route)
            .order_by(self._text_order(traffic_t.c.route))
        )
        rows = self._read(lambda conn: conn.execute(query).all())
        return [
            TrafficTotals(route, int(legacy), int(new), int(legacy_errors), int(new_errors))
            for route, legacy, new, legacy_errors, new_errors in rows
        ]

    def _apply_route(self, conn: Connection, delta: RouteDelta, now: float) -> None:
        # First, always: on PostgreSQL this row's lock serializes the rest of the route's writes.
        stmt = self._upsert(routes_t).values(
            route=delta.route,
            mirrored=delta.mirrored,
            compared=delta.compared,
            equal=delta.equal,
            different=delta.different,
            noise_samples=delta.noise_samples,
            updated_at=now,
        )
        added = stmt.excluded
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[routes_t.c.route],
                set_={
                    "mirrored": routes_t.c.mirrored + added.mirrored,
                    "compared": routes_t.c.compared + added.compared,
                    "equal": routes_t.c.equal + added.equal,
                    "different": routes_t.c.different + added.different,
                    "noise_samples": routes_t.c.noise_samples + added.noise_samples,
                    "updated_at": self._greatest(routes_t.c.updated_at, added.updated_at),
                },
            )
        )
        if delta.dropped:
            drop = self._upsert(dropped_t)
            conn.execute(
                drop.on_conflict_do_update(
                    index_elements=[dropped_t.c.route, dropped_t.c.reason],
                    set_={"count": dropped_t.c.count + drop.excluded.count},
                ),
                [
                    {"route": delta.route, "reason": reason, "count": count}
                    for reason, count in delta.dropped.items()
                ],
            )
        if delta.paths:
            self._apply_paths(conn, delta.route, delta.paths)
        if delta.signatures:
            signature = self._upsert(signatures_t)
            conn.execute(
                signature.on_conflict_do_update(
                    index_elements=[signatures_t.c.route, signatures_t.c.signature],
                    set_={
                        "count": signatures_t.c.count + signature.excluded.count,
                        "last_seen": signature.excluded.last_seen,
                    },
                ),
                [
                    {
                        "route": delta.route,
                        "signature": _signature_text(s.rule_paths),
                        "count": s.count,
                        "last_seen": now,
                    }
                    for s in delta.signatures
                ],
            )
        if delta.noise:
            noise = self._upsert(paths_t)
            conn.execute(
                # A path seen only in legacy noise keeps count 0 and its last_seen follows the
                # noise (so age pruning keeps it while noise arrives); the first real difference
                # replaces both times (see _apply_paths).
                noise.on_conflict_do_update(
                    index_elements=[paths_t.c.route, paths_t.c.rule_path],
                    set_={
                        "noise_count": paths_t.c.noise_count + noise.excluded.noise_count,
                        "last_seen": case(
                            (paths_t.c.count == 0, noise.excluded.last_seen),
                            else_=paths_t.c.last_seen,
                        ),
                    },
                ),
                [
                    {
                        "route": delta.route,
                        "rule_path": n.rule_path,
                        "kind": PathKind.CHANGED.value,
                        "count": 0,
                        "first_seen": now,
                        "last_seen": now,
                        "noise_count": n.count,
                    }
                    for n in delta.noise
                ],
            )

    def _apply_paths(self, conn: Connection, route: str, paths: Sequence[PathDelta]) -> None:
        stmt = self._upsert(paths_t)
        added = stmt.excluded
        # A row with count 0 was created by noise learning alone: its times are placeholders.
        is_noise_only = paths_t.c.count == 0
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[paths_t.c.route, paths_t.c.rule_path],
                set_={
                    "count": paths_t.c.count + added.count,
                    "kind": case((added.count > 0, added.kind), else_=paths_t.c.kind),
                    "first_seen": case(
                        (is_noise_only, added.first_seen),
                        else_=self._least(paths_t.c.first_seen, added.first_seen),
                    ),
                    "last_seen": case(
                        (is_noise_only, added.last_seen),
                        else_=self._greatest(paths_t.c.last_seen, added.last_seen),
                    ),
                },
            ),
            [
                {
                    "route": route,
                    "rule_path": p.rule_path,
                    "kind": p.kind,
                    "count": p.count,
                    "first_seen": p.first_seen,
                    "last_seen": p.last_seen,
                    "noise_count": 0,
                }
                for p in paths
            ],
        )
        keep = self.max_examples_per_path
        for p in paths:
            if not p.examples or keep == 0:
                continue
            # Examples arrive oldest first; only the newest `keep` can survive the trim below.
            conn.execute(
                insert(examples_t),
                [
                    {
                        "route": route,
                        "rule_path": p.rule_path,
                        "seen_at": p.last_seen,
                        "body": json.dumps(example, separators=(",", ":")),
                    }
                    for example in p.examples[-keep:]
                ],
            )
            newest = (
                select(examples_t.c.id)
                .where(examples_t.c.route == route, examples_t.c.rule_path == p.rule_path)
                .order_by(examples_t.c.seen_at.desc(), examples_t.c.id.desc())
                .limit(keep)
            )
            conn.execute(
                delete(examples_t).where(
                    examples_t.c.route == route,
                    examples_t.c.rule_path == p.rule_path,
                    examples_t.c.id.not_in(newest.scalar_subquery()),
                )
            )

    def routes(self) -> list[RouteTotals]:
        def work(conn: Connection) -> list[RouteTotals]:
            dropped: dict[str, dict[str, int]] = {}
            for route, reason, count in conn.execute(
                select(dropped_t.c.route, dropped_t.c.reason, dropped_t.c.count)
            ):
                dropped.setdefault(route, {})[reason] = count
            rows = conn.execute(select(routes_t).order_by(self._text_order(routes_t.c.route))).all()
            cleared = _paths_counted_as_noise(conn, {row.route: row.noise_samples for row in rows})
            equal_but_noise: dict[str, int] = {}
            for route, signature, count in conn.execute(
                select(signatures_t.c.route, signatures_t.c.signature, signatures_t.c.count)
            ):
                if cleared.get(route, frozenset()).issuperset(json.loads(signature)):
                    equal_but_noise[route] = equal_but_noise.get(route, 0) + count
            return [
                RouteTotals(
                    route=row.route,
                    mirrored=row.mirrored,
                    compared=row.compared,
                    equal=row.equal,
                    different=row.different,
                    dropped=dropped.get(row.route, {}),
                    noise_samples=row.noise_samples,
                    updated_at=row.updated_at,
                    equal_but_noise=equal_but_noise.get(row.route, 0),
                )
                for row in rows
            ]

        return self._read(work)

    def paths(self, route: str) -> list[PathTotals]:
        query = (
            select(paths_t)
            .where(paths_t.c.route == route)
            .order_by(paths_t.c.count.desc(), self._text_order(paths_t.c.rule_path))
        )
        # Mappings, not Row attributes: Row.count is tuple.count.
        rows = self._read(lambda conn: conn.execute(query).mappings().all())
        return [
            PathTotals(
                route=row["route"],
                rule_path=row["rule_path"],
                kind=row["kind"],
                count=row["count"],
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                noise_count=row["noise_count"],
                review=None if row["review"] is None else Verdict(row["review"]),
                review_reason=row["review_reason"],
                reviewed_by=row["reviewed_by"],
                reviewed_at=row["reviewed_at"],
            )
            for row in rows
        ]

    def examples(self, route: str, rule_path: str | None = None) -> list[dict[str, object]]:
        query = select(examples_t.c.rule_path, examples_t.c.body).where(examples_t.c.route == route)
        if rule_path is not None:
            query = query.where(examples_t.c.rule_path == rule_path)
        query = query.order_by(examples_t.c.seen_at.desc(), examples_t.c.id.desc())
        rows = self._read(lambda conn: conn.execute(query).all())
        found: list[dict[str, object]] = []
        for path, body in rows:
            example: dict[str, object] = json.loads(body)
            example["rule_path"] = path
            found.append(example)
        return found

    def review(
        self, route: str, rule_path: str, verdict: str, reason: str, who: str, now: float
    ) -> None:
        checked = check_review(verdict, reason)
        statement = (
            update(paths_t)
            .where(paths_t.c.route == route, paths_t.c.rule_path == rule_path)
            .values(
                review=checked.value,
                review_reason=reason or None,
                reviewed_by=who,
                reviewed_at=now,
            )
        )

        def work(conn: Connection) -> None:
            if conn.execute(statement).rowcount == 0:
                raise KeyError(f"route {route!r} has no differing path {rule_path!r}")

        self._write(work)

    def reviewed(self) -> dict[str, frozenset[str]]:
        query = select(paths_t.c.route, paths_t.c.rule_path).where(paths_t.c.review.is_not(None))
        rows = self._read(lambda conn: conn.execute(query).all())
        out: dict[str, set[str]] = {}
        for route, rule_path in rows:
            out.setdefault(route, set()).add(rule_path)
        return {route: frozenset(paths) for route, paths in out.items()}

    def prune(
        self,
        now: float,
        *,
        max_age_s: float,
        max_paths_per_route: int,
        max_signatures_per_route: int = 1000,
    ) -> int:
        if min(max_age_s, max_paths_per_route, max_signatures_per_route) < 0:
            raise ValueError("prune limits must be >= 0")
        # Reviewed paths are human decisions: they stay, and don't count against the cap.
        aged = delete(paths_t).where(
            paths_t.c.review.is_(None), paths_t.c.last_seen < now - max_age_s
        )
        crowded = self._delete_past_rank(
            paths_t, paths_t.c.rule_path, max_paths_per_route, paths_t.c.review.is_(None)
        )
        old_minutes = delete(traffic_t).where(traffic_t.c.minute < int((now - max_age_s) // 60))
        # Signatures are pruned by rank, never by age: an aged-out signature would turn its old
        # comparisons back into differences. Rare ones go first.
        rare_signatures = self._delete_past_rank(
            signatures_t, signatures_t.c.signature, max_signatures_per_route
        )
        orphans = delete(examples_t).where(
            ~exists().where(
                paths_t.c.route == examples_t.c.route,
                paths_t.c.rule_path == examples_t.c.rule_path,
            )
        )

        def work(conn: Connection) -> int:
            removed = conn.execute(aged).rowcount + conn.execute(crowded).rowcount
            conn.execute(old_minutes)
            self._prune_series(conn, now, max_age_s)
            conn.execute(rare_signatures)
            conn.execute(orphans)
            return int(removed)

        return self._write(work)

    def _delete_past_rank(
        self, table: Table, key: ColumnElement[str], cap: int, *where: ColumnElement[bool]
    ) -> Delete:
        """DELETE the rows of each route ranked past `cap` by count, then recency, then `key`
        (rows not matching `where` are neither ranked nor deleted)."""
        ranked = (
            select(
                table.c.route,
                key.label("key"),
                func.row_number()
                .over(
                    partition_by=table.c.route,
                    order_by=(
                        table.c.count.desc(),
                        table.c.last_seen.desc(),
                        self._text_order(key),
                    ),
                )
                .label("rank"),
            )
            .where(*where)
            .subquery()
        )
        return delete(table).where(
            tuple_(table.c.route, key).in_(
                select(ranked.c.route, ranked.c.key).where(ranked.c.rank > cap)
            )
        )


def _signature_text(rule_paths: tuple[str, ...]) -> str:
    # The paths as `paths_t` stores them, so a stored review or noise path can clear them.
    return json.dumps([storable(path) for path in rule_paths], separators=(",", ":"))


def _paths_counted_as_noise(
    conn: Connection, noise_samples: dict[str, int]
) -> dict[str, frozenset[str]]:
    """Per route, the paths that leave the parity: reviewed, or learned noise store-wide."""
    found: dict[str, set[str]] = {}
    query = select(
        paths_t.c.route, paths_t.c.rule_path, paths_t.c.noise_count, paths_t.c.review
    ).where((paths_t.c.review.is_not(None)) | (paths_t.c.noise_count >= 2))
    for route, rule_path, noise_count, review in conn.execute(query):
        if review is not None or is_learned_noise(noise_count, noise_samples.get(route, 0)):
            found.setdefault(route, set()).add(rule_path)
    return {route: frozenset(paths) for route, paths in found.items()}
