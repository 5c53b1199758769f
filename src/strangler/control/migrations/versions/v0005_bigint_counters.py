"""Shadow store: 64-bit counters on PostgreSQL.

PostgreSQL's INTEGER is 32 bits: a route mirrored 1,000 times a second passes 2**31 in 25 days,
and the example ids (SERIAL) run out the same way. SQLite's INTEGER is already 64 bits, so there
this revision changes nothing. The per-minute traffic counts stay INTEGER everywhere.

Revision ID: v0005
Revises: v0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "v0005"
down_revision: str | None = "v0004"
branch_labels: str | None = None
depends_on: str | None = None

_COUNTERS = {
    "shadow_routes": ("mirrored", "compared", "equal", "different", "noise_samples"),
    "shadow_dropped": ("count",),
    "shadow_paths": ("count", "noise_count"),
    "shadow_signatures": ("count",),
    "shadow_examples": ("id",),
}


def _is_postgresql() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    if not _is_postgresql():
        return
    for table, columns in _COUNTERS.items():
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=sa.BigInteger,
                existing_type=sa.Integer,
                existing_nullable=False,
            )
    # v0001 made the id a SERIAL, whose sequence is AS integer: widen it with the column.
    op.execute("ALTER SEQUENCE shadow_examples_id_seq AS bigint")


def downgrade() -> None:
    if not _is_postgresql():
        return
    op.execute("ALTER SEQUENCE shadow_examples_id_seq AS integer")
    for table, columns in _COUNTERS.items():
        for column in columns:
            op.alter_column(
                table,
                column,
                type_=sa.Integer,
                existing_type=sa.BigInteger,
                existing_nullable=False,
            )
