"""updates: disposition, message_key (unique per bot where set); chat_windows

Inbound abuse limits: processing marks updates it keeps from the domain handlers
(throttled, duplicate), remembers which message each update carried so a copy under a new
update_id is recognised, and keeps each chat's current limit window.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = "message_key IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("updates", schema=None) as batch_op:
        batch_op.add_column(sa.Column("disposition", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("message_key", sa.String(length=64), nullable=True))
        batch_op.create_index(
            "ix_updates_bot_id_message_key",
            ["bot_id", "message_key"],
            unique=True,
            sqlite_where=sa.text(KEYED),
            postgresql_where=sa.text(KEYED),
        )
    op.create_table(
        "chat_windows",
        sa.Column("bot_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("started_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("announced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("bot_id", "chat_id", name=op.f("pk_chat_windows")),
    )


def downgrade() -> None:
    op.drop_table("chat_windows")
    with op.batch_alter_table("updates", schema=None) as batch_op:
        batch_op.drop_index("ix_updates_bot_id_message_key")
        batch_op.drop_column("message_key")
        batch_op.drop_column("disposition")
