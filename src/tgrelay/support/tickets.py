"""The ticket use cases, inside the caller's transaction (a process_update job's, an API
request's): each writes its rows, its ticket_changes line, its events and its sends.

A ticket about to change is read `for_update` by the caller; each use case takes it and
returns it as it is after. The header is re-rendered at the end of a change it shows
(`show`), so a use case that changes status and assignee at once costs one edit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.groups import service as groups
from tgrelay.runtime import Runtime
from tgrelay.support import header, jobs, rules, sends, store, ticket_store
from tgrelay.support.models import (
    Agent,
    Assignment,
    ChangedField,
    Customer,
    Desk,
    Direction,
    MessageSource,
    RelayStatus,
    Ticket,
    TicketChange,
    TicketMessage,
    TicketStatus,
)
from tgrelay.support.rules import CustomerRoute, Refused
from tgrelay.support.sends import Side, TopicOp

log = structlog.get_logger(__name__)

CUSTOMER = "customer"
SYSTEM = "system"
API = "api"
NOTE_MARK = "📝 Internal note — not sent to the customer"
NO_TEXT = "(no text)"


def agent_actor(telegram_user_id: int) -> str:
    return f"agent:{telegram_user_id}"


@dataclass(frozen=True, kw_only=True)
class Written:
    """A Telegram message as a ticket records it."""

    message_id: int
    text: str | None  # the text or caption
    kind: str  # text | photo | document | video | voice | sticker | other
    reply_to: int | None  # the message it replies to, in its own chat
    author_id: int
    at: datetime  # when tgrelay stored its update (the relay latency starts here)


class NoDeskGroup(LookupError):
    """The desk's group connection is gone: a ticket has nowhere to be answered."""


# --- the customer's side -------------------------------------------------------------------


async def customer_wrote(
    conn: AsyncConnection, rt: Runtime, desk: Desk, customer: Customer, written: Written
) -> Ticket:
    """A customer's private message: it opens a ticket, joins one, or reopens one
    (rules.route_customer_message); the ticket it went to."""
    now = rt.clock()
    latest = await ticket_store.latest_of_customer(conn, desk.bot_id, customer.id, for_update=True)
    route = rules.route_customer_message(
        None if latest is None else latest.status,
        resolved_at=None if latest is None else latest.resolved_at,
        reopen_window=timedelta(seconds=desk.reopen_window_seconds),
        now=now,
    )
    if route is CustomerRoute.NEW_TICKET or latest is None:
        return await open_ticket(conn, rt, desk, customer, written)
    ticket = latest
    if route is CustomerRoute.BACK_TO_OPEN or route is CustomerRoute.REOPEN:
        # First: a reopened topic takes the copy that follows.
        changed = await change_status(conn, rt, latest, TicketStatus.OPEN, changed_by=CUSTOMER)
        assert not isinstance(changed, Refused)  # pending/resolved → open is always allowed
        ticket = changed
    await _record_customer(conn, rt, ticket, written)
    return ticket


async def open_ticket(
    conn: AsyncConnection, rt: Runtime, desk: Desk, customer: Customer, written: Written
) -> Ticket:
    """A new ticket: its number, topic, header, first message and the desk's greeting."""
    now = rt.clock()
    group = await groups.connection_on(conn, desk.connection_id)
    if group is None:
        raise NoDeskGroup(f"desk {desk.id}'s group connection {desk.connection_id} is deleted")
    ticket_id = f"tkt_{secrets.token_hex(8)}"
    await ticket_store.add_ticket(
        conn,
        {
            "id": ticket_id,
            "workspace_id": desk.workspace_id,
            "number": await ticket_store.next_number(conn, desk.workspace_id),
            "desk_id": desk.id,
            "bot_id": desk.bot_id,
            "customer_chat_id": customer.id,
            "customer_id": customer.id,
            "customer": ticket_store.customer_json(customer),
            "subject": header.subject_of(written.text, written.kind),
            "status": TicketStatus.NEW.value,
            "topic_chat_id": group.chat_id,
            "created_at": now,
            "updated_at": now,
        },
    )
    ticket = await _reread(conn, ticket_id)
    await _history(conn, ticket, ChangedField.STATUS, None, TicketStatus.NEW, CUSTOMER, now)
    await sends.create_topic(conn, rt, ticket, header.topic_title(ticket))
    if desk.assignment is Assignment.ROUND_ROBIN:
        picked = await store.next_in_rotation(conn, desk.workspace_id)
        if picked is not None:
            ticket = await assign(conn, rt, ticket, picked, changed_by=SYSTEM, show_header=False)
    await sends.header(conn, rt, ticket, await _header_text(conn, ticket))
    await _record_customer(conn, rt, ticket, written)
    if desk.greeting_text:
        await sends.to_customer(conn, rt, ticket, desk.greeting_text)
    log.info("ticket.opened", ticket_id=ticket.id, number=ticket.number, desk_id=desk.id)
    return ticket


async def _record_customer(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, written: Written
) -> None:
    row_id = await _add_message(
        conn, ticket, written, direction=Direction.CUSTOMER, customer_message_id=written.message_id
    )
    await sends.relay(
        conn,
        rt,
        ticket,
        message_id=row_id,
        to=Side.TOPIC,
        from_message_id=written.message_id,
        reply_to=written.reply_to,
    )
    await _message_added(conn, rt, ticket, row_id)


async def customer_edited(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, message_id: int, text: str | None
) -> bool:
    """The customer edited a message of the ticket: keep the old text, mirror the new one in
    the topic; False when the ticket does not know the message."""
    found = await ticket_store.message_by_customer_id(conn, ticket.id, message_id)
    if found is None or found.direction is not Direction.CUSTOMER:
        return False
    await _edited(conn, rt, ticket, found, text, to=Side.TOPIC)
    return True


# --- the agents' side ----------------------------------------------------------------------


async def agent_wrote(
    conn: AsyncConnection, rt: Runtime, desk: Desk, ticket: Ticket, written: Written
) -> Ticket:
    """An agent's message in the topic: relayed to the customer; the first reply opens the
    ticket, may claim it (desk.assignment) and is its first response."""
    row_id = await _add_message(
        conn, ticket, written, direction=Direction.AGENT, topic_message_id=written.message_id
    )
    await sends.relay(
        conn,
        rt,
        ticket,
        message_id=row_id,
        to=Side.CUSTOMER,
        from_message_id=written.message_id,
        reply_to=written.reply_to,
    )
    await _message_added(conn, rt, ticket, row_id)
    return await _answered(conn, rt, desk, ticket, agent_id=written.author_id)


async def agent_edited(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, message_id: int, text: str | None
) -> bool:
    """An agent edited a relayed message in the topic: mirrored to the customer (a note's
    edit is only recorded); False when the ticket does not know the message."""
    found = await ticket_store.message_by_topic_id(conn, ticket.id, message_id)
    if found is None or found.direction is Direction.CUSTOMER:
        return False
    await _edited(
        conn,
        rt,
        ticket,
        found,
        text,
        to=None if found.direction is Direction.NOTE else Side.CUSTOMER,
    )
    return True


async def add_note(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    text: str,
    *,
    author_id: int | None,
    topic_message_id: int | None,
    at: datetime,
    idempotency_key: str | None = None,
) -> int:
    """An internal note: recorded, never relayed; the bot marks it in the topic (a reply to
    the agent's message, or the note itself when it came from the API). Its message id."""
    row_id = await ticket_store.add_message(
        conn,
        {
            "ticket_id": ticket.id,
            "direction": Direction.NOTE.value,
            "source": (MessageSource.TELEGRAM if author_id else MessageSource.API).value,
            "author_id": author_id,
            "kind": "text",
            "text": text,
            "topic_message_id": topic_message_id,
            "relay_status": RelayStatus.INTERNAL.value,
            "idempotency_key": idempotency_key,
            "created_at": at,
        },
    )
    if topic_message_id is not None:
        await sends.in_topic(conn, rt, ticket, NOTE_MARK, reply_to=topic_message_id)
    else:
        await sends.relay_text(conn, rt, ticket, message_id=row_id, to=Side.TOPIC, text=text)
    await _message_added(conn, rt, ticket, row_id)
    return row_id


async def reply(
    conn: AsyncConnection,
    rt: Runtime,
    desk: Desk,
    ticket: Ticket,
    text: str,
    *,
    author_id: int | None,
    idempotency_key: str | None = None,
) -> tuple[Ticket, int]:
    """A text answer with no Telegram original: an app's through the API (`author_id` None)
    or an agent's canned reply (`/s`). Sent to the customer and shown in the topic; the
    ticket after, and the message's id."""
    now = rt.clock()
    row_id = await ticket_store.add_message(
        conn,
        {
            "ticket_id": ticket.id,
            "direction": Direction.AGENT.value,
            "source": (MessageSource.API if author_id is None else MessageSource.TELEGRAM).value,
            "author_id": author_id,
            "kind": "text",
            "text": text,
            "relay_status": RelayStatus.PENDING.value,
            "idempotency_key": idempotency_key,
            "created_at": now,
        },
    )
    await sends.relay_text(conn, rt, ticket, message_id=row_id, to=Side.CUSTOMER, text=text)
    await sends.relay_text(conn, rt, ticket, message_id=row_id, to=Side.TOPIC, text=text)
    await _message_added(conn, rt, ticket, row_id)
    return await _answered(conn, rt, desk, ticket, agent_id=author_id), row_id


async def _answered(
    conn: AsyncConnection, rt: Runtime, desk: Desk, ticket: Ticket, *, agent_id: int | None
) -> Ticket:
    now = rt.clock()
    changed_by = API if agent_id is None else agent_actor(agent_id)
    shown = False
    target = rules.after_agent_reply(ticket.status)
    if target is not None:
        moved = await change_status(
            conn, rt, ticket, target, changed_by=changed_by, show_header=False
        )
        assert not isinstance(moved, Refused)
        ticket, shown = moved, True
    if (
        agent_id is not None
        and ticket.assignee_id is None
        and desk.assignment is Assignment.CLAIM_ON_REPLY
    ):
        claimer = await store.agent(conn, ticket.workspace_id, agent_id)
        if claimer is not None:
            ticket = await assign(
                conn, rt, ticket, claimer, changed_by=changed_by, show_header=False
            )
            shown = True
    if ticket.first_response_at is None:
        await ticket_store.change_ticket(conn, ticket.id, first_response_at=now, updated_at=now)
        await events.emit(
            conn,
            rt,
            workspace_id=ticket.workspace_id,
            event_type=EventType.TICKET_FIRST_RESPONSE,
            data=catalog.TicketFirstResponseData(
                ticket_id=ticket.id,
                agent_id=agent_id,
                response_time=(now - ticket.created_at).total_seconds(),
            ),
            now=now,
        )
        shown = True
    return await show(conn, rt, ticket.id) if shown else ticket


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
    await _history(conn, ticket, ChangedField.STATUS, ticket.status, target, changed_by, now, note)
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
    changed = await _reread(conn, ticket.id)
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
    await _history(
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
    return await show(conn, rt, ticket.id) if show_header else await _reread(conn, ticket.id)


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


async def show(conn: AsyncConnection, rt: Runtime, ticket_id: str) -> Ticket:
    """Re-render the header at a new version (older queued edits then drop themselves)."""
    ticket = await _reread(conn, ticket_id)
    await ticket_store.change_ticket(conn, ticket_id, header_version=ticket.header_version + 1)
    ticket = await _reread(conn, ticket_id)
    await sends.header(conn, rt, ticket, await _header_text(conn, ticket))
    return ticket


async def _header_text(conn: AsyncConnection, ticket: Ticket) -> str:
    return header.header_text(ticket, assignee=await assignee_name(conn, ticket))


async def assignee_name(conn: AsyncConnection, ticket: Ticket) -> str | None:
    if ticket.assignee_id is None:
        return None
    agent = await store.agent(conn, ticket.workspace_id, ticket.assignee_id)
    if agent is None:
        return str(ticket.assignee_id)
    return f"{agent.name} (@{agent.username})" if agent.username else agent.name


# --- shared --------------------------------------------------------------------------------


async def _add_message(
    conn: AsyncConnection,
    ticket: Ticket,
    written: Written,
    *,
    direction: Direction,
    customer_message_id: int | None = None,
    topic_message_id: int | None = None,
) -> int:
    return await ticket_store.add_message(
        conn,
        {
            "ticket_id": ticket.id,
            "direction": direction.value,
            "source": MessageSource.TELEGRAM.value,
            "author_id": written.author_id,
            "kind": written.kind,
            "text": written.text,
            "customer_message_id": customer_message_id,
            "topic_message_id": topic_message_id,
            "relay_status": RelayStatus.PENDING.value,
            "created_at": written.at,
        },
    )


async def _edited(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    found: TicketMessage,
    text: str | None,
    *,
    to: Side | None,
) -> None:
    if text == found.text:
        return
    now = rt.clock()
    await ticket_store.add_version(
        conn,
        found.id,
        text=found.text,
        written_at=found.edited_at or found.created_at,
        replaced_at=now,
    )
    await ticket_store.change_message(conn, found.id, text=text, edited_at=now)
    if to is not None:
        await sends.edit(conn, rt, ticket, message_id=found.id, to=to, text=text or NO_TEXT)


async def _message_added(conn: AsyncConnection, rt: Runtime, ticket: Ticket, row_id: int) -> None:
    added = await ticket_store.message(conn, row_id)
    assert added is not None
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_MESSAGE_ADDED,
        data=catalog.TicketMessageData(
            ticket_id=ticket.id,
            direction=added.direction.value,
            text=added.text,
            agent_id=None if added.direction is Direction.CUSTOMER else added.author_id,
            customer_message_id=added.customer_message_id,
            topic_message_id=added.topic_message_id,
        ),
    )


async def _history(
    conn: AsyncConnection,
    ticket: Ticket,
    field: ChangedField,
    previous: str | None,
    value: str | None,
    changed_by: str,
    at: datetime,
    note: str | None = None,
) -> None:
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


async def _reread(conn: AsyncConnection, ticket_id: str) -> Ticket:
    ticket = await ticket_store.ticket(conn, ticket_id)
    assert ticket is not None
    return ticket
