"""jobs: queue, after_id and blocked, ix_jobs_ready, ix_jobs_after_id; job_keys

Claims used to find each ordering key's head by grouping every unfinished job, so their
cost grew with the backlog. Each keyed job now names its predecessor in the key (after_id),
waits outside the ready index while that one runs (blocked), and is freed when it ends
(see queue/chains.py). Unfinished jobs present at upgrade are linked here, oldest first.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

READY = "state = 'pending' AND blocked = 0"
LINKED = "after_id IS NOT NULL"
# The kinds the worker's lanes served apart before queues had names.
QUEUES_OF_KINDS = {"deliver_event": "webhooks", "process_update": "updates"}


def upgrade() -> None:
    op.create_table(
        "job_keys",
        sa.Column("ordering_key", sa.String(length=128), nullable=False),
        sa.Column("last_job_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("ordering_key", name=op.f("pk_job_keys")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "queue", sa.String(length=32), server_default=sa.text("'default'"), nullable=False
            )
        )
        batch_op.add_column(sa.Column("after_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column("blocked", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.BigInteger()),
        sa.column("kind", sa.String()),
        sa.column("queue", sa.String()),
        sa.column("ordering_key", sa.String()),
        sa.column("after_id", sa.BigInteger()),
        sa.column("state", sa.String()),
    )
    for kind, queue in QUEUES_OF_KINDS.items():
        op.execute(jobs.update().where(jobs.c.kind == kind).values(queue=queue))
    # Each unfinished keyed job follows the previous unfinished one of its key.
    previous = jobs.alias("previous")
    unfinished = ("pending", "running")
    op.execute(
        jobs.update()
        .where(jobs.c.state.in_(unfinished), jobs.c.ordering_key.is_not(None))
        .values(
            after_id=sa.select(sa.func.max(previous.c.id))
            .where(
                previous.c.ordering_key == jobs.c.ordering_key,
                previous.c.id < jobs.c.id,
                previous.c.state.in_(unfinished),
            )
            .scalar_subquery()
        )
    )
    op.execute(
        "INSERT INTO job_keys (ordering_key, last_job_id) "
        "SELECT ordering_key, max(id) FROM jobs WHERE ordering_key IS NOT NULL "
        "GROUP BY ordering_key"
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_ready",
            ["queue", "run_at", "id"],
            unique=False,
            sqlite_where=sa.text(READY),
            postgresql_where=sa.text(READY),
        )
        batch_op.create_index(
            "ix_jobs_after_id",
            ["after_id"],
            unique=False,
            sqlite_where=sa.text(LINKED),
            postgresql_where=sa.text(LINKED),
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_after_id")
        batch_op.drop_index("ix_jobs_ready")
        batch_op.drop_column("blocked")
        batch_op.drop_column("after_id")
        batch_op.drop_column("queue")
    op.drop_table("job_keys")
