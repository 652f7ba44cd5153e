"""The web UI's knowledge-base pages: articles, searched with the same ranked search as
GET /v1/support/articles/search, written with the same checks as the API's.

A refused article reads on its form, with what was typed kept.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors, problems
from tgrelay.runtime import Runtime
from tgrelay.support import kb
from tgrelay.ui import forms, pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form()]
MAX_QUERY_LENGTH = 1000  # the API's `q`


@router.get("/ui/articles")
async def articles_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    done = request.query_params.get("deleted")
    notice = f"Article {done} deleted." if done else None
    return await _articles(request, rt, principal.workspace_id, notice=notice)


@router.post("/ui/articles")
async def create_article(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    title: Text = "",
    body: Text = "",
    tags: Text = "",
    language: Text = "",
    auto_answer: Text = "",
) -> Response:
    form = _form(title, body, tags, language, auto_answer)
    try:
        created = await kb.create_article(rt, principal, **_values(form))
    except errors.InvalidInput as exc:
        return await _articles(
            request,
            rt,
            principal.workspace_id,
            status_code=problems.status_of(exc),
            error=f"Not saved: {exc.message}",
            form=form,
        )
    return RedirectResponse(f"/ui/articles/{created.id}?saved=1", status_code=303)


@router.get("/ui/articles/{article_id}")
async def article_page(
    request: Request, rt: pages.Rt, principal: SignedIn, article_id: str
) -> Response:
    notice = "Article saved." if request.query_params.get("saved") else None
    return await _article(request, rt, principal.workspace_id, article_id, notice=notice)


@router.post("/ui/articles/{article_id}")
async def update_article(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    article_id: str,
    title: Text = "",
    body: Text = "",
    tags: Text = "",
    language: Text = "",
    auto_answer: Text = "",
) -> Response:
    form = _form(title, body, tags, language, auto_answer)
    try:
        await kb.update_article(rt, principal, article_id, _values(form))
    except errors.TgrelayError as exc:
        return await _article(
            request,
            rt,
            principal.workspace_id,
            article_id,
            status_code=problems.status_of(exc),
            error=f"Not saved: {exc.message}",
            form=form,
        )
    return RedirectResponse(f"/ui/articles/{article_id}?saved=1", status_code=303)


@router.post("/ui/articles/{article_id}/delete")
async def delete_article(
    request: Request, rt: pages.Rt, principal: SignedIn, article_id: str
) -> Response:
    try:
        found = await kb.get_article(rt, principal.workspace_id, article_id)
        await kb.delete_article(rt, principal, article_id)
    except errors.NotFound as exc:
        return await _articles(
            request, rt, principal.workspace_id, status_code=404, error=exc.message
        )
    return RedirectResponse(f"/ui/articles?deleted={quote(found.title)}", status_code=303)


def tag_list(field: str) -> list[str]:
    """Tags typed comma-separated: each trimmed, empty ones dropped."""
    return [tag.strip() for tag in field.split(",") if tag.strip()]


def _form(title: str, body: str, tags: str, language: str, auto_answer: str) -> dict[str, Any]:
    """What the form sent, kept as typed to show it again when refused."""
    return {
        "title": title,
        "body": body,
        "tags": tags,
        "language": language,
        "auto_answer": bool(auto_answer),
    }


def _values(form: dict[str, Any]) -> dict[str, Any]:
    """The form as the use cases take an article; checked there as the API's are."""
    return {
        "title": form["title"].strip(),
        "body": form["body"],
        "tags": tag_list(form["tags"]),
        "language": forms.form_text(form["language"]),
        "auto_answer": form["auto_answer"],
    }


async def _articles(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    query = request.query_params.get("q", "")[:MAX_QUERY_LENGTH]
    hits = None
    if query.strip():
        hits = await kb.search(rt, workspace_id, query, limit=kb.MAX_LIMIT)
    return pages.render(
        request,
        "articles.html",
        status_code=status_code,
        articles=await kb.list_articles(rt, workspace_id) if hits is None else None,
        hits=hits,
        query=query,
        form=form or {},
        error=error,
        notice=notice,
    )


async def _article(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    article_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, Any] | None = None,
) -> Response:
    try:
        found = await kb.get_article(rt, workspace_id, article_id)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    return pages.render(
        request,
        "article.html",
        status_code=status_code,
        article=found,
        form=form
        or {
            "title": found.title,
            "body": found.body,
            "tags": ", ".join(found.tags),
            "language": found.language or "",
            "auto_answer": found.auto_answer,
        },
        error=error,
        notice=notice,
    )
