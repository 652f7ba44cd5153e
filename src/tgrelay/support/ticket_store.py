"""Tickets, their messages (with edits), their history and the per-workspace counter: rows
in, records out. Functions join the caller's transaction.

A ticket about to change is read `for_update`: on PostgreSQL an agent's command (the desk
group's order) and the customer's message (the private chat's) may run at once; SQLite
serializes writers anyway and ignores the lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.db import dialects, tables
from tgrelay.support.models import (
    LIVE_STATUSES,
    ChangedField,
    Customer,
    Direction,
    MessageSource,
    MessageVersion,
    RelayStatus,
    Ticket,
    TicketChange,
    TicketMessage,
    TicketStatus,
)

counters = tables.support_counters
tickets = tables.tickets
ticket_messages = tables.ticket_messages
edits = tables.ticket_message_edits
changes = tables.ticket_changes


# --- numbers -------------------------------------------------------------------------------


async def next_number(conn: AsyncConnection, workspace_id: str) -> int:
    """The workspace's next ticket number: the counter row made if missing (either database's
    ON CONFLICT DO NOTHING), then one UPDATE … RETURNING, which serializes concurrent opens."""
    await conn.execute(
        dialects.upsert(conn.dialect.name, counters)
        .values(workspace_id=workspace_id, last_number=0)
        .on_conflict_do_nothing(index_elements=["workspace_id"])
    )
    number = await conn.scalar(
        update(counters)
        .where(counters.c.workspace_id == workspace_id)
        .values(last_number=counters.c.last_number + 1)
        .returning(counters.c.last_number)
    )
    assert number is not None
    return int(number)


# --- tickets -------------------------------------------------------------------------------


async def add_ticket(conn: AsyncConnection, values: Mapping[str, Any]) -> None:
    await conn.execute(insert(tickets).values(**values))


def customer_json(customer: Customer) -> str:
    return json.dumps(
        {
            "first_name": customer.first_name,
            "last_name": customer.last_name,
            "username": customer.username,
            "language_code": customer.language_code,
        }
    )


async def ticket(
    conn: AsyncConnection,
    ticket_id: str,
    *,
    workspace_id: str | None = None,
    for_update: bool = False,
) -> Ticket | None:
    """A ticket (of `workspace_id` when given); locked for the transaction with `for_update`."""
    query = select(tickets).where(tickets.c.id == ticket_id)
    if workspace_id is not None:
        query = query.where(tickets.c.workspace_id == workspace_id)
    return await _one(conn, query, for_update)


async def latest_of_customer(
    conn: AsyncConnection,
    bot_id: int,
    customer_chat_id: int,
    *,
    business_connection_id: str | None = None,
    for_update: bool = False,
) -> Ticket | None:
    """The customer's newest ticket with this bot in one channel (where their next message
    goes, or not): the bot's private chat, or the business connection's chat."""
    query = (
        select(tickets)
        .where(
            tickets.c.bot_id == bot_id,
            tickets.c.customer_chat_id == customer_chat_id,
            _channel(business_connection_id),
        )
        .order_by(tickets.c.created_at.desc(), tickets.c.number.desc())
        .limit(1)
    )
    return await _one(conn, query, for_update)


async def ticket_of_customer_message(
    conn: AsyncConnection,
    bot_id: int,
    customer_chat_id: int,
    customer_message_id: int,
    *,
    business_connection_id: str | None = None,
    for_update: bool = False,
) -> Ticket | None:
    """Whichever of the customer's tickets with this bot, in this channel, holds this message
    of their chat (an edit may come long after the ticket it belongs to was followed by
    others; a business chat numbers its messages apart from the bot's private chat)."""
    query = (
        select(tickets)
        .join(ticket_messages, ticket_messages.c.ticket_id == tickets.c.id)
        .where(
            tickets.c.bot_id == bot_id,
            tickets.c.customer_chat_id == customer_chat_id,
            _channel(business_connection_id),
            ticket_messages.c.customer_message_id == customer_message_id,
        )
        .limit(1)
    )
    return await _one(conn, query, for_update)


async def ticket_in_topic(
    conn: AsyncConnection, chat_id: int, thread_id: int, *, for_update: bool = False
) -> Ticket | None:
    """The ticket whose forum topic this is."""
    query = select(tickets).where(
        tickets.c.topic_chat_id == chat_id, tickets.c.topic_thread_id == thread_id
    )
    return await _one(conn, query, for_update)


async def list_tickets(
    conn: AsyncConnection,
    workspace_id: str,
    *,
    status: TicketStatus | None = None,
    assignee_id: int | None = None,
    unassigned: bool = False,
    desk_id: str | None = None,
    before: int | None = None,
    limit: int,
) -> list[Ticket]:
    """Newest first by number; `before` a number: the page after the one that ended there;
    `unassigned` only tickets no agent has."""
    query = select(tickets).where(tickets.c.workspace_id == workspace_id)
    if status is not None:
        query = query.where(tickets.c.status == status.value)
    if assignee_id is not None:
        query = query.where(tickets.c.assignee_id == assignee_id)
    if unassigned:
        query = query.where(tickets.c.assignee_id.is_(None))
    if desk_id is not None:
        query = query.where(tickets.c.desk_id == desk_id)
    if before is not None:
        query = query.where(tickets.c.number < before)
    rows = await conn.execute(query.order_by(tickets.c.number.desc()).limit(limit))
    return [_to_ticket(row) for row in rows]


async def live_of_connection(conn: AsyncConnection, business_connection_id: str) -> list[Ticket]:
    """The live tickets (new, open, pending) of a business connection's chats."""
    rows = await conn.execute(
        select(tickets)
        .where(
            tickets.c.business_connection_id == business_connection_id,
            tickets.c.status.in_([status.value for status in LIVE_STATUSES]),
        )
        .order_by(tickets.c.number)
    )
    return [_to_ticket(row) for row in rows]


async def change_ticket(conn: AsyncConnection, ticket_id: str, **values: Any) -> None:
    await conn.execute(update(tickets).where(tickets.c.id == ticket_id).values(**values))


def _channel(business_connection_id: str | None) -> ColumnElement[bool]:
    column = tickets.c.business_connection_id
    return column.is_(None) if business_connection_id is None else column == business_connection_id


async def _one(conn: AsyncConnection, query: Select[Any], for_update: bool) -> Ticket | None:
    if for_update:
        query = query.with_for_update(of=tickets)  # the ticket's row, not a joined message's
    row = (await conn.execute(query)).first()
    return None if row is None else _to_ticket(row)


def _to_ticket(row: Row[Any]) -> Ticket:
    customer = json.loads(row.customer)
    return Ticket(
        id=row.id,
        workspace_id=row.workspace_id,
        number=row.number,
        desk_id=row.desk_id,
        bot_id=row.bot_id,
        customer_chat_id=row.customer_chat_id,
        customer=Customer(
            id=row.customer_id,
            first_name=customer["first_name"],
            last_name=customer.get("last_name"),
            username=customer.get("username"),
            language_code=customer.get("language_code"),
        ),
        subject=row.subject,
        status=TicketStatus(row.status),
        assignee_id=row.assignee_id,
        topic_chat_id=row.topic_chat_id,
        topic_thread_id=row.topic_thread_id,
        header_message_id=row.header_message_id,
        header_version=row.header_version,
        resolution_note=row.resolution_note,
        created_at=row.created_at,
        updated_at=row.updated_at,
        first_response_at=row.first_response_at,
        resolved_at=row.resolved_at,
        closed_at=row.closed_at,
        business_connection_id=row.business_connection_id,
    )


# --- messages ------------------------------------------------------------------------------


async def add_message(conn: AsyncConnection, values: Mapping[str, Any]) -> int:
    """A ticket message row; its id."""
    message_id = await conn.scalar(
        insert(ticket_messages).values(**values).returning(ticket_messages.c.id)
    )
    assert message_id is not None
    return int(message_id)


async def message(conn: AsyncConnection, message_id: int) -> TicketMessage | None:
    row = (
        await conn.execute(select(ticket_messages).where(ticket_messages.c.id == message_id))
    ).first()
    return None if row is None else _to_message(row)


async def message_by_key(
    conn: AsyncConnection, ticket_id: str, idempotency_key: str
) -> TicketMessage | None:
    row = (
        await conn.execute(
            select(ticket_messages).where(
                ticket_messages.c.ticket_id == ticket_id,
                ticket_messages.c.idempotency_key == idempotency_key,
            )
        )
    ).first()
    return None if row is None else _to_message(row)


async def message_by_customer_id(
    conn: AsyncConnection, ticket_id: str, customer_message_id: int
) -> TicketMessage | None:
    """The ticket message shown as this message of the customer's chat (theirs or a copy)."""
    row = (
        await conn.execute(
            select(ticket_messages).where(
                ticket_messages.c.ticket_id == ticket_id,
                ticket_messages.c.customer_message_id == customer_message_id,
            )
        )
    ).first()
    return None if row is None else _to_message(row)


async def message_by_topic_id(
    conn: AsyncConnection, ticket_id: str, topic_message_id: int
) -> TicketMessage | None:
    """The ticket message shown as this message of the topic (an agent's, a note or a copy)."""
    row = (
        await conn.execute(
            select(ticket_messages).where(
                ticket_messages.c.ticket_id == ticket_id,
                ticket_messages.c.topic_message_id == topic_message_id,
            )
        )
    ).first()
    return None if row is None else _to_message(row)


async def change_message(conn: AsyncConnection, message_id: int, **values: Any) -> None:
    await conn.execute(
        update(ticket_messages).where(ticket_messages.c.id == message_id).values(**values)
    )


async def add_version(
    conn: AsyncConnection,
    message_id: int,
    *,
    text: str | None,
    written_at: datetime,
    replaced_at: datetime,
) -> None:
    """Keep a message's text as it read before an edit."""
    await conn.execute(
        insert(edits).values(
            message_id=message_id, text=text, written_at=written_at, replaced_at=replaced_at
        )
    )


async def list_messages(conn: AsyncConnection, ticket_id: str) -> list[TicketMessage]:
    """A ticket's messages in the order they were written, each with its earlier texts."""
    rows = (
        await conn.execute(
            select(ticket_messages)
            .where(ticket_messages.c.ticket_id == ticket_id)
            .order_by(ticket_messages.c.id)
        )
    ).all()
    ids = [row.id for row in rows]
    versions: dict[int, list[MessageVersion]] = {}
    if ids:
        for edit in await conn.execute(
            select(edits).where(edits.c.message_id.in_(ids)).order_by(edits.c.id)
        ):
            versions.setdefault(edit.message_id, []).append(
                MessageVersion(
                    text=edit.text, written_at=edit.written_at, replaced_at=edit.replaced_at
                )
            )
    return [_to_message(row, versions.get(row.id, ())) for row in rows]


def _to_message(row: Row[Any], versions: Sequence[MessageVersion] = ()) -> TicketMessage:
    return TicketMessage(
        id=row.id,
        ticket_id=row.ticket_id,
        direction=Direction(row.direction),
        source=MessageSource(row.source),
        author_id=row.author_id,
        kind=row.kind,
        text=row.text,
        customer_message_id=row.customer_message_id,
        topic_message_id=row.topic_message_id,
        relay_status=RelayStatus(row.relay_status),
        relay_error=row.relay_error,
        created_at=row.created_at,
        edited_at=row.edited_at,
        versions=tuple(versions),
    )


# --- history -------------------------------------------------------------------------------


async def add_change(conn: AsyncConnection, change: TicketChange) -> None:
    await conn.execute(
        insert(changes).values(
            ticket_id=change.ticket_id,
            field=change.field.value,
            previous=change.previous,
            value=change.value,
            changed_by=change.changed_by,
            note=change.note,
            at=change.at,
        )
    )


async def list_changes(conn: AsyncConnection, ticket_id: str) -> list[TicketChange]:
    rows = await conn.execute(
        select(changes).where(changes.c.ticket_id == ticket_id).order_by(changes.c.id)
    )
    return [
        TicketChange(
            ticket_id=row.ticket_id,
            field=ChangedField(row.field),
            previous=row.previous,
            value=row.value,
            changed_by=row.changed_by,
            note=row.note,
            at=row.at,
        )
        for row in rows
    ]
