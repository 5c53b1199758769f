"""Shadow store: difference signatures, so the parity follows reviews and learned noise.

The `equal_but_noise` column (v0002) froze each worker's opinion at the time of the comparison;
from here on that figure is computed when read, from the signatures, against today's reviews and
store-wide learned noise. Comparisons stored before this revision have no signature and stay
counted as different (the safe side).

Revision ID: v0003
Revises: v0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0003"
down_revision: str | None = "v0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "shadow_signatures",
        sa.Column("route", sa.Text, primary_key=True),
        # A JSON array of the sorted rule paths one comparison differed at.
        sa.Column("signature", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
    )
    with op.batch_alter_table("shadow_routes") as batch:
        batch.drop_column("equal_but_noise")


def downgrade() -> None:
    with op.batch_alter_table("shadow_routes") as batch:
        batch.add_column(
            sa.Column("equal_but_noise", sa.Integer, nullable=False, server_default="0")
        )
    op.drop_table("shadow_signatures")
