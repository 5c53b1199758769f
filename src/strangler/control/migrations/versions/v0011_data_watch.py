"""Data watch: each change stream's confirmed position, each table's watch counters, and the keys
found drifted (still different on new after `max_lag_s`).

Revision ID: v0011
Revises: v0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0011"
down_revision: str | None = "v0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "data_watch_positions",
        sa.Column("stream", sa.Text, primary_key=True),
        sa.Column("position", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "data_watch_tables",
        sa.Column("table_name", sa.Text, primary_key=True),
        sa.Column("checked", sa.BigInteger, nullable=False),
        sa.Column("lag_s", sa.Float, nullable=True),
        sa.Column("last_checked_at", sa.Float, nullable=True),
        sa.Column("untracked", sa.BigInteger, nullable=False),
        sa.Column("untracked_at", sa.Float, nullable=True),
    )
    op.create_table(
        "data_drift",
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("drift_key", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_checked", sa.Float, nullable=False),
        sa.Column("resolved_at", sa.Float, nullable=True),
        sa.PrimaryKeyConstraint("table_name", "drift_key"),
    )


def downgrade() -> None:
    op.drop_table("data_drift")
    op.drop_table("data_watch_tables")
    op.drop_table("data_watch_positions")
