"""Use cases of tickets for the API, the UI and other domains; each opens its own
transaction and reads only the principal's workspace (another's ids are NotFound)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay import errors
from tgrelay.runtime import Runtime
from tgrelay.support import conversation, handoff, lifecycle, sla_timer, store, ticket_store
from tgrelay.support.models import Customer, Desk, Ticket, TicketChange, TicketMessage, TicketStatus
from tgrelay.support.rules import Refused
from tgrelay.support.sla import Clock
from tgrelay.workspaces.models import Principal

MAX_PAGE = 200


class Unset:
    """A PATCH field not given (distinct from an explicit null)."""


UNSET = Unset()


@dataclass(frozen=True, kw_only=True)
class TicketPage:
    tickets: list[Ticket]
    next_before: int | None  # the number to pass as `before` for the next (older) page


async def list_tickets(
    rt: Runtime,
    workspace_id: str,
    *,
    status: TicketStatus | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    desk_id: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> TicketPage:
    """Newest first (by number); `before` a ticket number from `next_before`; `unassigned`
    only tickets no agent has (the UI's "Unassigned" filter)."""
    async with rt.db.engine.connect() as conn:
        found = await ticket_store.list_tickets(
            conn,
            workspace_id,
            status=status,
            assignee_id=assignee_id,
            unassigned=unassigned,
            desk_id=desk_id,
            before=before,
            limit=limit,
        )
    return TicketPage(tickets=found, next_before=found[-1].number if len(found) == limit else None)


async def get_ticket(rt: Runtime, workspace_id: str, ticket_id: str) -> Ticket:
    async with rt.db.engine.connect() as conn:
        return await _ticket(conn, workspace_id, ticket_id)


async def ticket_with_clocks(
    rt: Runtime, workspace_id: str, ticket_id: str
) -> tuple[Ticket, list[Clock] | None]:
    """A ticket and its SLA clocks now (None: its desk has no SLA policy)."""
    async with rt.db.engine.connect() as conn:
        ticket = await _ticket(conn, workspace_id, ticket_id)
        return ticket, await sla_timer.current_clocks(conn, ticket, rt.clock())


async def list_messages(rt: Runtime, workspace_id: str, ticket_id: str) -> list[TicketMessage]:
    """A ticket's messages, oldest first, each with its earlier texts (`versions`)."""
    async with rt.db.engine.connect() as conn:
        await _ticket(conn, workspace_id, ticket_id)
        return await ticket_store.list_messages(conn, ticket_id)


async def list_changes(rt: Runtime, workspace_id: str, ticket_id: str) -> list[TicketChange]:
    """A ticket's history of statuses and assignments, oldest first."""
    async with rt.db.engine.connect() as conn:
        await _ticket(conn, workspace_id, ticket_id)
        return await ticket_store.list_changes(conn, ticket_id)


async def post_message(
    rt: Runtime,
    principal: Principal,
    ticket_id: str,
    *,
    text: str,
    internal: bool = False,
    idempotency_key: str | None = None,
) -> tuple[TicketMessage, bool]:
    """An app's answer (relayed to the customer, mirrored in the topic) or internal note
    (topic only); (message, created). A repeated idempotency key returns the first one."""
    try:
        async with rt.db.transaction() as conn:
            ticket = await _ticket(conn, principal.workspace_id, ticket_id, for_update=True)
            if idempotency_key is not None:
                earlier = await ticket_store.message_by_key(conn, ticket.id, idempotency_key)
                if earlier is not None:
                    return earlier, False
            if internal:
                message_id = await conversation.add_note(
                    conn,
                    rt,
                    ticket,
                    text,
                    author_id=None,
                    topic_message_id=None,
                    at=rt.clock(),
                    idempotency_key=idempotency_key,
                )
            else:
                desk = await _desk(conn, ticket)
                _, message_id = await conversation.reply(
                    conn, rt, desk, ticket, text, author_id=None, idempotency_key=idempotency_key
                )
            found = await ticket_store.message(conn, message_id)
    except IntegrityError:
        # The same key at the same moment: the other request's message stands.
        if idempotency_key is None:
            raise
        async with rt.db.engine.connect() as conn:
            earlier = await ticket_store.message_by_key(conn, ticket_id, idempotency_key)
        if earlier is None:
            raise
        return earlier, False
    assert found is not None
    return found, True


async def change_ticket(
    rt: Runtime,
    principal: Principal,
    ticket_id: str,
    *,
    status: TicketStatus | Unset = UNSET,
    assignee_id: int | Unset | None = UNSET,
) -> Ticket:
    """Move and/or assign a ticket by the state machine's rules: Conflict with the reason on
    a refused move; InvalidInput for an assignee who is no agent of the workspace."""
    async with rt.db.transaction() as conn:
        ticket = await _ticket(conn, principal.workspace_id, ticket_id, for_update=True)
        changed_by = lifecycle.API
        if not isinstance(assignee_id, Unset):
            agent = None
            if assignee_id is not None:
                agent = await store.agent(conn, principal.workspace_id, assignee_id)
                if agent is None:
                    raise errors.InvalidInput(
                        f"no agent {assignee_id}: an agent is a Telegram user who wrote in a "
                        "ticket's topic, or one added with PUT /v1/support/agents/{id}"
                    )
            ticket = await lifecycle.assign(conn, rt, ticket, agent, changed_by=changed_by)
        if not isinstance(status, Unset) and status is not ticket.status:
            moved = await lifecycle.change_status(conn, rt, ticket, status, changed_by=changed_by)
            if isinstance(moved, Refused):
                raise errors.Conflict(f"ticket {ticket_id} cannot become {status}: {moved.reason}")
            ticket = moved
        return ticket


async def _ticket(
    conn: AsyncConnection, workspace_id: str, ticket_id: str, *, for_update: bool = False
) -> Ticket:
    found = await ticket_store.ticket(
        conn, ticket_id, workspace_id=workspace_id, for_update=for_update
    )
    if found is None:
        raise errors.NotFound(f"no ticket {ticket_id}")
    return found


async def _desk(conn: AsyncConnection, ticket: Ticket) -> Desk:
    found = await store.desk(conn, ticket.desk_id)
    if found is None:
        raise errors.Conflict(f"ticket {ticket.id}'s desk {ticket.desk_id} was deleted")
    return found


# --- a conversation's handoff (issue 21) ----------------------------------------------------


async def open_handoff(
    conn: AsyncConnection,
    rt: Runtime,
    *,
    bot_id: int,
    chat_id: int,
    customer: Customer,
    title: str,
    summary: str,
    at: datetime,
) -> str | None:
    """A conversation's handoff step, in the caller's transaction: the customer's ticket
    (opened, or the one still taking their messages) with `summary` noted in its topic.
    None when done; why not otherwise (the bot has no desk, the chat is not private)."""
    return await handoff.open_handoff(
        conn,
        rt,
        bot_id=bot_id,
        chat_id=chat_id,
        customer=customer,
        title=title,
        summary=summary,
        at=at,
    )
