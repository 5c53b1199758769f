"""The shadow store's tables as SQLAlchemy Core sees them, and the migrations that make them.

Shared by every SQL adapter (SQLite, PostgreSQL). Rules:
- Only the Alembic revisions in `strangler/control/migrations/versions` create or change tables,
  on every dialect alike. The Table objects below describe the result for queries; they are never
  passed to `create_all`, so their types matter only for binding parameters.
- Counters are 64-bit everywhere (BIGINT on PostgreSQL since v0005; SQLite's INTEGER always was).
- Text never holds NUL: PostgreSQL's text type refuses it (and would fail the whole flush), so
  every adapter stores U+FFFD in its place. JSON paths can carry NUL, from an object key.
- Importing this module connects to nothing.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Dialect,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    TypeDecorator,
)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

# The revision `upgrade` brings a store to; tests use older ones to build an old schema.
HEAD = "head"


def storable(text: str) -> str:
    """`text` as every adapter stores it: NUL (refused by PostgreSQL) becomes U+FFFD."""
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


class StoredText(TypeDecorator[str]):
    """TEXT whose bound values go through `storable`, in inserts and in comparisons alike."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else storable(value)


_metadata = MetaData()
routes_t = Table(
    "shadow_routes",
    _metadata,
    Column("route", StoredText, primary_key=True),
    Column("mirrored", BigInteger, nullable=False),
    Column("compared", BigInteger, nullable=False),
    Column("equal", BigInteger, nullable=False),
    Column("different", BigInteger, nullable=False),
    Column("noise_samples", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
)
dropped_t = Table(
    "shadow_dropped",
    _metadata,
    Column("route", StoredText, primary_key=True),
    Column("reason", StoredText, primary_key=True),
    Column("count", BigInteger, nullable=False),
)
paths_t = Table(
    "shadow_paths",
    _metadata,
    Column("route", StoredText, primary_key=True),
    Column("rule_path", StoredText, primary_key=True),
    Column("kind", StoredText, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Column("noise_count", BigInteger, nullable=False),
    Column("review", StoredText),
    Column("review_reason", StoredText),
    Column("reviewed_by", StoredText),
    Column("reviewed_at", Float),
)
examples_t = Table(
    "shadow_examples",
    _metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("route", StoredText, nullable=False),
    Column("rule_path", StoredText, nullable=False),
    Column("seen_at", Float, nullable=False),
    Column("body", StoredText, nullable=False),
)
signatures_t = Table(
    "shadow_signatures",
    _metadata,
    Column("route", StoredText, primary_key=True),
    # A JSON array of the sorted rule paths one comparison differed at.
    Column("signature", StoredText, primary_key=True),
    Column("count", BigInteger, nullable=False),
    Column("last_seen", Float, nullable=False),
)
traffic_t = Table(
    "traffic",
    _metadata,
    Column("route", StoredText, primary_key=True),
    Column("minute", Integer, primary_key=True),
    # Answers of one route in one minute: 32 bits would take 35 million a second.
    Column("legacy", Integer, nullable=False),
    Column("new", Integer, nullable=False),
    Column("legacy_errors", Integer, nullable=False),
    Column("new_errors", Integer, nullable=False),
)


def upgrade(connection: Connection, revision: str = HEAD) -> None:
    """Run the migrations up to `revision` on `connection`, inside the transaction it is in.

    The caller owns that transaction and whatever lock keeps two processes from migrating at
    once (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL); see migrations/env.py.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


# Control state (v0006): see strangler.control.state.
overrides_t = Table(
    "control_overrides",
    _metadata,
    Column("unit", StoredText, primary_key=True),
    Column("stage", StoredText),
    Column("weight_bp", Integer),
    Column("status", StoredText, nullable=False),
    Column("step_started_at", Float, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("actor", StoredText, nullable=False),
    Column("reason", StoredText, nullable=False),
)
audit_t = Table(
    "control_audit",
    _metadata,
    Column("version", BigInteger, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("actor", StoredText, nullable=False),
    Column("action", StoredText, nullable=False),
    Column("unit", StoredText, nullable=False),
    Column("before", StoredText, nullable=False),
    Column("after", StoredText, nullable=False),
    Column("reason", StoredText, nullable=False),
    Column("evidence", StoredText),
)
windows_t = Table(
    "rollout_windows",
    _metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("route", StoredText, nullable=False),
    Column("side", StoredText, nullable=False),
    Column("slot", BigInteger, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("statuses", StoredText, nullable=False),
    Column("latency", StoredText, nullable=False),
)
verdicts_t = Table(
    "rollout_verdicts",
    _metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("unit", StoredText, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("weight_bp", Integer, nullable=False),
    Column("outcome", StoredText, nullable=False),
    Column("action", StoredText, nullable=False),
    Column("verdict", StoredText, nullable=False),
)
leases_t = Table(
    "leases",
    _metadata,
    Column("name", StoredText, primary_key=True),
    Column("holder", StoredText, nullable=False),
    Column("expires_at", Float, nullable=False),
)
tokens_t = Table(
    "admin_tokens",
    _metadata,
    Column("id", StoredText, primary_key=True),
    Column("name", StoredText, nullable=False),
    Column("scope", StoredText, nullable=False),
    Column("hash", StoredText, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("created_by", StoredText, nullable=False),
    Column("last_used_at", Float),
    Column("revoked_at", Float),
)
sessions_t = Table(
    "admin_sessions",
    _metadata,
    Column("hash", StoredText, primary_key=True),
    Column("subject", StoredText, nullable=False),
    Column("scope", StoredText, nullable=False),
    Column("csrf_hash", StoredText, nullable=False),
    Column("token_id", StoredText),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
# SLO series and evaluations (v0007): see strangler.control.state.SloStore.
slo_seconds_t = Table(
    "slo_seconds",
    _metadata,
    Column("slo", StoredText, primary_key=True),
    Column("second", BigInteger, primary_key=True),
    Column("good", BigInteger, nullable=False),
    Column("bad", BigInteger, nullable=False),
)
slo_minutes_t = Table(
    "slo_minutes",
    _metadata,
    Column("slo", StoredText, primary_key=True),
    Column("minute", BigInteger, primary_key=True),
    Column("good", BigInteger, nullable=False),
    Column("bad", BigInteger, nullable=False),
)
slo_states_t = Table(
    "slo_states",
    _metadata,
    Column("slo", StoredText, primary_key=True),
    Column("evaluated_at", Float, nullable=False),
    Column("state", StoredText, nullable=False),
)
# Data parity runs (v0008): see strangler.control.data_runs.DataStore.
data_runs_t = Table(
    "data_runs",
    _metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("table_name", StoredText, nullable=False),
    Column("finished_at", Float, nullable=False),
    Column("seconds", Float, nullable=False),
    Column("rows_legacy", BigInteger, nullable=False),
    Column("rows_new", BigInteger, nullable=False),
    Column("missing_in_new", BigInteger, nullable=False),
    Column("missing_in_legacy", BigInteger, nullable=False),
    Column("different", BigInteger, nullable=False),
    Column("complete", Integer, nullable=False),
)
# Drills (v0009): see strangler.control.state.Drill.
drills_t = Table(
    "control_drills",
    _metadata,
    Column("unit", StoredText, primary_key=True),
    Column("fault", StoredText, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("actor", StoredText, nullable=False),
    Column("reason", StoredText, nullable=False),
)


# Route series (v0010): see strangler.control.store.SeriesBucket.
series_t = Table(
    "route_series",
    _metadata,
    Column("route", StoredText, primary_key=True),
    Column("width_s", Integer, primary_key=True),
    Column("slot", BigInteger, primary_key=True),  # unix time // width_s
    Column("side", StoredText, primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    # A LatencyHistogram's to_json, its counts added by each upsert (the adapter's `_json_add`).
    Column("latency", StoredText, nullable=False),
)


# Data watch (v0011): see strangler.control.data_watch.DataWatchStore.
watch_positions_t = Table(
    "data_watch_positions",
    _metadata,
    Column("stream", StoredText, primary_key=True),
    Column("position", StoredText, nullable=False),
    Column("updated_at", Float, nullable=False),
)
watch_tables_t = Table(
    "data_watch_tables",
    _metadata,
    Column("table_name", StoredText, primary_key=True),
    Column("checked", BigInteger, nullable=False),
    Column("lag_s", Float, nullable=True),
    Column("last_checked_at", Float, nullable=True),
    Column("untracked", BigInteger, nullable=False),
    Column("untracked_at", Float, nullable=True),
)
drift_t = Table(
    "data_drift",
    _metadata,
    Column("table_name", StoredText, primary_key=True),
    Column("drift_key", StoredText, primary_key=True),
    Column("kind", StoredText, nullable=False),
    Column("columns", StoredText, nullable=False),  # JSON: {column: [legacy, new]}
    Column("first_seen", Float, nullable=False),
    Column("last_checked", Float, nullable=False),
    Column("resolved_at", Float, nullable=True),
)
