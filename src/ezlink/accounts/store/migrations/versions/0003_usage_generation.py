"""Usage rows of text generation: family, completion/cached/reasoning tokens,
who counted them, stream, time to first byte, finish reason.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(
            sa.Column("family", sa.String(32), nullable=False, server_default="embeddings")
        )
        for name in ("completion_tokens", "cached_tokens", "reasoning_tokens"):
            batch.add_column(sa.Column(name, sa.Integer, nullable=False, server_default="0"))
        for name in ("counted_by_ezlink", "stream"):
            batch.add_column(
                sa.Column(name, sa.Boolean, nullable=False, server_default=sa.false())
            )
        batch.add_column(sa.Column("first_byte_ms", sa.Float))
        batch.add_column(sa.Column("finish_reason", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        for name in (
            "finish_reason",
            "first_byte_ms",
            "stream",
            "counted_by_ezlink",
            "reasoning_tokens",
            "cached_tokens",
            "completion_tokens",
            "family",
        ):
            batch.drop_column(name)
