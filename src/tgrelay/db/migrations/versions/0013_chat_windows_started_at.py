"""chat_windows: ix_chat_windows_started_at, so retention finds ended windows without a scan

Retention deletes the windows of TGRELAY_INBOUND_CHAT_LIMIT that have ended, oldest first
(tgrelay/retention/prune.py); without this index each of its reads scanned the table.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 10:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_chat_windows_started_at", "chat_windows", ["started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_chat_windows_started_at", table_name="chat_windows")
