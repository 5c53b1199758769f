"""Shadow store: comparisons whose only differences were noise (learned or reviewed).

Revision ID: v0002
Revises: v0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0002"
down_revision: str | None = "v0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("shadow_routes") as batch:
        batch.add_column(
            sa.Column("equal_but_noise", sa.Integer, nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("shadow_routes") as batch:
        batch.drop_column("equal_but_noise")
