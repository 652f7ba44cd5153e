"""HTTP routes of the knowledge base: /v1/support/articles, their search, and what an
auto-answer did for a ticket."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from pydantic import BaseModel, ConfigDict, Field

from tgrelay.runtime import Runtime, runtime
from tgrelay.support import kb, kb_answers
from tgrelay.support.models import Article, AutoAnswer, AutoAnswerOutcome, Hit
from tgrelay.workspaces import service as workspaces

router = APIRouter(prefix="/v1/support", tags=["knowledge base"])

CurrentRuntime = Annotated[Runtime, Depends(runtime)]
CurrentPrincipal = workspaces.CurrentPrincipal
AdminPrincipal = workspaces.AdminPrincipal

Title = Annotated[str, Field(min_length=1, max_length=kb.MAX_TITLE_LENGTH)]
Body = Annotated[str, Field(min_length=1, max_length=kb.MAX_BODY_LENGTH)]
Tag = Annotated[str, Field(min_length=1, max_length=kb.MAX_TAG_LENGTH)]
Tags = Annotated[list[Tag], Field(max_length=kb.MAX_TAGS)]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}$")]


class ArticleRequest(BaseModel):
    """An article: sent as one message, so `body` fits one (4096 characters). `language`
    (a primary subtag, "en") keeps it to customers writing in it; null: any customer.
    `auto_answer` lets it answer a new ticket by itself (the desk's threshold decides)."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body
    tags: Tags = Field(default_factory=list)
    language: Language | None = None
    auto_answer: bool = False


class ArticleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    body: Body | None = None
    tags: Tags | None = None
    language: Language | None = None  # null: any language
    auto_answer: bool | None = None


class ArticleView(BaseModel):
    id: str
    title: str
    body: str
    tags: list[str]
    language: str | None
    auto_answer: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, article: Article) -> ArticleView:
        return cls(
            id=article.id,
            title=article.title,
            body=article.body,
            tags=list(article.tags),
            language=article.language,
            auto_answer=article.auto_answer,
            created_at=article.created_at,
            updated_at=article.updated_at,
        )


class HitView(BaseModel):
    article: ArticleView
    score: float  # the database engine's rank (FTS5 -bm25, PostgreSQL ts_rank): higher first

    @classmethod
    def of(cls, hit: Hit) -> HitView:
        return cls(article=ArticleView.of(hit.article), score=hit.score)


@router.post("/articles", status_code=status.HTTP_201_CREATED)
async def create_article(
    body: ArticleRequest, principal: AdminPrincipal, rt: CurrentRuntime
) -> ArticleView:
    article = await kb.create_article(
        rt,
        principal,
        title=body.title,
        body=body.body,
        tags=body.tags,
        language=body.language,
        auto_answer=body.auto_answer,
    )
    return ArticleView.of(article)


@router.get("/articles")
async def list_articles(principal: CurrentPrincipal, rt: CurrentRuntime) -> list[ArticleView]:
    """By title."""
    return [ArticleView.of(a) for a in await kb.list_articles(rt, principal.workspace_id)]


@router.get("/articles/search")
async def search_articles(
    principal: CurrentPrincipal,
    rt: CurrentRuntime,
    q: Annotated[str, Query(max_length=1000, description="words; any of them matches")],
    limit: Annotated[int, Query(ge=1, le=kb.MAX_LIMIT)] = 10,
    language: Annotated[
        str | None,
        Query(
            max_length=35,
            description="a customer's language_code: its articles and language-neutral ones only",
        ),
    ] = None,
) -> list[HitView]:
    """Articles with any word of `q` (a title match ranks over a body's), best first. The
    engine's operators in `q` are searched as plain words."""
    hits = await kb.search(rt, principal.workspace_id, q, limit=limit, language=language)
    return [HitView.of(hit) for hit in hits]


@router.get("/articles/{article_id}")
async def get_article(
    article_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> ArticleView:
    return ArticleView.of(await kb.get_article(rt, principal.workspace_id, article_id))


@router.patch("/articles/{article_id}")
async def update_article(
    article_id: str, body: ArticleChange, principal: AdminPrincipal, rt: CurrentRuntime
) -> ArticleView:
    changes: dict[str, Any] = body.model_dump(exclude_unset=True)
    return ArticleView.of(await kb.update_article(rt, principal, article_id, changes))


@router.delete("/articles/{article_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_article(article_id: str, principal: AdminPrincipal, rt: CurrentRuntime) -> None:
    """Tickets keep what they were sent of it."""
    await kb.delete_article(rt, principal, article_id)


class AutoAnswerView(BaseModel):
    """What an auto-answer did: `deflected` when the customer's Yes resolved the ticket."""

    article_id: str
    title: str  # as it was sent
    score: float
    outcome: AutoAnswerOutcome
    asked_at: datetime
    settled_at: datetime | None  # when the customer answered or the wait ended

    @classmethod
    def of(cls, answer: AutoAnswer) -> AutoAnswerView:
        return cls.model_validate(answer, from_attributes=True)


@router.get(
    "/tickets/{ticket_id}/auto_answer",
    responses={404: {"description": "no such ticket, or it was not answered automatically"}},
)
async def get_auto_answer(
    ticket_id: str, principal: CurrentPrincipal, rt: CurrentRuntime
) -> AutoAnswerView:
    return AutoAnswerView.of(await kb_answers.of_ticket(rt, principal.workspace_id, ticket_id))
