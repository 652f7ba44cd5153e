"""The web UI's flows pages: the list, a flow's JSON editor with the document's problems
shown next to it after a save (the same messages as POST /v1/flows), its versions and the
disable button."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors, problems
from tgrelay.conversations import checks, history, registry
from tgrelay.runtime import Runtime
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)
Document = Annotated[str, Form(max_length=registry.MAX_DOCUMENT_BYTES)]

# What the editor of a new flow starts with: the smallest flow that runs.
STARTER = json.dumps(
    {
        "name": "hello",
        "trigger": {"type": "command", "command": "/hello"},
        "steps": [
            {
                "id": "name",
                "kind": "ask",
                "message": "Hi {{ user.first_name }}! What should we call you?",
                "input": {"type": "text", "max_length": 64},
                "variable": "nickname",
            },
            {"id": "done", "kind": "end", "message": "Nice to meet you, {{ nickname }}."},
        ],
    },
    indent=2,
)


def pretty(document: dict[str, Any]) -> str:
    """A stored document as the editor shows it."""
    return json.dumps(document, indent=2, ensure_ascii=False)


@router.get("/ui/flows")
async def flows_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    return await _flows(request, rt, principal.workspace_id)


@router.post("/ui/flows")
async def create_flow(
    request: Request, rt: pages.Rt, principal: SignedIn, document: Document = ""
) -> Response:
    try:
        posted = await registry.post_flow(rt, principal, document.encode())
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _flows(
            request,
            rt,
            principal.workspace_id,
            status_code=problems.status_of(exc),
            **_refusal(exc, document),
        )
    return _saved(posted)


@router.get("/ui/flows/{name}")
async def flow_page(request: Request, rt: pages.Rt, principal: SignedIn, name: str) -> Response:
    params = request.query_params
    notice = None
    if params.get("saved"):
        notice = f"Version {params['saved']} saved."
    elif params.get("unchanged"):
        notice = f"Nothing saved: the document is version {params['unchanged']}'s."
    elif params.get("disabled"):
        notice = "Flow disabled: it starts no new conversations; running ones go on."
    return await _flow(request, rt, principal.workspace_id, name, notice=notice)


@router.post("/ui/flows/{name}")
async def save_flow(
    request: Request, rt: pages.Rt, principal: SignedIn, name: str, document: Document = ""
) -> Response:
    """A new version from the editor (a document naming another flow saves that one)."""
    try:
        posted = await registry.post_flow(rt, principal, document.encode())
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _flow(
            request,
            rt,
            principal.workspace_id,
            name,
            status_code=problems.status_of(exc),
            **_refusal(exc, document),
        )
    return _saved(posted)


@router.post("/ui/flows/{name}/disable")
async def disable_flow(request: Request, rt: pages.Rt, principal: SignedIn, name: str) -> Response:
    try:
        await registry.disable_flow(rt, principal, name)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    return RedirectResponse(f"/ui/flows/{quote(name)}?disabled=1", status_code=303)


@router.get("/ui/flows/{name}/versions/{version}")
async def version_page(
    request: Request, rt: pages.Rt, principal: SignedIn, name: str, version: int
) -> Response:
    try:
        found = await registry.get_version(rt, principal.workspace_id, name, version)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    return pages.render(request, "flow_version.html", flow=found, text=pretty(found.document))


def _saved(posted: registry.Posted) -> Response:
    found = posted.flow
    outcome = "saved" if posted.created else "unchanged"
    return RedirectResponse(
        f"/ui/flows/{quote(found.name)}?{outcome}={found.version}", status_code=303
    )


def _refusal(exc: errors.TgrelayError, document: str) -> dict[str, Any]:
    """What a refused save shows: the problems beside the editor, the text kept."""
    if isinstance(exc, checks.FlowInvalid):
        count = len(exc.problems)
        return {
            "error": f"Not saved: the flow has {count} problem{'s' if count > 1 else ''}.",
            "flow_problems": list(exc.problems),
            "text": document,
        }
    return {"error": f"Not saved: {exc.message}", "flow_problems": [], "text": document}


async def _flows(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    flow_problems: list[str] | None = None,
    text: str | None = None,
) -> Response:
    return pages.render(
        request,
        "flows.html",
        status_code=status_code,
        flows=await registry.list_flows(rt, workspace_id),
        live=await history.live_counts(rt, workspace_id),
        text=STARTER if text is None else text,
        flow_problems=flow_problems or [],
        error=error,
    )


async def _flow(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    name: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    flow_problems: list[str] | None = None,
    text: str | None = None,
) -> Response:
    try:
        found = await registry.get_flow(rt, workspace_id, name)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    live = await history.live_counts(rt, workspace_id)
    return pages.render(
        request,
        "flow.html",
        status_code=status_code,
        flow=found.newest,
        versions=found.versions,
        live=live.get(name, 0),
        text=pretty(found.newest.document) if text is None else text,
        flow_problems=flow_problems or [],
        error=error,
        notice=notice,
    )
