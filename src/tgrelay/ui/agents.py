"""The web UI's agents page: who answers tickets, and who takes round-robin turns.

Its form is the PUT of /v1/support/agents/{telegram_user_id}; a refusal re-renders it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors
from tgrelay.runtime import Runtime
from tgrelay.support import agents
from tgrelay.ui import pages
from tgrelay.ui.forms import form_int
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form()]


@router.get("/ui/agents")
async def agents_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    form: dict[str, str] = {}
    edit = request.query_params.get("edit", "")
    if edit.isdigit():
        try:
            agent = await agents.get_agent(rt, principal.workspace_id, int(edit))
        except errors.NotFound as exc:
            return await _agents(
                request, rt, principal.workspace_id, status_code=404, error=exc.message
            )
        form = {
            "telegram_user_id": str(agent.telegram_user_id),
            "name": agent.name,
            "external_id": agent.external_id or "",
            "capacity": "" if agent.capacity is None else str(agent.capacity),
            "active": "on" if agent.active else "",
        }
    saved = request.query_params.get("saved")
    notice = f"Agent {saved} saved." if saved else None
    return await _agents(request, rt, principal.workspace_id, form=form, notice=notice)


@router.post("/ui/agents")
async def put_agent(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    telegram_user_id: Text = "",
    name: Text = "",
    external_id: Text = "",
    capacity: Text = "",
    active: Text = "",
) -> Response:
    form = {
        "telegram_user_id": telegram_user_id,
        "name": name,
        "external_id": external_id,
        "capacity": capacity,
        "active": active,
    }
    try:
        user_id = form_int(telegram_user_id, "the Telegram user id")
        if user_id is None:
            raise errors.InvalidInput("the Telegram user id is required")
        await agents.put_agent(
            rt,
            principal,
            user_id,
            name=name.strip(),
            external_id=external_id.strip() or None,
            capacity=form_int(capacity, "the capacity"),
            active=bool(active),
        )
    except errors.InvalidInput as exc:
        return await _agents(
            request,
            rt,
            principal.workspace_id,
            status_code=422,
            error=f"Not saved: {exc.message}",
            form=form,
        )
    return RedirectResponse(f"/ui/agents?saved={user_id}", status_code=303)


async def _agents(
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
        "agents.html",
        status_code=status_code,
        agents=await agents.list_agents(rt, workspace_id),
        form=form or {"active": "on"},
        error=error,
        notice=notice,
    )
