"""conversations: flows (versioned documents), conversations, their transitions

Issue 21: a flow version is stored once and never changed; a conversation keeps the pure
engine's state as JSON beside the columns queries need; one live conversation per (bot,
chat, user) is a partial unique index over conversations not ended.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = "ended_at IS NULL"


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("document", sa.Text(), nullable=False),
        sa.Column("trigger_kind", sa.String(length=16), nullable=False),
        sa.Column("trigger_value", sa.String(length=256), nullable=True),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("disabled_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_flows_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flows")),
        sa.UniqueConstraint(
            "workspace_id", "name", "version", name=op.f("uq_flows_workspace_id_name_version")
        ),
    )
    op.create_index("ix_flows_trigger", "flows", ["workspace_id", "trigger_kind", "trigger_value"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("flow_id", sa.String(length=40), nullable=False),
        sa.Column("flow_name", sa.String(length=100), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("step_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("started_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("ended_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_conversations_workspace_id_workspaces"),
        ),
        sa.ForeignKeyConstraint(
            ["flow_id"], ["flows.id"], name=op.f("fk_conversations_flow_id_flows")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
    )
    op.create_index(
        "ux_conversations_live_participant",
        "conversations",
        ["bot_id", "chat_id", "user_id"],
        unique=True,
        sqlite_where=sa.text(LIVE),
        postgresql_where=sa.text(LIVE),
    )
    op.create_index(
        "ix_conversations_workspace_started", "conversations", ["workspace_id", "started_at"]
    )
    op.create_table(
        "conversation_transitions",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("conversation_id", sa.String(length=40), nullable=False),
        sa.Column("from_step", sa.String(length=64), nullable=True),
        sa.Column("to_step", sa.String(length=64), nullable=True),
        sa.Column("input_summary", sa.Text(), nullable=True),
        sa.Column("at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_transitions_conversation_id_conversations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_transitions")),
    )
    op.create_index(
        op.f("ix_conversation_transitions_conversation_id"),
        "conversation_transitions",
        ["conversation_id"],
    )


def downgrade() -> None:
    op.drop_table("conversation_transitions")
    op.drop_index("ix_conversations_workspace_started", table_name="conversations")
    op.drop_index("ux_conversations_live_participant", table_name="conversations")
    op.drop_table("conversations")
    op.drop_index("ix_flows_trigger", table_name="flows")
    op.drop_table("flows")
