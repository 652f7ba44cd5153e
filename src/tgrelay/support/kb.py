"""The knowledge base's use cases: articles written through the API, and the search that
the API, a ticket's topic (suggestions, /kb) and auto-answers share."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import audit, errors
from tgrelay.runtime import Runtime
from tgrelay.support import kb_store
from tgrelay.support.models import Article, Hit
from tgrelay.workspaces.models import Principal

MAX_TITLE_LENGTH = 200
MAX_BODY_LENGTH = 4096  # one Telegram message: an article is sent as one
MAX_TAGS = 20
MAX_TAG_LENGTH = 64
MAX_LIMIT = 50
LANGUAGE = re.compile(r"[a-z]{2,3}")
FIELDS = ("title", "body", "tags", "language", "auto_answer")


async def create_article(
    rt: Runtime,
    principal: Principal,
    *,
    title: str,
    body: str,
    tags: Sequence[str] = (),
    language: str | None = None,
    auto_answer: bool = False,
) -> Article:
    values: dict[str, Any] = {
        "title": title,
        "body": body,
        "tags": list(tags),
        "language": language,
        "auto_answer": auto_answer,
    }
    check(values)
    now = rt.clock()
    doc_id = secrets.randbits(62)  # the search index's key; random, so no writer waits on one
    article_id = f"art_{doc_id:016x}"
    async with rt.db.transaction() as conn:
        await kb_store.add_article(
            conn,
            {
                **values,
                "id": article_id,
                "doc_id": doc_id,
                "workspace_id": principal.workspace_id,
                "created_at": now,
                "updated_at": now,
            },
        )
        await _audit(conn, principal, "article.created", article_id, title, now=now)
    return await get_article(rt, principal.workspace_id, article_id)


async def list_articles(rt: Runtime, workspace_id: str) -> list[Article]:
    async with rt.db.engine.connect() as conn:
        return await kb_store.list_articles(conn, workspace_id)


async def get_article(rt: Runtime, workspace_id: str, article_id: str) -> Article:
    async with rt.db.engine.connect() as conn:
        found = await kb_store.article(conn, workspace_id, article_id)
    if found is None:
        raise errors.NotFound(f"no article {article_id}")
    return found


async def update_article(
    rt: Runtime, principal: Principal, article_id: str, changes: Mapping[str, Any]
) -> Article:
    """Change any of FIELDS; the search index follows (triggers or a generated column)."""
    if unknown := set(changes) - set(FIELDS):
        raise errors.InvalidInput(f"not an article field: {', '.join(sorted(unknown))}")
    if nulls := [key for key in FIELDS if key != "language" and changes.get(key, 0) is None]:
        raise errors.InvalidInput(f"{', '.join(nulls)} cannot be null; only language can")
    check(changes)
    now = rt.clock()
    async with rt.db.transaction() as conn:
        found = await kb_store.article(conn, principal.workspace_id, article_id)
        if found is None:
            raise errors.NotFound(f"no article {article_id}")
        if changes:
            await kb_store.change_article(conn, article_id, **changes, updated_at=now)
            title = changes.get("title", found.title)
            await _audit(conn, principal, "article.updated", article_id, title, now=now)
    return await get_article(rt, principal.workspace_id, article_id)


async def delete_article(rt: Runtime, principal: Principal, article_id: str) -> None:
    now = rt.clock()
    async with rt.db.transaction() as conn:
        found = await kb_store.article(conn, principal.workspace_id, article_id)
        if found is None:
            raise errors.NotFound(f"no article {article_id}")
        await kb_store.delete_article(conn, article_id)
        await _audit(conn, principal, "article.deleted", article_id, found.title, now=now)


async def search(
    rt: Runtime, workspace_id: str, query: str, *, limit: int, language: str | None = None
) -> list[Hit]:
    """The API's search: see `search_on`."""
    async with rt.db.engine.connect() as conn:
        return await search_on(conn, workspace_id, query, limit=limit, language=language)


async def search_on(
    conn: AsyncConnection,
    workspace_id: str,
    query: str,
    *,
    limit: int,
    language: str | None = None,
    auto_answer_only: bool = False,
) -> list[Hit]:
    """Articles matching any word of `query`, best first, on the caller's connection; with
    `language` (a customer's language_code, e.g. "pt-BR"), only those in its primary
    language or in none."""
    if not 1 <= limit <= MAX_LIMIT:
        raise errors.InvalidInput(f"limit must be 1 to {MAX_LIMIT}")
    return await kb_store.search(
        conn,
        workspace_id,
        query,
        limit=limit,
        language=primary_language(language),
        auto_answer_only=auto_answer_only,
    )


def primary_language(code: str | None) -> str | None:
    """A language tag's primary subtag ("pt-BR" → "pt"), or None when there is none."""
    if not code:
        return None
    primary = code.split("-")[0].split("_")[0].lower()
    return primary if LANGUAGE.fullmatch(primary) else None


def check(values: Mapping[str, Any]) -> None:
    """Raise InvalidInput for a field out of bounds (the API's schema says the same)."""
    title = values.get("title")
    if title is not None and not (1 <= len(title) <= MAX_TITLE_LENGTH and title.strip()):
        raise errors.InvalidInput(f"title must be 1 to {MAX_TITLE_LENGTH} characters")
    body = values.get("body")
    if body is not None and not (1 <= len(body) <= MAX_BODY_LENGTH and body.strip()):
        raise errors.InvalidInput(f"body must be 1 to {MAX_BODY_LENGTH} characters")
    tags = values.get("tags")
    if tags is not None and (
        len(tags) > MAX_TAGS or any(not 1 <= len(tag) <= MAX_TAG_LENGTH for tag in tags)
    ):
        raise errors.InvalidInput(f"at most {MAX_TAGS} tags of 1 to {MAX_TAG_LENGTH} characters")
    language = values.get("language")
    if language is not None and not LANGUAGE.fullmatch(language):
        raise errors.InvalidInput(
            f'language is a primary language subtag, 2 or 3 of a-z ("en"); got {language!r}'
        )


async def _audit(
    conn: AsyncConnection,
    principal: Principal,
    action: str,
    article_id: str,
    title: str,
    *,
    now: datetime,
) -> None:
    await audit.record(
        conn,
        action=action,
        actor=principal.actor,
        now=now,
        workspace_id=principal.workspace_id,
        detail={"article_id": article_id, "title": title},
    )
