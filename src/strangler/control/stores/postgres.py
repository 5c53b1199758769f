"""PostgreSQL adapter for the ShadowStore port: one database shared by every gateway replica.

The statements are `SqlShadowStore`'s (core.py); this module connects (psycopg 3) and runs them.

Rules:
- Blocking. Call from a worker thread, never from the event loop. Open one store per process,
  after fork: a pooled connection must never cross a fork.
- Writes run in READ COMMITTED transactions of additive upserts. INSERT ... ON CONFLICT DO UPDATE
  is atomic per row (it locks the row and adds to the committed value), so any number of workers
  on any number of replicas end with exact totals.
- Reads run in REPEATABLE READ, READ ONLY transactions: one read sees one snapshot, as a SQLite
  read transaction does.
- A write that PostgreSQL rolled back as a deadlock or a serialization failure is run again, up
  to WRITE_ATTEMPTS times in all. Nothing else is retried: after a lost connection nobody knows
  whether the commit happened, and replaying an additive flush could count it twice.
- The schema is migrated on open with the same Alembic revisions as SQLite, in one transaction
  that first takes `pg_advisory_xact_lock(MIGRATION_LOCK_KEY)`: replicas starting together
  migrate one after the other, and the later ones find the schema at head and do nothing.
- Every driver error (refused, authentication, lost connection, permissions) becomes
  StoreUnavailable chained to it. The URL's password shows nowhere: not in messages, not in repr.
"""

from __future__ import annotations

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Table,
    create_engine,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from strangler.control.store import StoreUnavailable
from strangler.control.stores.core import SqlShadowStore
from strangler.control.stores.schema import upgrade
from strangler.control.stores.sql_work import T, Work

# pg_advisory_xact_lock key held while migrating: the ASCII of "strangle" as a 64-bit number. Any
# constant works as long as every version of strangler uses the same one.
MIGRATION_LOCK_KEY = 0x73_74_72_61_6E_67_6C_65

# pg_advisory_xact_lock key every control-state change holds to commit ("strangle" + 1).
CHANGE_LOCK_KEY = MIGRATION_LOCK_KEY + 1

# LISTEN/NOTIFY channel on which a state change announces its version.
NOTIFY_CHANNEL = "strangler_state"

# SQLSTATE 40P01 deadlock_detected, 40001 serialization_failure: the server rolled the whole
# transaction back, so running it again cannot count anything twice.
_RETRYABLE = frozenset({"40P01", "40001"})
WRITE_ATTEMPTS = 3

# libpq waits for an unreachable host as long as TCP does (minutes); a flush should give up
# sooner. A `connect_timeout` in the URL wins.
CONNECT_TIMEOUT_S = 5

_SCHEMES = ("postgresql", "postgresql+psycopg")


def engine_url(url: str) -> URL:
    """`url` for SQLAlchemy's psycopg 3 dialect; ValueError (never showing it) if it isn't a
    postgresql:// or postgresql+psycopg:// URL."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # ArgumentError repeats the whole URL, password included.
        raise ValueError("not a database URL; expected postgresql://user@host:5432/db") from None
    if parsed.drivername not in _SCHEMES:
        raise ValueError(
            f"expected a postgresql:// or postgresql+psycopg:// URL, not {parsed.drivername}://"
        )
    return parsed.set(drivername="postgresql+psycopg")


class PostgresShadowStore(SqlShadowStore):
    """ShadowStore in one PostgreSQL database, safe for many processes and replicas at once."""

    def __init__(self, url: str, *, max_examples_per_path: int = 5) -> None:
        super().__init__(max_examples_per_path=max_examples_per_path)
        self.url = engine_url(url)
        self._shown = self.url.render_as_string(hide_password=True)
        connect_args: dict[str, object] = {}
        if "connect_timeout" not in self.url.query:
            connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
        if "application_name" not in self.url.query:
            connect_args["application_name"] = "strangler"
        self._engine: Engine = create_engine(
            self.url,
            isolation_level="READ COMMITTED",
            # A pooled connection may have died with a server restart or a failover since the
            # last flush: test it on checkout rather than fail the flush with it.
            pool_pre_ping=True,
            connect_args=connect_args,
        )
        try:
            self._write(_migrate)
        except BaseException:
            self._engine.dispose()
            raise

    def __repr__(self) -> str:
        return f"<PostgresShadowStore {self._shown}>"

    def _write(self, work: Work[T]) -> T:
        attempt = 1
        while True:
            try:
                with self._engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if _sqlstate(exc) in _RETRYABLE and attempt < WRITE_ATTEMPTS:
                    attempt += 1
                    continue
                raise self._unavailable(exc) from exc

    def _read(self, work: Work[T]) -> T:
        try:
            with self._engine.connect() as plain:
                conn = plain.execution_options(
                    isolation_level="REPEATABLE READ", postgresql_readonly=True
                )
                with conn.begin():
                    return work(conn)
        except DBAPIError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: DBAPIError) -> StoreUnavailable:
        # The driver's own message, without SQLAlchemy's statement and parameters after it.
        reason = " ".join(str(exc.orig if exc.orig is not None else exc).split())
        return StoreUnavailable(f"shadow store {self._shown}: {reason}")

    def _lock_changes(self, conn: Connection) -> None:
        conn.execute(text(f"SELECT pg_advisory_xact_lock({CHANGE_LOCK_KEY})"))

    def _notify(self, conn: Connection, version: int) -> None:
        # Delivered to every LISTENing replica when this transaction commits, never before.
        conn.execute(
            text("SELECT pg_notify(:channel, :payload)"),
            {"channel": NOTIFY_CHANNEL, "payload": str(version)},
        )

    def _upsert(self, table: Table) -> Insert:
        return insert(table)

    def _greatest(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        return func.greatest(a, b)

    def _least(self, a: ColumnElement[float], b: ColumnElement[float]) -> ColumnElement[float]:
        return func.least(a, b)

    def _text_order(self, column: ColumnElement[str]) -> ColumnElement[str]:
        # The database's default collation is the locale's (en_US sorts "$.b" and "$.B" and
        # punctuation its own way); "C" is codepoint order, as SQLite's BINARY.
        return column.collate("C")

    def _json_add(self, table: str, column: str) -> ColumnElement[str]:
        return literal_column(
            "(SELECT coalesce(jsonb_object_agg(key, total), '{}'::jsonb)::text FROM ("
            "SELECT key, sum(value::bigint) AS total FROM ("
            f"SELECT key, value FROM jsonb_each_text({table}.{column}::jsonb) UNION ALL "
            f"SELECT key, value FROM jsonb_each_text(excluded.{column}::jsonb)) AS added "
            "GROUP BY key) AS sums)"
        )

    def close(self) -> None:
        self._engine.dispose()


def _migrate(conn: Connection) -> None:
    # Held until this transaction commits or rolls back, even if the process dies meanwhile.
    conn.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"))
    upgrade(conn)


def _sqlstate(exc: DBAPIError) -> str | None:
    code = getattr(exc.orig, "sqlstate", None)
    return code if isinstance(code, str) else None
