"""SQLite adapter for the ShadowStore port: one file shared by every worker process and the CLI.

Rules:
- Blocking. Call from a worker thread, never from the event loop.
- Open one store per process, after fork: a pooled connection must never cross a fork.
- Concurrency: WAL (readers never block the writer), `busy_timeout` (a writer waits for the lock
  instead of failing), and every write transaction is BEGIN IMMEDIATE (takes the write lock up
  front, so a read-then-write can't deadlock with another writer and return SQLITE_BUSY).
- Writes are additive UPSERTs, so concurrent flushes from several workers merge exactly.
- The schema is created or upgraded on open with the Alembic migrations shipped in
  `strangler/control/migrations`, inside one BEGIN IMMEDIATE transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    case,
    create_engine,
    delete,
    event,
    func,
    select,
    text,
    update,
)
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from strangler.control.store import (
    PathDelta,
    PathKind,
    PathTotals,
    RouteDelta,
    RouteTotals,
    StoreUnavailable,
    TrafficDelta,
    TrafficTotals,
    Verdict,
    check_review,
    is_learned_noise,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# A flush waits this long for another process's write lock before giving up. Flushes are a few
# milliseconds each, so 5 s only runs out when something is really stuck.
BUSY_TIMEOUT_MS = 5000

# The Core view of the schema that migrations/versions creates. Queries only; never create_all.
_metadata = MetaData()
routes_t = Table(
    "shadow_routes",
    _metadata,
    Column("route", Text, primary_key=True),
    Column("mirrored", Integer, nullable=False),
    Column("compared", Integer, nullable=False),
    Column("equal", Integer, nullable=False),
    Column("different", Integer, nullable=False),
    Column("noise_samples", Integer, nullable=False),
    Column("updated_at", Float, nullable=False),
)
dropped_t = Table(
    "shadow_dropped",
    _metadata,
    Column("route", Text, primary_key=True),
    Column("reason", Text, primary_key=True),
    Column("count", Integer, nullable=False),
)
paths_t = Table(
    "shadow_paths",
    _metadata,
    Column("route", Text, primary_key=True),
    Column("rule_path", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("noise_count", Integer, nullable=False),
    Column("review", Text),
    Column("review_reason", Text),
    Column("reviewed_by", Text),
    Column("reviewed_at", Float),
)
examples_t = Table(
    "shadow_examples",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("route", Text, nullable=False),
    Column("rule_path", Text, nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("body", Text, nullable=False),
)

signatures_t = Table(
    "shadow_signatures",
    _metadata,
    Column("route", Text, primary_key=True),
    Column("signature", Text, primary_key=True),
    Column("count", Integer, nullable=False),
    Column("last_seen", Float, nullable=False),
)

traffic_t = Table(
    "traffic",
    _metadata,
    Column("route", Text, primary_key=True),
    Column("minute", Integer, primary_key=True),
    Column("legacy", Integer, nullable=False),
    Column("new", Integer, nullable=False),
    Column("legacy_errors", Integer, nullable=False),
    Column("new_errors", Integer, nullable=False),
)

_BEGIN_OPTION = "strangler_sqlite_begin"


def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
    # pysqlite's own transaction handling issues a deferred BEGIN lazily; turn it off and let
    # _on_begin issue the BEGIN we choose (the documented SQLAlchemy recipe for SQLite).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL is durable against application crashes; only power loss can lose
        # the last flushes, which are counters we can afford to lose.
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


def _on_begin(connection: Connection) -> None:
    mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    connection.exec_driver_sql(f"BEGIN {mode}")


class SqliteShadowStore:
    """ShadowStore on one SQLite file, safe for many processes writing at once."""

    def __init__(self, path: str | Path, *, max_examples_per_path: int = 5) -> None:
        if max_examples_per_path < 0:
            raise ValueError("max_examples_per_path must be >= 0")
        self.path = Path(path)
        self.max_examples_per_path = max_examples_per_path
        self._engine: Engine = create_engine(f"sqlite:///{self.path}")
        event.listen(self._engine, "connect", _on_connect)
        event.listen(self._engine, "begin", _on_begin)
        try:
            self._open()
        except BaseException:
            self._engine.dispose()
            raise

    def _open(self) -> None:
        # Two workers opening a new file at once race on switching it to WAL, and SQLite
        # answers that race with "database is locked" without waiting on busy_timeout. Retry
        # for as long as a write would wait (measured: 48 of 60 fresh opens by two forked
        # workers failed before this loop).
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
        while True:
            try:
                self._migrate()
                return
            except StoreUnavailable as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                self._engine.dispose()
                time.sleep(0.02)

    def __repr__(self) -> str:
        return f"<SqliteShadowStore {self.path}>"

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as plain:
                conn = plain.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
                with conn.begin():
                    yield conn
        except (OperationalError, sqlite3.OperationalError) as exc:
            raise StoreUnavailable(f"shadow store {self.path}: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        try:
            with self._engine.connect() as conn, conn.begin():
                yield conn
        except (OperationalError, sqlite3.OperationalError) as exc:
            raise StoreUnavailable(f"shadow store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._write() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "head")

    def apply(
        self, deltas: Sequence[RouteDelta], now: float, traffic: Sequence[TrafficDelta] = ()
    ) -> None:
        if not deltas and not traffic:
            return
        with self._write() as conn:
            for delta in deltas:
                self._apply_route(conn, delta, now)
            if traffic:
                stmt = insert(traffic_t)
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
            .order_by(traffic_t.c.route)
        )
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [
            TrafficTotals(route, int(legacy), int(new), int(legacy_errors), int(new_errors))
            for route, legacy, new, legacy_errors, new_errors in rows
        ]

    def _apply_route(self, conn: Connection, delta: RouteDelta, now: float) -> None:
        stmt = insert(routes_t).values(
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
                    "updated_at": func.max(routes_t.c.updated_at, added.updated_at),
                },
            )
        )
        if delta.dropped:
            drop = insert(dropped_t)
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
            signature = insert(signatures_t)
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
                        "signature": json.dumps(s.rule_paths, separators=(",", ":")),
                        "count": s.count,
                        "last_seen": now,
                    }
                    for s in delta.signatures
                ],
            )
        if delta.noise:
            noise = insert(paths_t)
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
        stmt = insert(paths_t)
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
                        else_=func.min(paths_t.c.first_seen, added.first_seen),
                    ),
                    "last_seen": case(
                        (is_noise_only, added.last_seen),
                        else_=func.max(paths_t.c.last_seen, added.last_seen),
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
        with self._read() as conn:
            dropped: dict[str, dict[str, int]] = {}
            for route, reason, count in conn.execute(
                select(dropped_t.c.route, dropped_t.c.reason, dropped_t.c.count)
            ):
                dropped.setdefault(route, {})[reason] = count
            rows = conn.execute(select(routes_t).order_by(routes_t.c.route)).all()
            cleared = self._paths_counted_as_noise(
                conn, {row.route: row.noise_samples for row in rows}
            )
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

    @staticmethod
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

    def paths(self, route: str) -> list[PathTotals]:
        query = (
            select(paths_t)
            .where(paths_t.c.route == route)
            .order_by(paths_t.c.count.desc(), paths_t.c.rule_path)
        )
        with self._read() as conn:
            # Mappings, not Row attributes: Row.count is tuple.count.
            rows = conn.execute(query).mappings().all()
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
        with self._read() as conn:
            rows = conn.execute(query).all()
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
        with self._write() as conn:
            result = conn.execute(
                update(paths_t)
                .where(paths_t.c.route == route, paths_t.c.rule_path == rule_path)
                .values(
                    review=checked.value,
                    review_reason=reason or None,
                    reviewed_by=who,
                    reviewed_at=now,
                )
            )
            if result.rowcount == 0:
                raise KeyError(f"route {route!r} has no differing path {rule_path!r}")

    def reviewed(self) -> dict[str, frozenset[str]]:
        with self._read() as conn:
            rows = conn.execute(
                select(paths_t.c.route, paths_t.c.rule_path).where(paths_t.c.review.is_not(None))
            ).all()
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
        with self._write() as conn:
            # Reviewed paths are human decisions: they stay, and don't count against the cap.
            aged = conn.execute(
                delete(paths_t).where(
                    paths_t.c.review.is_(None), paths_t.c.last_seen < now - max_age_s
                )
            ).rowcount
            crowded = conn.execute(
                text(
                    "DELETE FROM shadow_paths WHERE (route, rule_path) IN ("
                    " SELECT route, rule_path FROM ("
                    "  SELECT route, rule_path, ROW_NUMBER() OVER ("
                    "   PARTITION BY route ORDER BY count DESC, last_seen DESC, rule_path"
                    "  ) AS rank FROM shadow_paths WHERE review IS NULL"
                    " ) WHERE rank > :cap)"
                ),
                {"cap": max_paths_per_route},
            ).rowcount
            conn.execute(delete(traffic_t).where(traffic_t.c.minute < int((now - max_age_s) // 60)))
            # Signatures are pruned by rank, never by age: an aged-out signature would turn its
            # old comparisons back into differences. Rare ones go first.
            conn.execute(
                text(
                    "DELETE FROM shadow_signatures WHERE (route, signature) IN ("
                    " SELECT route, signature FROM ("
                    "  SELECT route, signature, ROW_NUMBER() OVER ("
                    "   PARTITION BY route ORDER BY count DESC, last_seen DESC, signature"
                    "  ) AS rank FROM shadow_signatures"
                    " ) WHERE rank > :cap)"
                ),
                {"cap": max_signatures_per_route},
            )
            conn.execute(
                text(
                    "DELETE FROM shadow_examples WHERE NOT EXISTS ("
                    " SELECT 1 FROM shadow_paths p"
                    " WHERE p.route = shadow_examples.route"
                    " AND p.rule_path = shadow_examples.rule_path)"
                )
            )
        return int(aged) + int(crowded)

    def close(self) -> None:
        self._engine.dispose()
