"""endpoints: earlier_secrets, so every secret rotated within the overlap keeps signing

A second rotate-secret inside the overlap used to overwrite the previous secret, which then
stopped signing at once although its receivers had been promised the whole overlap.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("earlier_secrets", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("endpoints", schema=None) as batch_op:
        batch_op.drop_column("earlier_secrets")
