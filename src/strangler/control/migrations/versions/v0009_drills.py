"""Drills: one runtime fault per rollout unit, with its expiry (`strangler drill`).

Revision ID: v0009
Revises: v0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0009"
down_revision: str | None = "v0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "control_drills",
        sa.Column("unit", sa.Text, primary_key=True),
        # The fault as `faults:` spells it in the YAML (JSON).
        sa.Column("fault", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("control_drills")
