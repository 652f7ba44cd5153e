"""support: the desk bots' Telegram Business connections, and a ticket's business chat

Issue 20, point 4. A business connection is one account's link to one bot (its id is
Telegram's business_connection_id); a ticket whose business_connection_id is set lives in
that account's chat with the customer, not in the bot's own private chat.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06 14:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "support_business_connections",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("can_reply", sa.Boolean(), nullable=False),
        sa.Column("is_enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("connected_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_business_connections_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_business_connections")),
    )
    op.create_index(
        op.f("ix_support_business_connections_bot_id"),
        "support_business_connections",
        ["bot_id"],
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("business_connection_id", sa.String(length=128), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_column("business_connection_id")
    op.drop_index(
        op.f("ix_support_business_connections_bot_id"),
        table_name="support_business_connections",
    )
    op.drop_table("support_business_connections")
