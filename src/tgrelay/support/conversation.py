"""A ticket's conversation: the customer's messages (which open, join or reopen tickets),
the agents' relayed replies, internal notes, API and canned replies, and edits of each,
inside the caller's transaction (a process_update job's, an API request's).

Each writes its message row, its ticket.message_added event and its sends; a change of
state it causes (a reply opens the ticket, claims it) goes through `lifecycle`.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.groups import service as groups
from tgrelay.runtime import Runtime
from tgrelay.support import header, lifecycle, rules, sends, sla_timer, store, ticket_store
from tgrelay.support.incoming import Written
from tgrelay.support.models import (
    Assignment,
    ChangedField,
    Customer,
    Desk,
    Direction,
    MessageSource,
    RelayStatus,
    Ticket,
    TicketMessage,
    TicketStatus,
)
from tgrelay.support.rules import CustomerRoute, Refused
from tgrelay.support.sends import Side

log = structlog.get_logger(__name__)

NOTE_MARK = "📝 Internal note — not sent to the customer"
NO_TEXT = "(no text)"


class NoDeskGroup(LookupError):
    """The desk's group connection is gone: a ticket has nowhere to be answered."""


# --- the customer's side -------------------------------------------------------------------


async def customer_wrote(
    conn: AsyncConnection,
    rt: Runtime,
    desk: Desk,
    customer: Customer,
    written: Written,
    *,
    business_connection_id: str | None = None,
) -> Ticket:
    """A customer's private message (or business chat's, with `business_connection_id`): it
    opens a ticket, joins one, or reopens one (rules.route_customer_message); the ticket it
    went to."""
    now = rt.clock()
    latest = await ticket_store.latest_of_customer(
        conn,
        desk.bot_id,
        customer.id,
        business_connection_id=business_connection_id,
        for_update=True,
    )
    route = rules.route_customer_message(
        None if latest is None else latest.status,
        resolved_at=None if latest is None else latest.resolved_at,
        reopen_window=timedelta(seconds=desk.reopen_window_seconds),
        now=now,
    )
    if route is CustomerRoute.NEW_TICKET or latest is None:
        return await open_ticket(
            conn, rt, desk, customer, written, business_connection_id=business_connection_id
        )
    ticket = latest
    if route is CustomerRoute.BACK_TO_OPEN or route is CustomerRoute.REOPEN:
        # First: a reopened topic takes the copy that follows.
        changed = await lifecycle.change_status(
            conn, rt, latest, TicketStatus.OPEN, changed_by=lifecycle.CUSTOMER
        )
        assert not isinstance(changed, Refused)  # pending/resolved → open is always allowed
        ticket = changed
    await _record_customer(conn, rt, ticket, written)
    return ticket


async def open_ticket(
    conn: AsyncConnection,
    rt: Runtime,
    desk: Desk,
    customer: Customer,
    written: Written,
    *,
    business_connection_id: str | None = None,
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
            "business_connection_id": business_connection_id,
            "created_at": now,
            "updated_at": now,
        },
    )
    ticket = await lifecycle.current(conn, ticket_id)
    await lifecycle.record_change(
        conn, ticket, ChangedField.STATUS, None, TicketStatus.NEW, lifecycle.CUSTOMER, now
    )
    await sends.create_topic(conn, rt, ticket, header.topic_title(ticket))
    if desk.assignment is Assignment.ROUND_ROBIN:
        picked = await store.next_in_rotation(conn, desk.workspace_id)
        if picked is not None:
            ticket = await lifecycle.assign(
                conn, rt, ticket, picked, changed_by=lifecycle.SYSTEM, show_header=False
            )
    await sends.header(conn, rt, ticket, await lifecycle.header_text(conn, rt, ticket))
    await _record_customer(conn, rt, ticket, written)
    if desk.greeting_text:
        await sends.to_customer(conn, rt, ticket, desk.greeting_text)
    log.info("ticket.opened", ticket_id=ticket.id, number=ticket.number, desk_id=desk.id)
    return ticket


async def _record_customer(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, written: Written
) -> None:
    row_id = await _add_message(
        conn,
        rt,
        ticket,
        written,
        direction=Direction.CUSTOMER,
        customer_message_id=written.message_id,
    )
    await sends.relay(
        conn,
        rt,
        ticket,
        message_id=row_id,
        to=Side.TOPIC,
        from_message_id=written.message_id,
        reply_to=written.reply_to,
        file=written.file,
    )


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
        conn, rt, ticket, written, direction=Direction.AGENT, topic_message_id=written.message_id
    )
    await sends.relay(
        conn,
        rt,
        ticket,
        message_id=row_id,
        to=Side.CUSTOMER,
        from_message_id=written.message_id,
        reply_to=written.reply_to,
        file=written.file,
    )
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
    row_id = await _record(
        conn,
        rt,
        ticket,
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
    row_id = await _record(
        conn,
        rt,
        ticket,
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
    return await _answered(conn, rt, desk, ticket, agent_id=author_id), row_id


async def _answered(
    conn: AsyncConnection, rt: Runtime, desk: Desk, ticket: Ticket, *, agent_id: int | None
) -> Ticket:
    now = rt.clock()
    changed_by = lifecycle.API if agent_id is None else lifecycle.agent_actor(agent_id)
    shown = False
    target = rules.after_agent_reply(ticket.status)
    if target is not None:
        moved = await lifecycle.change_status(
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
            ticket = await lifecycle.assign(
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
    return await lifecycle.show(conn, rt, ticket.id) if shown else ticket


# --- shared -----------------------------------------------------------------------------------


async def _add_message(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    written: Written,
    *,
    direction: Direction,
    customer_message_id: int | None = None,
    topic_message_id: int | None = None,
) -> int:
    return await _record(
        conn,
        rt,
        ticket,
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


async def _record(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, values: dict[str, Any]
) -> int:
    """Store a ticket's message and announce it (ticket.message_added) from what was stored;
    its row id."""
    row_id = await ticket_store.add_message(conn, values)
    direction = Direction(values["direction"])
    if direction is not Direction.NOTE:  # a note starts or meets no clock
        await sla_timer.plan(conn, rt, ticket)
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_MESSAGE_ADDED,
        data=catalog.TicketMessageData(
            ticket_id=ticket.id,
            direction=direction.value,
            text=values.get("text"),
            agent_id=None if direction is Direction.CUSTOMER else values.get("author_id"),
            customer_message_id=values.get("customer_message_id"),
            topic_message_id=values.get("topic_message_id"),
        ),
    )
    return row_id
