"""A ticket's state: its status (with what each move does in Telegram), its assignee, its
header and the close timer, inside the caller's transaction.

A ticket about to change is read `for_update` by the caller; each use case takes it and
returns it as it is after. The header is re-rendered at the end of a change it shows
(`show`), so a use case that changes status and assignee at once costs one edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.runtime import Runtime
from tgrelay.support import (
    business_rules,
    business_store,
    header,
    jobs,
    rules,
    sends,
    sla_timer,
    store,
    ticket_store,
)
from tgrelay.support.models import Agent, ChangedField, Ticket, TicketChange, TicketStatus
from tgrelay.support.rules import Refused
from tgrelay.support.sends import TopicOp
from tgrelay.support.sla import Clock

log = structlog.get_logger(__name__)

# Who made a change, as ticket_changes.changed_by and the events' changed_by say it.
CUSTOMER = "customer"
SYSTEM = "system"
API = "api"


def agent_actor(telegram_user_id: int) -> str:
    return f"agent:{telegram_user_id}"


# --- status and assignment -----------------------------------------------------------------


async def change_status(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    target: TicketStatus,
    *,
    changed_by: str,
    note: str | None = None,
    show_header: bool = True,
) -> Ticket | Refused:
    """Move the ticket if the state machine allows it (else why not), with what the move
    does in Telegram: resolve closes and marks the topic and says the desk's closing text,
    reopen opens it again, close marks it."""
    refused = rules.check(ticket.status, target)
    if refused is not None:
        return refused
    now = rt.clock()
    values: dict[str, object] = {"status": target.value, "updated_at": now}
    if target is TicketStatus.RESOLVED:
        values.update(resolved_at=now, resolution_note=note)
    elif target is TicketStatus.CLOSED:
        values["closed_at"] = now
    elif ticket.status is TicketStatus.RESOLVED:  # reopened
        values.update(resolved_at=None, resolution_note=None)
    await ticket_store.change_ticket(conn, ticket.id, **values)
    await record_change(
        conn, ticket, ChangedField.STATUS, ticket.status, target, changed_by, now, note
    )
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_STATUS_CHANGED,
        data=catalog.TicketStatusChangedData(
            ticket_id=ticket.id,
            previous_status=ticket.status.value,
            new_status=target.value,
            changed_by=changed_by,
        ),
        now=now,
    )
    changed = await current(conn, ticket.id)
    await sla_timer.plan(conn, rt, changed)
    if target is TicketStatus.RESOLVED:
        await _resolved(conn, rt, changed, now)
    elif target is TicketStatus.CLOSED:
        await sends.topic_state(conn, rt, changed, TopicOp.TITLE)
        if ticket.status is not TicketStatus.RESOLVED:  # a resolved ticket's topic is closed
            await sends.topic_state(conn, rt, changed, TopicOp.CLOSE)
    elif ticket.status is TicketStatus.RESOLVED:
        await sends.topic_state(conn, rt, changed, TopicOp.REOPEN)
        await sends.topic_state(conn, rt, changed, TopicOp.TITLE)
    log.info("ticket.status_changed", ticket_id=ticket.id, status=target.value, by=changed_by)
    return await show(conn, rt, ticket.id) if show_header else changed


async def _resolved(conn: AsyncConnection, rt: Runtime, ticket: Ticket, now: datetime) -> None:
    assert ticket.resolved_at is not None
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_RESOLVED,
        data=catalog.TicketResolvedData(
            ticket_id=ticket.id,
            resolution_time=(now - ticket.created_at).total_seconds(),
            resolution_note=ticket.resolution_note,
        ),
        now=now,
    )
    await sends.topic_state(conn, rt, ticket, TopicOp.TITLE)
    await sends.topic_state(conn, rt, ticket, TopicOp.CLOSE)
    desk = await store.desk(conn, ticket.desk_id)
    if desk is not None and desk.closing_text:
        await sends.to_customer(conn, rt, ticket, desk.closing_text)
    window = timedelta(seconds=desk.reopen_window_seconds if desk is not None else 0)
    await jobs.schedule_close(
        conn, rt, ticket.id, ticket.resolved_at, run_at=rules.closes_at(ticket.resolved_at, window)
    )


async def assign(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    agent: Agent | None,
    *,
    changed_by: str,
    show_header: bool = True,
) -> Ticket:
    """Give the ticket to `agent` (None: nobody); nothing when it holds it already."""
    new_id = None if agent is None else agent.telegram_user_id
    if new_id == ticket.assignee_id:
        return ticket
    now = rt.clock()
    await ticket_store.change_ticket(conn, ticket.id, assignee_id=new_id, updated_at=now)
    if agent is not None:
        await store.change_agent(
            conn, ticket.workspace_id, agent.telegram_user_id, last_assigned_at=now, updated_at=now
        )
    await record_change(
        conn,
        ticket,
        ChangedField.ASSIGNEE,
        None if ticket.assignee_id is None else str(ticket.assignee_id),
        None if new_id is None else str(new_id),
        changed_by,
        now,
    )
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_ASSIGNED,
        data=catalog.TicketAssignedData(
            ticket_id=ticket.id,
            agent_id=new_id,
            external_id=None if agent is None else agent.external_id,
            previous_agent_id=ticket.assignee_id,
            assignment_time=now,
        ),
        now=now,
    )
    return await show(conn, rt, ticket.id) if show_header else await current(conn, ticket.id)


async def close_if_still_resolved(
    conn: AsyncConnection, rt: Runtime, ticket_id: str, resolved_at: datetime
) -> None:
    """The reopen window's end: close the ticket unless it was reopened or resolved again."""
    ticket = await ticket_store.ticket(conn, ticket_id, for_update=True)
    if ticket is None or ticket.status is not TicketStatus.RESOLVED:
        return
    if ticket.resolved_at != resolved_at:
        return
    await change_status(conn, rt, ticket, TicketStatus.CLOSED, changed_by=SYSTEM)


# --- the header ----------------------------------------------------------------------------


async def show(
    conn: AsyncConnection, rt: Runtime, ticket_id: str, *, clocks: Sequence[Clock] | None = None
) -> Ticket:
    """Re-render the header at a new version (older queued edits then drop themselves);
    `clocks` when the caller computed them already (else they are read)."""
    ticket = await current(conn, ticket_id)
    await ticket_store.change_ticket(conn, ticket_id, header_version=ticket.header_version + 1)
    ticket = await current(conn, ticket_id)
    await sends.header(conn, rt, ticket, await header_text(conn, rt, ticket, clocks=clocks))
    return ticket


async def header_text(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, *, clocks: Sequence[Clock] | None = None
) -> str:
    """The header as the ticket reads now, its assignee by name, its SLA clocks if any, a
    business chat's channel and its warning."""
    now = rt.clock()
    if clocks is None:
        clocks = await sla_timer.current_clocks(conn, ticket, now)
    channel: list[str] = []
    if ticket.business_connection_id is not None:
        connection = await business_store.connection(conn, ticket.business_connection_id)
        channel = business_rules.header_lines(connection)
    return header.header_text(
        ticket,
        assignee=await assignee_name(conn, ticket),
        clocks=clocks or (),
        now=now,
        channel=channel,
    )


async def assignee_name(conn: AsyncConnection, ticket: Ticket) -> str | None:
    """The assignee as the header names them (their id when they are no agent any more)."""
    if ticket.assignee_id is None:
        return None
    agent = await store.agent(conn, ticket.workspace_id, ticket.assignee_id)
    if agent is None:
        return str(ticket.assignee_id)
    return f"{agent.name} (@{agent.username})" if agent.username else agent.name


# --- shared with the conversation -------------------------------------------------------------


async def record_change(
    conn: AsyncConnection,
    ticket: Ticket,
    field: ChangedField,
    previous: str | None,
    value: str | None,
    changed_by: str,
    at: datetime,
    note: str | None = None,
) -> None:
    """One line of the ticket's history (ticket_changes)."""
    await ticket_store.add_change(
        conn,
        TicketChange(
            ticket_id=ticket.id,
            field=field,
            previous=previous,
            value=value,
            changed_by=changed_by,
            note=note,
            at=at,
        ),
    )


async def current(conn: AsyncConnection, ticket_id: str) -> Ticket:
    """The ticket as this transaction sees it now (it exists: the caller holds it)."""
    ticket = await ticket_store.ticket(conn, ticket_id)
    assert ticket is not None
    return ticket
