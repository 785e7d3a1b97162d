"""Credits: teams with balances, holds, an append-only ledger, redemption
codes; keys get a team, a spending cap and held amounts; usage rows a cost.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

EventId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _money(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0")


def upgrade() -> None:
    op.create_table(
        "teams",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        _money("balance"),
        _money("held"),
        sa.Column("daily_budget", sa.BigInteger),
        sa.Column("monthly_budget", sa.BigInteger),
        sa.Column("spend_day", sa.String(10)),
        _money("day_spent"),
        sa.Column("spend_month", sa.String(7)),
        _money("month_spent"),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("team_id", sa.String(32)),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_holds_expires_at", "holds", ["expires_at"])
    op.create_table(
        "ledger",
        sa.Column("id", EventId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(32), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("team_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("key_id", sa.String(32)),
        sa.Column("hold_id", sa.String(32)),
        sa.Column("model", sa.String(200)),
        sa.Column("note", sa.String(500)),
    )
    op.create_index("ix_ledger_created_at", "ledger", ["created_at"])
    op.create_index("ix_ledger_team_id", "ledger", ["team_id"])
    op.create_table(
        "redemption_codes",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("code_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("value", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redeemed_at", sa.DateTime(timezone=True)),
        sa.Column("team_id", sa.String(32)),
        sa.Column("key_id", sa.String(32)),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("team_id", sa.String(32)))
        batch.add_column(sa.Column("max_spend", sa.BigInteger))
        for name in ("spent", "held_spend", "held_tokens"):
            batch.add_column(_money(name))
        batch.create_index("ix_api_keys_team_id", ["team_id"])
    with op.batch_alter_table("usage_events") as batch:
        batch.add_column(sa.Column("team_id", sa.String(32)))
        batch.add_column(_money("cost"))
        batch.create_index("ix_usage_events_team_id", ["team_id"])


def downgrade() -> None:
    with op.batch_alter_table("usage_events") as batch:
        batch.drop_index("ix_usage_events_team_id")
        batch.drop_column("cost")
        batch.drop_column("team_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_team_id")
        for name in ("held_tokens", "held_spend", "spent", "max_spend", "team_id"):
            batch.drop_column(name)
    for table in ("redemption_codes", "ledger", "holds", "teams"):
        op.drop_table(table)
