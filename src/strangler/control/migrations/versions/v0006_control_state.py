"""Control state: runtime overrides on top of the YAML, the audit log (whose ids are the state's
versions), rollout metric windows and verdicts, leases, and admin tokens and sessions.

Revision ID: v0006
Revises: v0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0006"
down_revision: str | None = "v0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # One row per rollout unit (a canary group; a route's own name when it has none).
    op.create_table(
        "control_overrides",
        sa.Column("unit", sa.Text, primary_key=True),
        sa.Column("stage", sa.Text),
        sa.Column("weight_bp", sa.Integer),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("step_started_at", sa.Float, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    # Every change, by a person or the analyzer; its id is the state version it produced.
    op.create_table(
        "control_audit",
        sa.Column("version", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("before", sa.Text, nullable=False),
        sa.Column("after", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("evidence", sa.Text),
    )
    op.create_index("control_audit_by_unit", "control_audit", ["unit", "version"])
    # Each worker's flush of one route's side for one second: summed when read.
    op.create_table(
        "rollout_windows",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("slot", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("statuses", sa.Text, nullable=False),
        sa.Column("latency", sa.Text, nullable=False),
    )
    op.create_index("rollout_windows_by_slot", "rollout_windows", ["slot", "route"])
    op.create_table(
        "rollout_verdicts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("weight_bp", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("verdict", sa.Text, nullable=False),
    )
    op.create_index("rollout_verdicts_by_unit", "rollout_verdicts", ["unit", "ended_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("holder", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_table(
        "admin_tokens",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("last_used_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_table(
        "admin_sessions",
        sa.Column("hash", sa.Text, primary_key=True),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("csrf_hash", sa.Text, nullable=False),
        # The token a session was opened with: revoking it ends the session too.
        sa.Column("token_id", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )
    op.create_index("admin_sessions_by_expiry", "admin_sessions", ["expires_at"])


def downgrade() -> None:
    for table in (
        "admin_sessions",
        "admin_tokens",
        "leases",
        "rollout_verdicts",
        "rollout_windows",
        "control_audit",
        "control_overrides",
    ):
        op.drop_table(table)
