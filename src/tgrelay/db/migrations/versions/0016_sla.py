"""support SLAs: a policy per desk, breaches, fired escalation steps, timers

Issue 20: due times come from the pure calculator (support.sla); these rows make each
breach and each escalation step happen once, across restarts.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 12:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "support_sla_policies",
        sa.Column("desk_id", sa.String(length=40), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("policy", sa.Text(), nullable=False),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["desk_id"],
            ["support_desks.id"],
            name=op.f("fk_support_sla_policies_desk_id_support_desks"),
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_sla_policies_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("desk_id", name=op.f("pk_support_sla_policies")),
    )
    op.create_table(
        "ticket_sla_breaches",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(length=40), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("due_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("breached_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("recorded_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_sla_breaches")),
        sa.UniqueConstraint(
            "ticket_id",
            "metric",
            "due_at",
            name=op.f("uq_ticket_sla_breaches_ticket_id_metric_due_at"),
        ),
    )
    op.create_table(
        "ticket_sla_escalations",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("ticket_id", sa.String(length=40), nullable=False),
        sa.Column("metric", sa.String(length=32), nullable=False),
        sa.Column("due_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("fired_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_sla_escalations")),
        sa.UniqueConstraint(
            "ticket_id",
            "metric",
            "due_at",
            "step",
            name=op.f("uq_ticket_sla_escalations_ticket_id_metric_due_at_step"),
        ),
    )
    op.create_table(
        "ticket_sla_timers",
        sa.Column("ticket_id", sa.String(length=40), nullable=False),
        sa.Column("wake_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_ticket_sla_timers")),
    )


def downgrade() -> None:
    op.drop_table("ticket_sla_timers")
    op.drop_table("ticket_sla_escalations")
    op.drop_table("ticket_sla_breaches")
    op.drop_table("support_sla_policies")
