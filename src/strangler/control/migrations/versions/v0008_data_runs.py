"""Data parity: one row per table and `data diff` run (its counts and whether it finished).

Revision ID: v0008
Revises: v0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0008"
down_revision: str | None = "v0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "data_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("table_name", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("rows_legacy", sa.BigInteger, nullable=False),
        sa.Column("rows_new", sa.BigInteger, nullable=False),
        sa.Column("missing_in_new", sa.BigInteger, nullable=False),
        sa.Column("missing_in_legacy", sa.BigInteger, nullable=False),
        sa.Column("different", sa.BigInteger, nullable=False),
        # 0 or 1: a run stopped by a cap holds lower bounds.
        sa.Column("complete", sa.Integer, nullable=False),
    )
    # Every read is one table's newest runs.
    op.create_index("data_runs_by_table", "data_runs", ["table_name", "finished_at"])


def downgrade() -> None:
    op.drop_index("data_runs_by_table", "data_runs")
    op.drop_table("data_runs")
