"""job_keys: previous_job_id, the newest job before the upsert that last moved the key on

Issue 22, point 1. PostgreSQL 15 cannot return a row's old values from `INSERT … ON
CONFLICT DO UPDATE`; the intake's one-statement batch (inbox/postgres_writer.py) keeps the
old newest job in this column as it moves the key on, and reads it back from RETURNING to
link the batch's first job of the key. Nothing else reads it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job_keys") as batch:
        batch.add_column(
            sa.Column("previous_job_id", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("job_keys") as batch:
        batch.drop_column("previous_job_id")
