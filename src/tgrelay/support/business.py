"""Telegram Business chats at the desk: the four business updates of a desk's bot, and what
a refused reply through a connection tells about it, in the caller's transaction.

A connection's change (new, paused, resumed, the right to reply granted or withheld,
removed) is recorded and emitted as desk.business_connection_changed once per real change.
A customer's message in the account's chat opens or joins a ticket exactly as a private
message to the bot does, keyed by (connection, chat); edits are mirrored, deletions noted in
the topic (the ticket keeps what was written). What the account's owner writes in the chat
(from their phone) is not the customer's: it is shown in the live ticket's topic so agents
do not answer twice, and recorded as nothing else (docs/design-notes.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.inbox.models import Inbound
from tgrelay.runtime import Runtime
from tgrelay.support import (
    business_rules,
    business_store,
    conversation,
    incoming,
    kb_answers,
    lifecycle,
    sends,
    store,
    ticket_store,
)
from tgrelay.support.models import (
    LIVE_STATUSES,
    BusinessAccount,
    BusinessConnection,
    ConnectionState,
    Customer,
    Desk,
    Ticket,
)
from tgrelay.telegram.outbox import outcomes
from tgrelay.telegram.updates import UpdateKind

log = structlog.get_logger(__name__)

KINDS = frozenset(
    {
        UpdateKind.BUSINESS_CONNECTION,
        UpdateKind.BUSINESS_MESSAGE,
        UpdateKind.EDITED_BUSINESS_MESSAGE,
        UpdateKind.DELETED_BUSINESS_MESSAGES,
    }
)
DELETED = "🗑 The customer deleted this message in their chat; the ticket keeps it."
DELETED_UNSEEN = "🗑 The customer deleted a message in their chat; the ticket keeps it:\n{text}"
OWNER_WROTE = "📱 {account} answered in the chat from the app:\n{text}"


async def handle(rt: Runtime, conn: AsyncConnection, inbound: Inbound) -> bool:
    """A business update of a bot with a desk (of the update's workspace); False, left
    unconsumed, for any other bot's or one the desk does not act on."""
    desk = await store.desk_of_bot(conn, inbound.bot.bot_id)
    if desk is None or desk.workspace_id != inbound.workspace_id:
        return False
    processed = inbound.processed
    body: dict[str, Any] = processed.raw[processed.kind.value]
    match processed.kind:
        case UpdateKind.BUSINESS_CONNECTION:
            return await connection_changed(conn, rt, desk, body) is not None
        case UpdateKind.BUSINESS_MESSAGE:
            return await _message(rt, conn, inbound, desk, body)
        case UpdateKind.EDITED_BUSINESS_MESSAGE:
            return await _edited(rt, conn, desk, body)
        case _:
            return await _deleted(rt, conn, desk, body)


# --- connections ---------------------------------------------------------------------------


async def connection_changed(
    conn: AsyncConnection, rt: Runtime, desk: Desk, body: dict[str, Any]
) -> BusinessConnection | None:
    """A business_connection update: the connection recorded as it now is; a real change of
    state, right to reply or enablement emitted and shown on its live tickets' headers.
    None when the id is another bot's (Telegram's ids are per account and bot: never seen)."""
    now = rt.clock()
    user = body["user"]
    account = BusinessAccount(
        id=int(user["id"]),
        first_name=user.get("first_name") or str(user["id"]),
        last_name=user.get("last_name"),
        username=user.get("username"),
    )
    is_enabled = bool(body.get("is_enabled"))
    can_reply = business_rules.can_reply_of(body)
    state = business_rules.state_of(is_enabled=is_enabled, can_reply=can_reply)
    known = await business_store.connection(conn, str(body["id"]), for_update=True)
    if known is not None and known.bot_id != desk.bot_id:
        log.warning("support.business_connection_of_another_bot", business_connection_id=known.id)
        return None
    if known is not None and known.state is ConnectionState.REMOVED and not is_enabled:
        state = ConnectionState.REMOVED  # "disabled" says less than the refusal already did
    values = {
        "user_id": account.id,
        "user": business_store.account_json(account),
        "can_reply": can_reply,
        "is_enabled": is_enabled,
        "state": state.value,
        "connected_at": datetime.fromtimestamp(int(body.get("date") or 0), UTC),
        "updated_at": now,
    }
    if known is None:
        await business_store.add(
            conn,
            {
                **values,
                "id": str(body["id"]),
                "workspace_id": desk.workspace_id,
                "bot_id": desk.bot_id,
                "created_at": now,
            },
        )
    else:
        await business_store.change(conn, known.id, **values)
    changed = await business_store.connection(conn, str(body["id"]))
    assert changed is not None
    if known is None or (known.state, known.can_reply, known.is_enabled) != (
        state,
        can_reply,
        is_enabled,
    ):
        await _announce(conn, rt, desk, changed)
    return changed


async def refused(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, outcome: outcomes.Failed
) -> str | None:
    """A reply to a business ticket that Telegram (or the outbox) refused: the connection's
    state as the refusal shows it (announced if it changed), and the reason in words; None
    when the refusal says nothing about the connection."""
    assert ticket.business_connection_id is not None
    connection = await business_store.connection(
        conn, ticket.business_connection_id, for_update=True
    )
    if connection is None:
        return None
    state = business_rules.after_refusal(connection.state, outcome.reason)
    if state is None:
        return None
    if state is not connection.state:
        await business_store.change(conn, connection.id, state=state.value, updated_at=rt.clock())
        changed = await business_store.connection(conn, connection.id)
        desk = await store.desk(conn, ticket.desk_id)
        assert changed is not None
        if desk is not None:
            await _announce(conn, rt, desk, changed)
    return business_rules.refusal_words(connection, state, outcome.reason)


async def _announce(
    conn: AsyncConnection, rt: Runtime, desk: Desk, connection: BusinessConnection
) -> None:
    account = connection.account
    await events.emit(
        conn,
        rt,
        workspace_id=desk.workspace_id,
        event_type=EventType.DESK_BUSINESS_CONNECTION_CHANGED,
        data=catalog.DeskBusinessConnectionChangedData(
            desk_id=desk.id,
            business_connection_id=connection.id,
            user=catalog.UserRef(
                id=account.id,
                is_bot=False,
                first_name=account.first_name,
                last_name=account.last_name,
                username=account.username,
            ),
            state=connection.state.value,
            can_reply=connection.can_reply,
            is_enabled=connection.is_enabled,
        ),
    )
    log.info(
        "support.business_connection_changed",
        desk_id=desk.id,
        business_connection_id=connection.id,
        state=connection.state.value,
    )
    for ticket in await ticket_store.live_of_connection(conn, connection.id):
        await lifecycle.show(conn, rt, ticket.id)  # its header's channel line and warning


# --- the chats -----------------------------------------------------------------------------


async def _connection_of(
    conn: AsyncConnection, desk: Desk, body: dict[str, Any]
) -> BusinessConnection | None:
    connection_id = body.get("business_connection_id")
    found = None if connection_id is None else await business_store.connection(conn, connection_id)
    if found is None or found.bot_id != desk.bot_id:
        # Telegram sends business_connection when the account connects the bot: one unknown
        # here was connected before the desk existed (or by another bot); left unconsumed.
        log.warning(
            "support.business_connection_unknown",
            desk_id=desk.id,
            business_connection_id=connection_id,
        )
        return None
    return found


async def _message(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, desk: Desk, message: dict[str, Any]
) -> bool:
    connection = await _connection_of(conn, desk, message)
    sender = message.get("from")
    if connection is None or sender is None or sender.get("is_bot"):
        return False
    chat_id = int(message["chat"]["id"])
    if int(sender["id"]) == connection.account.id:
        return await _owner_wrote(rt, conn, desk, connection, chat_id, message)
    customer = Customer(
        id=int(sender["id"]),
        first_name=sender.get("first_name") or str(sender["id"]),
        last_name=sender.get("last_name"),
        username=sender.get("username"),
        language_code=sender.get("language_code"),
    )
    written = incoming.written(message, inbound.processed.received_at)
    before = await ticket_store.latest_of_customer(
        conn, desk.bot_id, customer.id, business_connection_id=connection.id
    )
    try:
        ticket = await conversation.customer_wrote(
            conn, rt, desk, customer, written, business_connection_id=connection.id
        )
    except conversation.NoDeskGroup as exc:
        log.warning("support.no_desk_group", desk_id=desk.id, reason=str(exc))
        return False
    if before is None or before.id != ticket.id:  # it opened a ticket
        await kb_answers.opened(conn, rt, desk, ticket, written.text)
    return True


async def _owner_wrote(
    rt: Runtime,
    conn: AsyncConnection,
    desk: Desk,
    connection: BusinessConnection,
    chat_id: int,
    message: dict[str, Any],
) -> bool:
    """The account's owner answered in the chat themselves: shown in the customer's live
    ticket so agents do not answer twice; nothing when no ticket is live."""
    ticket = await ticket_store.latest_of_customer(
        conn, desk.bot_id, chat_id, business_connection_id=connection.id
    )
    if ticket is None or ticket.status not in LIVE_STATUSES:
        return False
    text = incoming.text_of(message) or f"({incoming.kind_of(message)})"
    await sends.in_topic(
        conn, rt, ticket, OWNER_WROTE.format(account=connection.account.name, text=text)
    )
    return True


async def _edited(rt: Runtime, conn: AsyncConnection, desk: Desk, message: dict[str, Any]) -> bool:
    connection = await _connection_of(conn, desk, message)
    if connection is None:
        return False
    message_id = int(message["message_id"])
    ticket = await ticket_store.ticket_of_customer_message(
        conn,
        desk.bot_id,
        int(message["chat"]["id"]),
        message_id,
        business_connection_id=connection.id,
        for_update=True,
    )
    if ticket is None:
        return False
    return await conversation.customer_edited(
        conn, rt, ticket, message_id, incoming.text_of(message)
    )


async def _deleted(rt: Runtime, conn: AsyncConnection, desk: Desk, body: dict[str, Any]) -> bool:
    """Messages the customer (or the account) deleted from the chat: each one a ticket holds
    is noted in its topic, under its copy; the ticket keeps its text and versions."""
    connection = await _connection_of(conn, desk, body)
    if connection is None:
        return False
    chat_id = int(body["chat"]["id"])
    noted = False
    for message_id in body.get("message_ids", []):
        ticket = await ticket_store.ticket_of_customer_message(
            conn, desk.bot_id, chat_id, int(message_id), business_connection_id=connection.id
        )
        if ticket is None:
            continue
        found = await ticket_store.message_by_customer_id(conn, ticket.id, int(message_id))
        assert found is not None
        if found.topic_message_id is not None:
            await sends.in_topic(conn, rt, ticket, DELETED, reply_to=found.topic_message_id)
        else:
            text = found.text or conversation.NO_TEXT
            await sends.in_topic(conn, rt, ticket, DELETED_UNSEEN.format(text=text))
        noted = True
    return noted
