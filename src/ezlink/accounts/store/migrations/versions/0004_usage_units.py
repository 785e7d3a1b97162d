"""Usage rows of requests priced by units that are not tokens: images, seconds
of audio in, characters of speech out.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("unit", sa.String(32)))
        batch.add_column(sa.Column("quantity", sa.Float, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_column("quantity")
        batch.drop_column("unit")
