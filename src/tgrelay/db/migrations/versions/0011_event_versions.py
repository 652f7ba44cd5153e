"""endpoints.event_versions and deliveries.body: endpoints may pin an event type's version

An endpoint that pinned an older schema version of a type receives its events rendered
down to it; the rendered body is kept on the delivery so every attempt sends the same bytes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_versions", sa.Text(), nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("body")
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("event_versions")
