"""Shadow store: per-route counters, drop reasons, differing paths, capped examples.

Revision ID: v0001
Revises:
Create Date: 2026-05-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "shadow_routes",
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("mirrored", sa.Integer, nullable=False, server_default="0"),
        sa.Column("compared", sa.Integer, nullable=False, server_default="0"),
        sa.Column("equal", sa.Integer, nullable=False, server_default="0"),
        sa.Column("different", sa.Integer, nullable=False, server_default="0"),
        sa.Column("noise_samples", sa.Integer, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "shadow_dropped",
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("reason", sa.Text, primary_key=True),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "shadow_paths",
        sa.Column("route", sa.Text, primary_key=True),
        sa.Column("rule_path", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("noise_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("review", sa.Text, nullable=True),
        sa.Column("review_reason", sa.Text, nullable=True),
        sa.Column("reviewed_by", sa.Text, nullable=True),
        sa.Column("reviewed_at", sa.Float, nullable=True),
    )
    # prune() scans by age; paths() ranks by count within a route.
    op.create_index("ix_shadow_paths_last_seen", "shadow_paths", ["last_seen"])
    op.create_index("ix_shadow_paths_route_count", "shadow_paths", ["route", "count"])
    op.create_table(
        "shadow_examples",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("route", sa.Text, nullable=False),
        sa.Column("rule_path", sa.Text, nullable=False),
        sa.Column("seen_at", sa.Float, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_shadow_examples_path_seen", "shadow_examples", ["route", "rule_path", "seen_at"]
    )


def downgrade() -> None:
    op.drop_table("shadow_examples")
    op.drop_table("shadow_paths")
    op.drop_table("shadow_dropped")
    op.drop_table("shadow_routes")
