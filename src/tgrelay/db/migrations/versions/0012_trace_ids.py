"""updates, jobs, events: trace_id, the trace an update starts and everything it causes carries

Each update gets a random W3C trace id when it is stored; its process_update job, the jobs
and events its processing writes, and their deliveries carry it on (tgrelay/tracing.py).
Nullable: rows written before this revision, and work no update caused, have none.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("updates", "jobs", "events")


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("trace_id", sa.String(length=32), nullable=True))


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("trace_id")
