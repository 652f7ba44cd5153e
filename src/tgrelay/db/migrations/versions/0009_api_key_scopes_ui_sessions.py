"""api_keys: name, scope, last_used_at; ui_sessions

API keys get a name and a scope (admin | read) and record when they were last used; keys
that exist at upgrade become admin keys named "first key". The web UI keeps server-side
sessions instead of the raw key in its cookie.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("scope", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("last_used_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True)
        )
    keys = sa.table("api_keys", sa.column("name", sa.String()), sa.column("scope", sa.String()))
    op.execute(keys.update().values(name="first key", scope="admin"))
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.alter_column("name", existing_type=sa.String(length=200), nullable=False)
        batch_op.alter_column("scope", existing_type=sa.String(length=16), nullable=False)
    op.create_table(
        "ui_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("api_key_id", sa.String(length=40), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("last_seen_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name=op.f("fk_ui_sessions_api_key_id_api_keys")
        ),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name=op.f("fk_ui_sessions_workspace_id_workspaces")
        ),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_ui_sessions")),
    )
    with op.batch_alter_table("ui_sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ui_sessions_api_key_id"), ["api_key_id"], unique=False)


def downgrade() -> None:
    op.drop_table("ui_sessions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("scope")
        batch_op.drop_column("name")
