"""jobs: drop ix_jobs_ordering_key_id, which no query uses and every enqueue paid for

Claims find each key's head among the unfinished jobs, reached through ix_jobs_state_run_at
(queue.store steers SQLite away from this index on purpose). Meanwhile every new job added
an entry at its chat's place in the index: on bench/intake.py, with updates from 64 chats,
that dirtied a page per job in each commit and took the intake's SQLite writer from 23 to
43 µs of CPU per update.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21 19:05:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_ordering_key_id")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_ordering_key_id", ["ordering_key", "id"], unique=False)
