"""Traffic: answers per route and minute, by side, for `strangler progress`.

Revision ID: v0004
Revises: v0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0004"
down_revision: str | None = "v0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "traffic",
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("minute", sa.Integer, primary_key=True),
        sa.Column("legacy", sa.Integer, nullable=False),
        sa.Column("new", sa.Integer, nullable=False),
        sa.Column("legacy_errors", sa.Integer, nullable=False),
        sa.Column("new_errors", sa.Integer, nullable=False),
    )
    # Reads are "everything since minute M", across routes.
    op.create_index("traffic_by_minute", "traffic", ["minute"])


def downgrade() -> None:
    op.drop_index("traffic_by_minute", "traffic")
    op.drop_table("traffic")
