"""support desk: desks, agents, tickets, their messages, edits and changes, snippets

Issue 19: tickets from private chats with a desk's bot, answered in forum topics.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 11:19:05.509745
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ticket_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ticket_id", sa.String(length=40), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("previous", sa.String(length=64), nullable=True),
        sa.Column("value", sa.String(length=64), nullable=True),
        sa.Column("changed_by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_changes")),
    )
    with op.batch_alter_table("ticket_changes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_changes_ticket_id"), ["ticket_id"], unique=False
        )

    op.create_table(
        "ticket_message_edits",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("written_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("replaced_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_message_edits")),
    )
    with op.batch_alter_table("ticket_message_edits", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ticket_message_edits_message_id"), ["message_id"], unique=False
        )

    op.create_table(
        "ticket_messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("ticket_id", sa.String(length=40), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("author_id", sa.BigInteger(), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("customer_message_id", sa.BigInteger(), nullable=True),
        sa.Column("topic_message_id", sa.BigInteger(), nullable=True),
        sa.Column("relay_status", sa.String(length=16), nullable=False),
        sa.Column("relay_error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("edited_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_messages")),
        sa.UniqueConstraint(
            "ticket_id",
            "idempotency_key",
            name=op.f("uq_ticket_messages_ticket_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.create_index(
            "ix_ticket_messages_ticket_id_customer_message_id",
            ["ticket_id", "customer_message_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_ticket_messages_ticket_id_topic_message_id",
            ["ticket_id", "topic_message_id"],
            unique=False,
        )

    op.create_table(
        "support_agents",
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("telegram_user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=True),
        sa.Column("external_id", sa.String(length=200), nullable=True),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("last_assigned_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_agents_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("workspace_id", "telegram_user_id", name=op.f("pk_support_agents")),
    )
    op.create_table(
        "support_counters",
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("last_number", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_counters_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("workspace_id", name=op.f("pk_support_counters")),
    )
    op.create_table(
        "support_desks",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("connection_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("assignment", sa.String(length=16), nullable=False),
        sa.Column("reopen_window_seconds", sa.Integer(), nullable=False),
        sa.Column("greeting_text", sa.Text(), nullable=True),
        sa.Column("closing_text", sa.Text(), nullable=True),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("deleted_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_desks_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_desks")),
    )
    with op.batch_alter_table("support_desks", schema=None) as batch_op:
        batch_op.create_index("ix_support_desks_bot_id", ["bot_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_support_desks_workspace_id"), ["workspace_id"], unique=False
        )

    op.create_table(
        "support_snippets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_snippets_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_snippets")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_support_snippets_workspace_id_name")
        ),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("desk_id", sa.String(length=40), nullable=False),
        sa.Column("bot_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("customer", sa.Text(), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("assignee_id", sa.BigInteger(), nullable=True),
        sa.Column("topic_chat_id", sa.BigInteger(), nullable=False),
        sa.Column("topic_thread_id", sa.BigInteger(), nullable=True),
        sa.Column("header_message_id", sa.BigInteger(), nullable=True),
        sa.Column("header_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("resolution_note", sa.Text(), nullable=True),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("first_response_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.Column("resolved_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.Column("closed_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_tickets_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("workspace_id", "number", name=op.f("uq_tickets_workspace_id_number")),
    )
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tickets_bot_id_customer_chat_id_created_at",
            ["bot_id", "customer_chat_id", "created_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tickets_topic_chat_id_topic_thread_id",
            ["topic_chat_id", "topic_thread_id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tickets_workspace_id_status_created_at",
            ["workspace_id", "status", "created_at"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index("ix_tickets_workspace_id_status_created_at")
        batch_op.drop_index("ix_tickets_topic_chat_id_topic_thread_id")
        batch_op.drop_index("ix_tickets_bot_id_customer_chat_id_created_at")

    op.drop_table("tickets")
    op.drop_table("support_snippets")
    with op.batch_alter_table("support_desks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_support_desks_workspace_id"))
        batch_op.drop_index("ix_support_desks_bot_id")

    op.drop_table("support_desks")
    op.drop_table("support_counters")
    op.drop_table("support_agents")
    with op.batch_alter_table("ticket_messages", schema=None) as batch_op:
        batch_op.drop_index("ix_ticket_messages_ticket_id_topic_message_id")
        batch_op.drop_index("ix_ticket_messages_ticket_id_customer_message_id")

    op.drop_table("ticket_messages")
    with op.batch_alter_table("ticket_message_edits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_message_edits_message_id"))

    op.drop_table("ticket_message_edits")
    with op.batch_alter_table("ticket_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_changes_ticket_id"))

    op.drop_table("ticket_changes")
