"""SLOs: good and bad answers per SLO by second (the last hour) and by minute (the SLO's
window), and each SLO's latest evaluation.

Revision ID: v0007
Revises: v0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0007"
down_revision: str | None = "v0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Primary keys lead with the SLO: every read and prune is one SLO's range of buckets.
    op.create_table(
        "slo_seconds",
        sa.Column("slo", sa.Text, primary_key=True),
        sa.Column("second", sa.BigInteger, primary_key=True),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("bad", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "slo_minutes",
        sa.Column("slo", sa.Text, primary_key=True),
        sa.Column("minute", sa.BigInteger, primary_key=True),
        sa.Column("good", sa.BigInteger, nullable=False),
        sa.Column("bad", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "slo_states",
        sa.Column("slo", sa.Text, primary_key=True),
        sa.Column("evaluated_at", sa.Float, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("slo_states")
    op.drop_table("slo_minutes")
    op.drop_table("slo_seconds")
