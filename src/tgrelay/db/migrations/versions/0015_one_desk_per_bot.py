"""support_desks: one live desk per bot, enforced by a partial unique index on bot_id

Checking for a bot's desk inside the create transaction is not enough on PostgreSQL: two
creates can both see none and both insert. The index over live desks (deleted_at IS NULL)
refuses the second; it also serves desk_of_bot, which only reads live desks, so it
replaces the plain ix_support_desks_bot_id.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LIVE = "deleted_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("support_desks", schema=None) as batch_op:
        batch_op.drop_index("ix_support_desks_bot_id")
        batch_op.create_index(
            "ux_support_desks_live_bot_id",
            ["bot_id"],
            unique=True,
            sqlite_where=sa.text(LIVE),
            postgresql_where=sa.text(LIVE),
        )


def downgrade() -> None:
    with op.batch_alter_table("support_desks", schema=None) as batch_op:
        batch_op.drop_index("ux_support_desks_live_bot_id")
        batch_op.create_index("ix_support_desks_bot_id", ["bot_id"], unique=False)
