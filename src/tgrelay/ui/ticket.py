"""The web UI's page of one ticket: its facts and SLA clocks, the conversation with every earlier text of
edited messages, its history, and (admin sessions) forms that change its status, assign it
and answer the customer or add a note, through the same use cases as /v1/tickets.

A refusal (the state machine's, an unknown agent, an empty answer) re-renders the page with
the error on the form that caused it and what was typed kept.
"""

from __future__ import annotations

import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from tgrelay import errors, problems
from tgrelay.runtime import Runtime
from tgrelay.support import agents, business_rules, desks
from tgrelay.support import service as support
from tgrelay.support.models import (
    Agent,
    ChangedField,
    Desk,
    Direction,
    Ticket,
    TicketChange,
    TicketStatus,
)
from tgrelay.telegram.outbox.messages import MAX_TEXT_CHARS
from tgrelay.ui import pages, session
from tgrelay.ui.session import SignedIn
from tgrelay.ui.tickets import STATUSES, agent_label, desk_name
from tgrelay.workspaces.models import KeyScope

router = APIRouter(include_in_schema=False)
Text = Annotated[str, Form()]

# What the redirect after a change says on the page (`?done=`).
DONE = {
    "status": "Status changed.",
    "assignee": "Assignee changed.",
    "answer": "Answer queued for the customer (and shown in the topic).",
    "note": "Internal note added (shown in the topic, never sent to the customer).",
    "unchanged": "Nothing changed: the ticket was like that already.",
}
ANSWER, NOTE = "answer", "note"
SPEAKERS = {Direction.CUSTOMER: "Customer", Direction.AGENT: "Agent", Direction.NOTE: "Note"}


@router.get("/ui/tickets/{ticket_id}")
async def ticket_page(
    request: Request, rt: pages.Rt, principal: SignedIn, ticket_id: str, done: str = ""
) -> Response:
    return await _page(request, rt, principal.workspace_id, ticket_id, notice=DONE.get(done))


@router.post("/ui/tickets/{ticket_id}/status")
async def change_status(
    request: Request, rt: pages.Rt, principal: SignedIn, ticket_id: str, status: Text = ""
) -> Response:
    try:
        if status not in STATUSES:
            raise errors.InvalidInput(f"choose a status: one of {', '.join(STATUSES)}")
        before = await support.get_ticket(rt, principal.workspace_id, ticket_id)
        after = await support.change_ticket(rt, principal, ticket_id, status=TicketStatus(status))
    except errors.TgrelayError as exc:
        return await _refused(request, rt, principal.workspace_id, ticket_id, "status", exc)
    done = "status" if after.status is not before.status else "unchanged"
    return RedirectResponse(f"/ui/tickets/{ticket_id}?done={done}", status_code=303)


@router.post("/ui/tickets/{ticket_id}/assignee")
async def change_assignee(
    request: Request, rt: pages.Rt, principal: SignedIn, ticket_id: str, assignee: Text = ""
) -> Response:
    try:
        if assignee and not assignee.isdigit():
            raise errors.InvalidInput(f"choose an agent, not {assignee!r}")
        chosen = int(assignee) if assignee else None  # blank: nobody
        before = await support.get_ticket(rt, principal.workspace_id, ticket_id)
        after = await support.change_ticket(rt, principal, ticket_id, assignee_id=chosen)
    except errors.TgrelayError as exc:
        return await _refused(request, rt, principal.workspace_id, ticket_id, "assignee", exc)
    done = "assignee" if after.assignee_id != before.assignee_id else "unchanged"
    return RedirectResponse(f"/ui/tickets/{ticket_id}?done={done}", status_code=303)


@router.post("/ui/tickets/{ticket_id}/messages")
async def post_message(
    request: Request,
    rt: pages.Rt,
    principal: SignedIn,
    ticket_id: str,
    text: Text = "",
    kind: Text = ANSWER,
    idempotency_key: Text = "",
) -> Response:
    """An answer or a note; the form's key makes a resubmitted form (Back, a double click)
    return the first message instead of sending the text twice."""
    try:
        if kind not in (ANSWER, NOTE):
            raise errors.InvalidInput(f"send an {ANSWER} or a {NOTE}, not {kind!r}")
        if not text.strip():
            raise errors.InvalidInput("write the text first")
        if len(text) > MAX_TEXT_CHARS:
            raise errors.InvalidInput(
                f"the text is {len(text)} characters; Telegram takes {MAX_TEXT_CHARS}"
            )
        await support.post_message(
            rt,
            principal,
            ticket_id,
            text=text,
            internal=kind == NOTE,
            idempotency_key=idempotency_key.strip()[:128] or None,
        )
    except errors.TgrelayError as exc:
        return await _refused(
            request, rt, principal.workspace_id, ticket_id, "message", exc, typed=text
        )
    return RedirectResponse(f"/ui/tickets/{ticket_id}?done={kind}", status_code=303)


async def _refused(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    ticket_id: str,
    form: str,
    exc: errors.TgrelayError,
    *,
    typed: str = "",
) -> Response:
    return await _page(
        request,
        rt,
        workspace_id,
        ticket_id,
        status_code=problems.status_of(exc),
        form_errors={form: f"Not done: {exc.message}"},
        typed=typed,
    )


async def _page(
    request: Request,
    rt: Runtime,
    workspace_id: str,
    ticket_id: str,
    *,
    status_code: int = 200,
    notice: str | None = None,
    form_errors: dict[str, str] | None = None,
    typed: str = "",
) -> Response:
    try:
        ticket, clocks = await support.ticket_with_clocks(rt, workspace_id, ticket_id)
        messages = await support.list_messages(rt, workspace_id, ticket_id)
        changes = await support.list_changes(rt, workspace_id, ticket_id)
    except errors.NotFound as exc:
        return pages.render(request, "not_found.html", status_code=404, error=exc.message)
    agent_list = await agents.list_agents(rt, workspace_id)
    desk_list = await desks.list_desks(rt, workspace_id)
    by_id = {agent.telegram_user_id: agent for agent in agent_list}
    found = session.found_session(request)
    return pages.render(
        request,
        "ticket.html",
        status_code=status_code,
        ticket=ticket,
        # The SLA clocks (None: the desk has no policy), each with its name as the page says it.
        sla=None
        if clocks is None
        else [{"name": c.metric.value.replace("_", " "), "clock": c} for c in clocks],
        assignee=agent_label(ticket.assignee_id, by_id),
        desk=desk_name(ticket.desk_id, desk_list),
        channel=await _channel(rt, ticket, desk_list),
        messages=[
            {"message": m, "speaker": _speaker(m.direction, m.author_id, by_id)} for m in messages
        ],
        history=[_history_row(change, by_id) for change in changes],
        agents=agent_list,
        statuses=STATUSES,
        can_change=found is not None and found.scope is KeyScope.ADMIN,
        form_errors=form_errors or {},
        typed=typed,
        # A fresh key per rendering: one submission of this form is one message.
        idempotency_key=f"ui-{secrets.token_urlsafe(16)}",
        notice=notice,
    )


async def _channel(rt: Runtime, ticket: Ticket, desk_list: list[Desk]) -> str | None:
    """Where a business ticket's customer writes: the account's chat and how its connection
    stands; None for the bot's own private chat (every other ticket's)."""
    if ticket.business_connection_id is None:
        return None
    desk = next((d for d in desk_list if d.id == ticket.desk_id), None)
    connections = [] if desk is None else await desks.business_connections(rt, desk)
    found = next((c for c in connections if c.id == ticket.business_connection_id), None)
    if found is None:
        return "Telegram Business (an unknown connection)"
    lines = business_rules.header_lines(found)
    return " · ".join(line.removeprefix("Channel: ") for line in lines)


def _speaker(direction: Direction, author_id: int | None, by_id: dict[int, Agent]) -> str:
    """Who wrote a message: the customer, an agent by name, or an app through the API."""
    if direction is Direction.CUSTOMER:
        return SPEAKERS[direction]
    who = "API" if author_id is None else agent_label(author_id, by_id)
    return f"{SPEAKERS[direction]} · {who}"


def _history_row(change: TicketChange, by_id: dict[int, Agent]) -> dict[str, Any]:
    """A change in words: assignees and agent actors by name."""

    def shown(value: str | None) -> str:
        if value is None:
            return "—" if change.field is ChangedField.STATUS else "nobody"
        if change.field is ChangedField.ASSIGNEE and value.isdigit():
            return agent_label(int(value), by_id)
        return value

    actor = change.changed_by
    if actor.startswith("agent:") and actor.removeprefix("agent:").isdigit():
        actor = agent_label(int(actor.removeprefix("agent:")), by_id)
    return {
        "change": change,
        "previous": shown(change.previous),
        "value": shown(change.value),
        "by": actor,
    }
