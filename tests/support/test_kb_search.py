"""The knowledge base's search on SQLite (FTS5, bm25) and PostgreSQL (tsvector, ts_rank):
ranking, filters, the index kept in step with the rows, and input that never breaks it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from tgrelay.db import tables
from tgrelay.db.engine import Database
from tgrelay.support import kb, kb_store
from tgrelay.workspaces import service as workspaces

NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
ARTICLES: dict[str, dict[str, Any]] = {
    "art_reset": {
        "title": "Reset your password",
        "body": "Open Settings, choose Security and press Reset. A link arrives by email.",
        "language": "en",
        "auto_answer": True,
    },
    "art_billing": {
        "title": "Billing and invoices",
        "body": "Invoices are emailed monthly. To change your card, open Billing.",
        "language": None,
        "auto_answer": False,
    },
    "art_order": {
        "title": "Order status",
        "body": "Track your order on the Orders page. Lost your password? See the reset article.",
        "language": None,
        "auto_answer": False,
    },
    "art_delivery": {
        "title": "Delivery times",
        "body": "Orders ship within two days.",
        "language": "en",
        "auto_answer": True,
    },
    "art_passwort": {
        "title": "Passwort zurücksetzen",
        "body": "Öffne die Einstellungen und wähle Sicherheit.",
        "language": "de",
        "auto_answer": False,
    },
}


async def _workspace(db: Database, name: str) -> str:
    workspace, _key = await workspaces.create_workspace(db, name, now=NOW)
    return workspace.id


async def _articles(db: Database, workspace_id: str, **only: dict[str, Any]) -> None:
    async with db.transaction() as conn:
        for doc_id, (article_id, values) in enumerate((only or ARTICLES).items(), start=1):
            await kb_store.add_article(
                conn,
                {
                    **values,
                    "id": article_id,
                    "doc_id": doc_id + (1000 if only else 0),
                    "workspace_id": workspace_id,
                    "tags": [],
                    "created_at": NOW,
                    "updated_at": NOW,
                },
            )


async def _found(db: Database, workspace_id: str, query: str, **options: Any) -> list[str]:
    async with db.engine.connect() as conn:
        hits = await kb.search_on(conn, workspace_id, query, limit=10, **options)
    scores = [hit.score for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(s > 0 for s in scores)
    return [hit.article.id for hit in hits]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("password", ["art_reset", "art_order"]),  # the title's match ranks over the body's
        ("reset password", ["art_reset", "art_order"]),
        ("orders", ["art_order", "art_delivery"]),  # stemmed: order(s) either way
        ("How do I change my card?", ["art_billing"]),  # stop words do not match everything
        ("invoice billing", ["art_billing"]),
        ("zurücksetzen", ["art_passwort"]),
        ("nothing like this", []),
    ],
)
async def test_ranking(database: Database, query: str, expected: list[str]) -> None:
    """Articles with any of the words come back best first, a title match over a body's."""
    workspace_id = await _workspace(database, "Acme")
    await _articles(database, workspace_id)

    assert await _found(database, workspace_id, query) == expected


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"password', ["art_reset", "art_order"]),
        ('""', []),
        ("password*", ["art_reset", "art_order"]),
        ("*", []),
        ("-password", ["art_reset", "art_order"]),
        ("NOT password", ["art_reset", "art_order"]),
        ("AND", []),
        ("OR", []),
        ("password OR", ["art_reset", "art_order"]),
        ("title:password", ["art_reset", "art_order"]),
        (":", []),
        ("NEAR(reset password)", ["art_reset", "art_order"]),
        ("^reset", ["art_reset", "art_order"]),
        ("(", []),
        ("\\", []),
        ("", []),
        ("   ", []),
        ("password'; DROP TABLE support_articles; --", ["art_reset", "art_order"]),
        ("{reset} & !password | <->", ["art_reset", "art_order"]),
    ],
)
async def test_engine_syntax_in_the_query_is_only_words(
    database: Database, query: str, expected: list[str]
) -> None:
    """FTS5's and tsquery's operators in `q` are searched as the words around them and never
    raise; the table is still there after an injection attempt."""
    workspace_id = await _workspace(database, "Acme")
    await _articles(database, workspace_id)

    found = await _found(database, workspace_id, query)

    async with database.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(tables.support_articles))
    assert (found, count) == (expected, len(ARTICLES))


async def test_filters(database: Database) -> None:
    """A language keeps articles in it or in none; auto_answer_only keeps those marked;
    another workspace's articles never come back."""
    acme = await _workspace(database, "Acme")
    globex = await _workspace(database, "Globex")
    await _articles(database, acme)
    await _articles(database, globex, art_other={**ARTICLES["art_reset"], "language": None})

    assert (
        await _found(database, acme, "password", language="de-AT"),
        await _found(database, acme, "password reset", language="en"),
        sorted(await _found(database, acme, "password orders", auto_answer_only=True)),
        await _found(database, globex, "password"),
    ) == (["art_order"], ["art_reset", "art_order"], ["art_delivery", "art_reset"], ["art_other"])


async def test_index_follows_updates_and_deletes(database: Database) -> None:
    """A changed title is searched by its new words only; a deleted article is gone."""
    workspace_id = await _workspace(database, "Acme")
    await _articles(database, workspace_id)

    async with database.transaction() as conn:
        await kb_store.change_article(conn, "art_billing", title="Refunds", updated_at=NOW)
        await kb_store.delete_article(conn, "art_reset")

    assert (
        await _found(database, workspace_id, "refunds"),
        await _found(database, workspace_id, "billing"),
        await _found(database, workspace_id, "password"),
    ) == (["art_billing"], ["art_billing"], ["art_order"])


def test_terms() -> None:
    """A query's terms are its distinct lower-cased words less stop words, at most 32."""
    many = " ".join(f"w{i}" for i in range(40))
    assert (
        kb_store.terms('Reset "my" PASSWORD, reset it: NOW*'),
        len(kb_store.terms(many)),
    ) == (["reset", "password", "now"], kb_store.MAX_TERMS)
