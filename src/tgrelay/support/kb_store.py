"""The knowledge base's rows and its search, with each database's own full-text engine:
SQLite FTS5 (bm25, title weighted over body) and PostgreSQL tsvector (ts_rank, title 'A',
body 'B'). Functions join the caller's transaction.

A query is the words of what someone wrote, never the engine's syntax: `terms` keeps the
words (quotes, `*`, `-`, `:`, AND/OR/NOT and the like cannot reach the engine as operators)
and the search matches articles with any of them, best first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Row, delete, func, insert, literal_column, select, table, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from tgrelay.db import tables
from tgrelay.support.models import Article, AutoAnswer, AutoAnswerOutcome, Hit

articles = tables.support_articles
auto_answers = tables.support_auto_answers

WORD = re.compile(r"\w+")
MAX_TERMS = 32  # a customer's long first message is searched by its first 32 words
# Words too common to tell articles apart; PostgreSQL's 'english' config drops them too,
# and on SQLite each one would make bm25 score nearly every article.
COMMON = (
    "a an and are as at be but by can do does for from had has have hi hello how i if in "
    "is it its me my no not of on or our so that the their them there they this to was we "
    "what when where which who why will with you your"
)
STOP_WORDS = frozenset(COMMON.split())
TITLE_WEIGHT = 10.0  # bm25's weight of a title match over a body match (1.0)


def terms(query: str) -> list[str]:
    """The distinct words of `query`, lower-cased, without stop words, at most MAX_TERMS."""
    found: list[str] = []
    for word in WORD.findall(query.lower()):
        if word not in STOP_WORDS and word not in found:
            found.append(word)
    return found[:MAX_TERMS]


async def search(
    conn: AsyncConnection,
    workspace_id: str,
    query: str,
    *,
    limit: int,
    language: str | None = None,
    auto_answer_only: bool = False,
) -> list[Hit]:
    """The workspace's articles matching any word of `query`, best first; with `language`,
    only articles in it or in no language in particular."""
    words = terms(query)
    if not words:
        return []
    if conn.dialect.name == "sqlite":
        # One MATCH filters (workspace, language, auto_answer are indexed columns) and ranks,
        # so only the best `limit` rows are joined back to support_articles.
        filters = [f"workspace_id : {_phrase(workspace_id)}"]
        if language is not None:
            filters.append(f'(language : {_phrase(language)} OR language : "0")')
        if auto_answer_only:
            filters.append('auto_answer : "1"')
        match = " AND ".join([*filters, "(" + " OR ".join(map(_phrase, words)) + ")"])
        fts: ColumnElement[Any] = literal_column(tables.ARTICLES_FTS)
        bm25 = func.bm25(fts, TITLE_WEIGHT, 1.0, 0.0, 0.0, 0.0)
        ranked = (
            select(
                literal_column(f"{tables.ARTICLES_FTS}.rowid").label("doc_id"),
                (-bm25).label("score"),
            )
            .select_from(table(tables.ARTICLES_FTS))
            .where(fts.op("MATCH")(match))
            .order_by(bm25)
            .limit(limit)
            .subquery("ranked")
        )
        doc_id, score = ranked.c.doc_id, ranked.c.score
        query_ = select(articles, score).join(ranked, articles.c.doc_id == doc_id)
    else:
        # websearch_to_tsquery never fails on input; "or" between the words asks for any.
        tsquery = func.websearch_to_tsquery(text("'english'"), " or ".join(words))
        vector: ColumnElement[Any] = literal_column(f"support_articles.{tables.SEARCH_VECTOR}")
        score = func.ts_rank(vector, tsquery).label("score")
        query_ = select(articles, score).where(vector.op("@@")(tsquery))
    # On SQLite the MATCH filtered already; these keep PostgreSQL's search to the same rows.
    query_ = query_.where(articles.c.workspace_id == workspace_id)
    if language is not None:
        query_ = query_.where((articles.c.language.is_(None)) | (articles.c.language == language))
    if auto_answer_only:
        query_ = query_.where(articles.c.auto_answer.is_(True))
    rows = await conn.execute(
        query_.order_by(score.desc(), articles.c.title, articles.c.id).limit(limit)
    )
    return [Hit(article=_to_article(row), score=float(row.score)) for row in rows]


def _phrase(value: str) -> str:
    """An FTS5 string: quoted, its quotes doubled, so nothing in it is an operator."""
    return '"' + value.replace('"', '""') + '"'


# --- articles ------------------------------------------------------------------------------


async def add_article(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(articles).values(**_encoded(values)))


async def add_articles(conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
    """Many at once (the bench's 10,000)."""
    await conn.execute(insert(articles), [_encoded(row) for row in rows])


async def article(conn: AsyncConnection, workspace_id: str, article_id: str) -> Article | None:
    row = (
        await conn.execute(
            select(articles).where(
                articles.c.workspace_id == workspace_id, articles.c.id == article_id
            )
        )
    ).first()
    return None if row is None else _to_article(row)


async def list_articles(conn: AsyncConnection, workspace_id: str) -> list[Article]:
    rows = await conn.execute(
        select(articles)
        .where(articles.c.workspace_id == workspace_id)
        .order_by(articles.c.title, articles.c.id)
    )
    return [_to_article(row) for row in rows]


async def change_article(conn: AsyncConnection, article_id: str, **values: Any) -> None:
    await conn.execute(
        update(articles).where(articles.c.id == article_id).values(**_encoded(values))
    )


async def delete_article(conn: AsyncConnection, article_id: str) -> None:
    """Tickets keep what was sent of it: the text in their messages, the title of an
    auto-answer."""
    await conn.execute(delete(articles).where(articles.c.id == article_id))


def _encoded(values: Mapping[str, Any]) -> dict[str, Any]:
    encoded = dict(values)
    if "tags" in encoded:
        encoded["tags"] = orjson.dumps(list(encoded["tags"])).decode()
    return encoded


def _to_article(row: Row[Any]) -> Article:
    return Article(
        id=row.id,
        workspace_id=row.workspace_id,
        title=row.title,
        body=row.body,
        tags=tuple(orjson.loads(row.tags)),
        language=row.language,
        auto_answer=row.auto_answer,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# --- auto-answers --------------------------------------------------------------------------


async def add_auto_answer(conn: AsyncConnection, answer: AutoAnswer) -> None:
    await conn.execute(
        insert(auto_answers).values(
            ticket_id=answer.ticket_id,
            article_id=answer.article_id,
            title=answer.title,
            score=answer.score,
            outcome=answer.outcome.value,
            asked_at=answer.asked_at,
            settled_at=answer.settled_at,
        )
    )


async def auto_answer(conn: AsyncConnection, ticket_id: str) -> AutoAnswer | None:
    row = (
        await conn.execute(select(auto_answers).where(auto_answers.c.ticket_id == ticket_id))
    ).first()
    if row is None:
        return None
    return AutoAnswer(
        ticket_id=row.ticket_id,
        article_id=row.article_id,
        title=row.title,
        score=row.score,
        outcome=AutoAnswerOutcome(row.outcome),
        asked_at=row.asked_at,
        settled_at=row.settled_at,
    )


async def settle(
    conn: AsyncConnection, ticket_id: str, outcome: AutoAnswerOutcome, at: datetime
) -> bool:
    """Record the customer's answer (or the wait's end) once: False when it was settled."""
    result = await conn.execute(
        update(auto_answers)
        .where(
            auto_answers.c.ticket_id == ticket_id,
            auto_answers.c.outcome == AutoAnswerOutcome.WAITING.value,
        )
        .values(outcome=outcome.value, settled_at=at)
    )
    return bool(result.rowcount)
