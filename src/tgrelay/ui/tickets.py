"""The web UI's list of support tickets: newest first, filtered by status, assignee and desk
(GET parameters the paging link keeps), paged by ticket number like GET /v1/tickets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.responses import Response

from tgrelay import errors
from tgrelay.support import agents, desks
from tgrelay.support import service as support
from tgrelay.support.models import Agent, Desk, TicketStatus
from tgrelay.ui import pages
from tgrelay.ui.session import SignedIn

router = APIRouter(include_in_schema=False)

TICKETS_PER_PAGE = 50
# The assignee filter's value for tickets no agent has (the others are Telegram user ids).
UNASSIGNED = "unassigned"
STATUSES = [status.value for status in TicketStatus]


@dataclass(frozen=True, kw_only=True)
class Filters:
    """The list's GET parameters as typed; `query` is what the paging link carries on."""

    status: TicketStatus | None = None
    assignee_id: int | None = None
    unassigned: bool = False
    desk_id: str | None = None
    limit: int = TICKETS_PER_PAGE
    before: int | None = None  # a ticket number: the page of older ones
    query: dict[str, str]  # the filters given, without `before`


def read_filters(params: dict[str, str]) -> Filters:
    """The filters of a query string; blank ones are no filter. InvalidInput names a bad one."""
    given = {name: params.get(name, "").strip() for name in ("status", "assignee", "desk", "limit")}
    query = {name: value for name, value in given.items() if value}
    status = given["status"]
    if status and status not in STATUSES:
        raise errors.InvalidInput(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
    assignee = given["assignee"]
    if assignee and assignee != UNASSIGNED and not assignee.isdigit():
        raise errors.InvalidInput(
            f"the assignee is an agent's Telegram user id or {UNASSIGNED!r}, not {assignee!r}"
        )
    limit = given["limit"]
    if limit and not (limit.isdigit() and 1 <= int(limit) <= support.MAX_PAGE):
        raise errors.InvalidInput(f"the page size is a number from 1 to {support.MAX_PAGE}")
    before = params.get("before", "").strip()
    if before and not before.isdigit():
        raise errors.InvalidInput(f"before is a ticket number, not {before!r}")
    return Filters(
        status=TicketStatus(status) if status else None,
        assignee_id=int(assignee) if assignee.isdigit() else None,
        unassigned=assignee == UNASSIGNED,
        desk_id=given["desk"] or None,
        limit=int(limit) if limit else TICKETS_PER_PAGE,
        before=int(before) if before else None,
        query=query,
    )


def agent_label(agent_id: int | None, by_id: dict[int, Agent]) -> str:
    """An assignee as the pages name them: "Bob (@bob)", or the bare id of one since removed."""
    if agent_id is None:
        return "—"
    agent = by_id.get(agent_id)
    if agent is None:
        return str(agent_id)
    return f"{agent.name} (@{agent.username})" if agent.username else agent.name


@router.get("/ui/tickets")
async def tickets_page(request: Request, rt: pages.Rt, principal: SignedIn) -> Response:
    workspace_id = principal.workspace_id
    agent_list = await agents.list_agents(rt, workspace_id)
    desk_list = await desks.list_desks(rt, workspace_id)
    raw = dict(request.query_params)
    context: dict[str, Any] = {
        "agents": agent_list,
        "desks": desk_list,
        "statuses": STATUSES,
        "unassigned": UNASSIGNED,
        "form": {name: raw.get(name, "") for name in ("status", "assignee", "desk")},
    }
    try:
        chosen = read_filters(raw)
    except errors.InvalidInput as exc:
        return pages.render(
            request,
            "tickets.html",
            status_code=422,
            error=f"Not filtered: {exc.message}",
            rows=[],
            older=None,
            filtered=True,
            **context,
        )
    found = await support.list_tickets(
        rt,
        workspace_id,
        status=chosen.status,
        assignee_id=chosen.assignee_id,
        unassigned=chosen.unassigned,
        desk_id=chosen.desk_id,
        before=chosen.before,
        limit=chosen.limit + 1,  # one more than shown: whether an older page exists at all
    )
    shown = found.tickets[: chosen.limit]
    older = None
    if len(found.tickets) > chosen.limit:
        older = f"/ui/tickets?{urlencode(chosen.query | {'before': str(shown[-1].number)})}"
    by_id = {agent.telegram_user_id: agent for agent in agent_list}
    desk_names = {desk.id: desk.name for desk in desk_list}
    return pages.render(
        request,
        "tickets.html",
        rows=[
            {
                "ticket": ticket,
                "assignee": agent_label(ticket.assignee_id, by_id),
                "desk": desk_names.get(ticket.desk_id, ticket.desk_id),
            }
            for ticket in shown
        ],
        older=older,
        filtered=bool(chosen.query.keys() - {"limit"}) or chosen.before is not None,
        **context,
    )


def desk_name(desk_id: str, desk_list: list[Desk]) -> str:
    """A desk's name, or its id once it is deleted (its tickets stay)."""
    return next((desk.name for desk in desk_list if desk.id == desk_id), desk_id)
