"""Route series: answers, 5xx and a latency histogram per route, side and bucket, at three
widths (1 min, 15 min, 2 h), for the admin API's charts.

Revision ID: v0010
Revises: v0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0010"
down_revision: str | None = "v0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "route_series",
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("width_s", sa.Integer, nullable=False),
        sa.Column("slot", sa.BigInteger, nullable=False),
        sa.Column("side", sa.Text, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency", sa.Text, nullable=False),
        # A route's read is a range of this key; the all-routes read and the prune use the index.
        sa.PrimaryKeyConstraint("route", "width_s", "slot", "side"),
    )
    op.create_index("route_series_by_slot", "route_series", ["width_s", "slot"])


def downgrade() -> None:
    op.drop_index("route_series_by_slot", "route_series")
    op.drop_table("route_series")
