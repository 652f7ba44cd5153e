"""bots.connected_since: where the current workspace's hold on a bot began

A workspace that connects a bot another workspace had sees only updates received since its
own connect. Connections of bots that are disconnected or held by another workspace are
suspended here, as disconnecting now does: before, they stayed active and alerts still went
out through the stored token.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("connected_since", tgrelay.db.types.Timestamp(timezone=True), nullable=True)
        )
    # Which workspace held a bot before is not recorded: its current holder keeps it all.
    op.execute("UPDATE bots SET connected_since = created_at WHERE connected_since IS NULL")
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.alter_column(
            "connected_since",
            existing_type=tgrelay.db.types.Timestamp(timezone=True),
            nullable=False,
        )
    op.execute(
        "UPDATE group_connections SET status = 'suspended', status_reason = 'bot disconnected'"
        " WHERE status = 'active' AND NOT EXISTS (SELECT 1 FROM bots"
        " WHERE bots.id = group_connections.bot_id"
        " AND bots.workspace_id = group_connections.workspace_id"
        " AND bots.status <> 'disconnected')"
    )


def downgrade() -> None:
    op.execute(
        "UPDATE group_connections SET status = 'active', status_reason = NULL"
        " WHERE status = 'suspended'"
    )
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.drop_column("connected_since")
