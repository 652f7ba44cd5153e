"""audit_log: count and aggregate_key, so rejected webhook requests are tallied, not listed

Every forged webhook request used to write its own audit row: 5,480 requests/s grew the
database by 7.3 MB in 10 s. The intake now writes one row per bot, reason, source address
and minute, and adds to its count on each flush (the unique aggregate_key finds the row).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("count", sa.Integer(), server_default=sa.text("1"), nullable=False)
        )
        batch_op.add_column(sa.Column("aggregate_key", sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_audit_log_aggregate_key"), ["aggregate_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_audit_log_aggregate_key"), type_="unique")
        batch_op.drop_column("aggregate_key")
        batch_op.drop_column("count")
