"""The web UI's support desk setup pages: desks, agents and snippets (canned replies).

Each form posts to the same use cases as /v1/support; a refusal re-renders the form with
what was typed and the error, so a snippet's save-time validation reads on the form.
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
from tgrelay.support import agents, desks, snippets
from tgrelay.support.models import Assignment, Desk
from tgrelay.ui import pages
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


def form_int(field: str, what: str, *, blank: int | None = None) -> int | None:
    """A number typed in a form; `blank` when left empty."""
    if not field.strip():
        return blank
    try:
        return int(field.strip())
    except ValueError:
        raise errors.InvalidInput(f"{what} must be a whole number, not {field!r}") from None


def form_text(field: str) -> str | None:
    """A customer text: an empty box turns it off (null)."""
    return field.strip() or None


# --- desks ---------------------------------------------------------------------------------


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
            status_code=_status(exc),
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
            status_code=_status(exc),
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


def _status(exc: errors.TgrelayError) -> int:
    return problems.status_of(exc)


# --- agents --------------------------------------------------------------------------------


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


# --- snippets ------------------------------------------------------------------------------


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
            status_code=_status(exc),
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
            status_code=_status(exc),
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
