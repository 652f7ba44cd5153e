"""The web UI's desks pages: a bot and a forum group answering tickets, and its settings.

Each form posts to the same use cases as /v1/support/desks; a refusal (a group that is no
forum, a bot without the right to manage topics) re-renders the form with what was typed.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors, problems
from tgrelay.bots import service as bots
from tgrelay.bots.models import BotStatus
from tgrelay.groups import service as groups
from tgrelay.groups.models import ConnectionStatus
from tgrelay.runtime import Runtime
from tgrelay.support import desks
from tgrelay.support.models import Assignment, Desk
from tgrelay.ui import pages
from tgrelay.ui.forms import form_int, form_text
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form()]
ASSIGNMENTS = [
    (Assignment.CLAIM_ON_REPLY.value, "Claim on reply: the first agent to answer takes it"),
    (Assignment.ROUND_ROBIN.value, "Round robin: the longest idle active agent"),
    (Assignment.MANUAL.value, "Manual: /assign, the button or the API"),
]


def duration(seconds: int) -> str:
    """A reopen window in the largest whole unit: "7 days", "1 hour", "90 s"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("min", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}" + ("s" if count != 1 and unit != "min" else "")
    return f"{seconds} s"


@router.get("/ui/desks")
async def desks_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    deleted = request.query_params.get("deleted")
    return await _desks(request, rt, principal.workspace_id, notice=deleted and "Desk deleted.")


@router.post("/ui/desks")
async def create_desk(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    bot_id: Text = "",
    connection_id: Text = "",
    name: Text = "",
    assignment: Text = Assignment.CLAIM_ON_REPLY.value,
) -> Response:
    form = {"bot_id": bot_id, "connection_id": connection_id, "name": name}
    try:
        chosen_bot = form_int(bot_id, "the bot")
        if chosen_bot is None or not connection_id:
            raise errors.InvalidInput("choose a bot and a forum group")
        desk = await desks.create_desk(
            rt,
            principal,
            bot_id=chosen_bot,
            connection_id=connection_id,
            name=name.strip() or None,
            assignment=_assignment(assignment),
        )
    except errors.TgrelayError as exc:
        return await _desks(
            request,
            rt,
            principal.workspace_id,
            status_code=problems.status_of(exc),
            error=f"No desk created: {exc.message}",
            form=form,
        )
    return RedirectResponse(f"/ui/desks/{desk.id}?created=1", status_code=303)


@router.get("/ui/desks/{desk_id}")
async def desk_page(request: Request, rt: pages.Rt, principal: SignedIn, desk_id: str) -> Response:
    notice = "Desk created." if request.query_params.get("created") else None
    if request.query_params.get("saved"):
        notice = "Settings saved."
    return await _desk(request, rt, principal.workspace_id, desk_id, notice=notice)


@router.post("/ui/desks/{desk_id}")
async def update_desk(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    desk_id: str,
    name: Text = "",
    connection_id: Text = "",
    assignment: Text = "",
    reopen_window_seconds: Text = "",
    greeting_text: Text = "",
    closing_text: Text = "",
) -> Response:
    try:
        changes: dict[str, Any] = {
            "name": name.strip(),
            "connection_id": connection_id,
            "assignment": _assignment(assignment),
            "reopen_window_seconds": form_int(reopen_window_seconds, "the reopen window"),
            "greeting_text": form_text(greeting_text),
            "closing_text": form_text(closing_text),
        }
        await desks.update_desk(rt, principal, desk_id, changes)
    except errors.TgrelayError as exc:
        return await _desk(
            request,
            rt,
            principal.workspace_id,
            desk_id,
            status_code=problems.status_of(exc),
            error=f"Not saved: {exc.message}",
        )
    return RedirectResponse(f"/ui/desks/{desk_id}?saved=1", status_code=303)


@router.post("/ui/desks/{desk_id}/delete")
async def delete_desk(
    request: Request, rt: pages.Rt, principal: SignedIn, desk_id: str
) -> Response:
    try:
        await desks.delete_desk(rt, principal, desk_id)
    except errors.NotFound as exc:
        return await _desks(request, rt, principal.workspace_id, status_code=404, error=exc.message)
    return RedirectResponse(f"/ui/desks?deleted={quote(desk_id)}", status_code=303)


async def _desks(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    listed = await desks.list_desks(rt, workspace_id)
    bot_list = await bots.list_bots(rt, workspace_id)
    connections = await groups.list_connections(rt, workspace_id)
    return pages.render(
        request,
        "desks.html",
        status_code=status_code,
        desks=[_row(desk, bot_list, connections) for desk in listed],
        bots=[b for b in bot_list if b.status is not BotStatus.DISCONNECTED],
        forums=_forums(connections),
        assignments=ASSIGNMENTS,
        form=form or {},
        error=error,
        notice=notice,
    )


async def _desk(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    desk_id: str,
    *,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    try:
        desk = await desks.get_desk(rt, workspace_id, desk_id)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    connections = await groups.list_connections(rt, workspace_id)
    return pages.render(
        request,
        "desk.html",
        status_code=status_code,
        desk=desk,
        business_connections=await desks.business_connections(rt, desk),
        row=_row(desk, await bots.list_bots(rt, workspace_id), connections),
        forums=[c for c in _forums(connections) if c.bot_id == desk.bot_id],
        assignments=ASSIGNMENTS,
        error=error,
        notice=notice,
    )


def _row(desk: Desk, bot_list: list[Any], connections: list[Any]) -> dict[str, Any]:
    """A desk as the list shows it: its bot's @username and its group's title."""
    bot = next((b for b in bot_list if b.id == desk.bot_id), None)
    group = next((c for c in connections if c.id == desk.connection_id), None)
    return {
        "desk": desk,
        "bot": f"@{bot.username}" if bot else str(desk.bot_id),
        "group": (group.title or str(group.chat_id)) if group else desk.connection_id,
        "window": duration(desk.reopen_window_seconds),
    }


def _forums(connections: list[Any]) -> list[Any]:
    return [c for c in connections if c.is_forum and c.status is ConnectionStatus.ACTIVE]


def _assignment(value: str) -> Assignment:
    try:
        return Assignment(value)
    except ValueError:
        raise errors.InvalidInput(f"unknown assignment {value!r}") from None
