"""knowledge base: support_articles with each database's full-text search, auto-answers,
and the desks' auto-answer settings

Issue 20, point 3. SQLite searches an external-content FTS5 table kept in step by triggers
(keyed by the article's doc_id, which VACUUM cannot renumber; its content a view showing the
indexed workspace, language and auto_answer as indexed); PostgreSQL a generated
tsvector column (title weighted A, body B) under a GIN index. The statements are the ones
tgrelay.db.tables attaches to the table for create_all, copied so this revision stays fixed.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06 12:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import tgrelay.db.types

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SQLITE_SEARCH = (
    "CREATE VIEW support_articles_search AS SELECT doc_id, title, body, workspace_id, "
    "coalesce(language, '0') AS language, auto_answer FROM support_articles",
    "CREATE VIRTUAL TABLE support_articles_fts USING fts5("
    "title, body, workspace_id, language, auto_answer, "
    "content='support_articles_search', content_rowid='doc_id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    "CREATE TRIGGER support_articles_fts_insert AFTER INSERT ON support_articles BEGIN "
    "INSERT INTO support_articles_fts(rowid, title, body, workspace_id, language, auto_answer) "
    "VALUES (new.doc_id, new.title, new.body, new.workspace_id, coalesce(new.language, '0'), "
    "new.auto_answer); END",
    "CREATE TRIGGER support_articles_fts_delete AFTER DELETE ON support_articles BEGIN "
    "INSERT INTO support_articles_fts(support_articles_fts, rowid, title, body, workspace_id, "
    "language, auto_answer) "
    "VALUES ('delete', old.doc_id, old.title, old.body, old.workspace_id, "
    "coalesce(old.language, '0'), old.auto_answer); END",
    "CREATE TRIGGER support_articles_fts_update AFTER UPDATE ON support_articles BEGIN "
    "INSERT INTO support_articles_fts(support_articles_fts, rowid, title, body, workspace_id, "
    "language, auto_answer) "
    "VALUES ('delete', old.doc_id, old.title, old.body, old.workspace_id, "
    "coalesce(old.language, '0'), old.auto_answer); "
    "INSERT INTO support_articles_fts(rowid, title, body, workspace_id, language, auto_answer) "
    "VALUES (new.doc_id, new.title, new.body, new.workspace_id, coalesce(new.language, '0'), "
    "new.auto_answer); END",
)
POSTGRES_SEARCH = (
    "ALTER TABLE support_articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
    "(setweight(to_tsvector('english', title), 'A') || "
    "setweight(to_tsvector('english', body), 'B')) STORED",
    "CREATE INDEX ix_support_articles_search_vector ON support_articles USING gin (search_vector)",
)


def upgrade() -> None:
    op.create_table(
        "support_articles",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("doc_id", sa.BigInteger(), nullable=False),
        sa.Column("workspace_id", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("tags", sa.Text(), nullable=False),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("auto_answer", sa.Boolean(), nullable=False),
        sa.Column("created_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("updated_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspaces.id"],
            name=op.f("fk_support_articles_workspace_id_workspaces"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_support_articles")),
        sa.UniqueConstraint("doc_id", name=op.f("uq_support_articles_doc_id")),
    )
    op.create_index(op.f("ix_support_articles_workspace_id"), "support_articles", ["workspace_id"])
    op.create_table(
        "support_auto_answers",
        sa.Column("ticket_id", sa.String(length=40), nullable=False),
        sa.Column("article_id", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("asked_at", tgrelay.db.types.Timestamp(timezone=True), nullable=False),
        sa.Column("settled_at", tgrelay.db.types.Timestamp(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("ticket_id", name=op.f("pk_support_auto_answers")),
    )
    with op.batch_alter_table("support_desks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kb_auto_answer_threshold", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "kb_answer_wait_seconds",
                sa.Integer(),
                nullable=False,
                server_default=sa.text("600"),
            )
        )
    statements = SQLITE_SEARCH if op.get_bind().dialect.name == "sqlite" else POSTGRES_SEARCH
    for statement in statements:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The triggers first: SQLite checks them against the tables on every later ALTER.
        for trigger in ("insert", "delete", "update"):
            op.execute(f"DROP TRIGGER support_articles_fts_{trigger}")
        op.execute("DROP TABLE support_articles_fts")
        op.execute("DROP VIEW support_articles_search")
    with op.batch_alter_table("support_desks", schema=None) as batch_op:
        batch_op.drop_column("kb_answer_wait_seconds")
        batch_op.drop_column("kb_auto_answer_threshold")
    op.drop_table("support_auto_answers")
    op.drop_index(op.f("ix_support_articles_workspace_id"), table_name="support_articles")
    op.drop_table("support_articles")
