"""A unique event id on every usage event, so a retried flush counts nothing twice.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("event_id", sa.String(32)))
    # Rows written before event ids get one from their own primary key; the
    # prefix keeps them apart from every uuid4 hex.
    op.execute("UPDATE usage_events SET event_id = 'legacy-' || CAST(id AS VARCHAR(20))")
    with op.batch_alter_table("usage_events") as batch:
        batch.alter_column("event_id", existing_type=sa.String(32), nullable=False)
        batch.create_index("ix_usage_events_event_id", ["event_id"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_index("ix_usage_events_event_id")
        batch.drop_column("event_id")
