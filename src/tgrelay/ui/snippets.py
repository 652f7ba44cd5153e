"""The web UI's snippets pages: canned replies agents send with /s <name>.

A snippet's save-time validation (unknown variables, syntax) reads on its form.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors, problems
from tgrelay.runtime import Runtime
from tgrelay.support import snippets
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form()]


@router.get("/ui/snippets")
async def snippets_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    done = request.query_params.get("deleted")
    notice = f"Snippet {done} deleted." if done else None
    return await _snippets(request, rt, principal.workspace_id, notice=notice)


@router.post("/ui/snippets")
async def create_snippet(
    request: Request, rt: pages.Rt, principal: SignedIn, name: Text = "", text: Text = ""
) -> Response:
    try:
        created = await snippets.create_snippet(rt, principal, name=name.strip(), text=text)
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _snippets(
            request,
            rt,
            principal.workspace_id,
            status_code=problems.status_of(exc),
            error=f"Not saved: {exc.message}",
            form={"name": name, "text": text},
        )
    return RedirectResponse(f"/ui/snippets/{created.id}?saved=1", status_code=303)


@router.get("/ui/snippets/{snippet_id}")
async def snippet_page(
    request: Request, rt: pages.Rt, principal: SignedIn, snippet_id: str
) -> Response:
    notice = "Snippet saved." if request.query_params.get("saved") else None
    return await _snippet(request, rt, principal.workspace_id, snippet_id, notice=notice)


@router.post("/ui/snippets/{snippet_id}")
async def update_snippet(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    snippet_id: str,
    name: Text = "",
    text: Text = "",
) -> Response:
    try:
        await snippets.update_snippet(
            rt, principal, snippet_id, {"name": name.strip(), "text": text}
        )
    except errors.TgrelayError as exc:
        return await _snippet(
            request,
            rt,
            principal.workspace_id,
            snippet_id,
            status_code=problems.status_of(exc),
            error=f"Not saved: {exc.message}",
            form={"name": name, "text": text},
        )
    return RedirectResponse(f"/ui/snippets/{snippet_id}?saved=1", status_code=303)


@router.post("/ui/snippets/{snippet_id}/delete")
async def delete_snippet(
    request: Request, rt: pages.Rt, principal: SignedIn, snippet_id: str
) -> Response:
    try:
        found = await snippets.get_snippet(rt, principal.workspace_id, snippet_id)
        await snippets.delete_snippet(rt, principal, snippet_id)
    except errors.NotFound as exc:
        return await _snippets(
            request, rt, principal.workspace_id, status_code=404, error=exc.message
        )
    return RedirectResponse(f"/ui/snippets?deleted={quote(found.name)}", status_code=303)


async def _snippets(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    return pages.render(
        request,
        "snippets.html",
        status_code=status_code,
        snippets=await snippets.list_snippets(rt, workspace_id),
        form=form or {},
        error=error,
        notice=notice,
    )


async def _snippet(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    snippet_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    try:
        found = await snippets.get_snippet(rt, workspace_id, snippet_id)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    return pages.render(
        request,
        "snippet.html",
        status_code=status_code,
        snippet=found,
        form=form or {"name": found.name, "text": found.text},
        error=error,
        notice=notice,
    )
