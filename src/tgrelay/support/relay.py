"""The desk's outbox recipients: each ticket send's real request derived from the rows at
send time (`ready`), and its outcome written back (`finished`).

All of a ticket's sends share its ordering key (support.sends), so when one runs, the sends
before it finished: the topic has its thread id, the message replied to has its copy, the
header its message id. A topic that could not be created leaves the ticket without one: it
is logged, said in the desk group's General topic, and ticket.created carries topic_id null;
the sends meant for the topic are then refused with that reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.events import catalog
from tgrelay.events import service as events
from tgrelay.events.catalog import EventType
from tgrelay.runtime import Runtime
from tgrelay.support import (
    business,
    business_sends,
    conversation,
    header,
    lifecycle,
    sends,
    ticket_store,
)
from tgrelay.support.models import Direction, MessageSource, RelayStatus, Ticket, TicketMessage
from tgrelay.support.sends import Side, TopicOp
from tgrelay.telegram.outbox import jobs as outbox_jobs
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.actions import Action
from tgrelay.telegram.outbox.registry import Outbox

log = structlog.get_logger(__name__)

NO_TOPIC = "the ticket has no forum topic"
NOT_DELIVERED = "⚠️ Not delivered to the customer: {reason}"
TOPIC_FAILED = "⚠️ Ticket #{number} ({customer}) could not get a topic: {reason}"
API_MARK = "📤 Sent to the customer through the API"
SAVED_REPLY_MARK = "📤 Sent to the customer as a saved reply"


def install(outbox: Outbox, rt: Runtime) -> None:
    """Give the outbox the desk's recipients (app start-up, tgrelay.wiring)."""

    async def topic_ready(conn: AsyncConnection, ref: Mapping[str, Any]) -> outcomes.Readiness:
        ticket = await ticket_store.ticket(conn, str(ref["ticket_id"]))
        if ticket is None or ticket.topic_thread_id is not None:
            return outcomes.Drop()
        return outcomes.Go()

    async def topic_finished(
        conn: AsyncConnection, ref: Mapping[str, Any], outcome: outcomes.Outcome
    ) -> None:
        ticket = await ticket_store.ticket(conn, str(ref["ticket_id"]), for_update=True)
        if ticket is None:
            return
        thread_id = None
        if isinstance(outcome, outcomes.Sent):
            thread_id = outcome.message_thread_id
            await ticket_store.change_ticket(conn, ticket.id, topic_thread_id=thread_id)
        else:
            log.warning("support.topic_not_created", ticket_id=ticket.id, reason=outcome.reason)
            await sends_general(conn, rt, ticket, outcome.reason)
        await _created(conn, rt, ticket, thread_id)

    async def header_ready(conn: AsyncConnection, ref: Mapping[str, Any]) -> outcomes.Readiness:
        ticket = await ticket_store.ticket(conn, str(ref["ticket_id"]))
        if ticket is None:
            return outcomes.Drop()
        if ticket.topic_thread_id is None:
            return outcomes.Refuse(reason=NO_TOPIC)
        text = await lifecycle.header_text(conn, rt, ticket)
        keyboard = header.header_keyboard(ticket)
        if ticket.header_message_id is None:
            return outcomes.Go(
                request=messages.SendText(
                    bot_id=ticket.bot_id,
                    chat_id=ticket.topic_chat_id,
                    message_thread_id=ticket.topic_thread_id,
                    text=text,
                    keyboard=keyboard,
                )
            )
        if int(ref["version"]) < ticket.header_version:
            return outcomes.Drop()  # a later edit is queued behind this one
        return outcomes.Go(
            request=messages.EditText(
                bot_id=ticket.bot_id,
                chat_id=ticket.topic_chat_id,
                message_id=ticket.header_message_id,
                text=text,
                keyboard=keyboard,
            )
        )

    async def header_finished(
        conn: AsyncConnection, ref: Mapping[str, Any], outcome: outcomes.Outcome
    ) -> None:
        ticket = await ticket_store.ticket(conn, str(ref["ticket_id"]), for_update=True)
        if ticket is None:
            return
        if isinstance(outcome, outcomes.Failed):
            log.warning("support.header_failed", ticket_id=ticket.id, reason=outcome.reason)
        elif outcome.method == "sendMessage" and ticket.header_message_id is None:
            await ticket_store.change_ticket(conn, ticket.id, header_message_id=outcome.message_id)

    async def relay_ready(conn: AsyncConnection, ref: Mapping[str, Any]) -> outcomes.Readiness:
        found = await _message_and_ticket(conn, ref)
        if found is None:
            return outcomes.Drop()
        row, ticket = found
        if ticket.topic_thread_id is None:
            return outcomes.Refuse(reason=NO_TOPIC)
        to = Side(str(ref["to"]))
        reply_to = await _mapped(conn, ticket, ref.get("reply_to"), to)
        if ref.get(sends.AS_TEXT) or row.source is MessageSource.API:
            # No original in Telegram (an app's answer or note, an agent's saved reply): sent
            # as text, and marked in the topic for what it is.
            return outcomes.Go(request=_text_of(ticket, row, to))
        if ticket.business_connection_id is not None:
            relayed = business_sends.relayed(
                ticket, row, to, ref.get(sends.FILE), reply_to=reply_to
            )
            if isinstance(relayed, str):
                return outcomes.Refuse(reason=relayed)
            return outcomes.Go(request=relayed)
        if to is Side.TOPIC:
            assert row.customer_message_id is not None
            request = messages.CopyMessage(
                bot_id=ticket.bot_id,
                chat_id=ticket.topic_chat_id,
                message_thread_id=ticket.topic_thread_id,
                from_chat_id=ticket.customer_chat_id,
                message_id=row.customer_message_id,
                reply_to_message_id=reply_to,
            )
        else:
            assert row.topic_message_id is not None
            request = messages.CopyMessage(
                bot_id=ticket.bot_id,
                chat_id=ticket.customer_chat_id,
                from_chat_id=ticket.topic_chat_id,
                message_id=row.topic_message_id,
                reply_to_message_id=reply_to,
            )
        return outcomes.Go(request=request)

    async def relay_finished(
        conn: AsyncConnection, ref: Mapping[str, Any], outcome: outcomes.Outcome
    ) -> None:
        found = await _message_and_ticket(conn, ref)
        if found is None:
            return
        row, ticket = found
        to = Side(str(ref["to"]))
        # The relay's status is the customer's side for an agent's message, the topic's for
        # the customer's; an app's mirror in the topic only records its id.
        relays = to is Side.CUSTOMER or row.direction is Direction.CUSTOMER
        if isinstance(outcome, outcomes.Failed):
            why = None
            if to is Side.CUSTOMER and ticket.business_connection_id is not None:
                why = await business.refused(conn, rt, ticket, outcome)
            if relays:
                await ticket_store.change_message(
                    conn,
                    row.id,
                    relay_status=RelayStatus.FAILED.value,
                    relay_error=why or outcome.reason,
                )
            if to is Side.CUSTOMER and ticket.topic_thread_id is not None:
                await sends.in_topic(
                    conn,
                    rt,
                    ticket,
                    NOT_DELIVERED.format(reason=why or _why(outcome)),
                    reply_to=row.topic_message_id,
                )
            log.warning("support.relay_failed", message_id=row.id, reason=outcome.reason)
            return
        changes: dict[str, Any] = {}
        if to is Side.TOPIC and row.topic_message_id is None:
            changes["topic_message_id"] = outcome.message_id
        if to is Side.CUSTOMER and row.customer_message_id is None:
            changes["customer_message_id"] = outcome.message_id
        if relays:
            changes["relay_status"] = RelayStatus.SENT.value
            rt.metrics.support_relay.observe(
                max(0.0, (rt.clock() - row.created_at).total_seconds())
            )
        if changes:
            await ticket_store.change_message(conn, row.id, **changes)

    async def edit_ready(conn: AsyncConnection, ref: Mapping[str, Any]) -> outcomes.Readiness:
        found = await _message_and_ticket(conn, ref)
        if found is None:
            return outcomes.Drop()
        row, ticket = found
        to = Side(str(ref["to"]))
        target = row.topic_message_id if to is Side.TOPIC else row.customer_message_id
        if target is None or ticket.topic_thread_id is None:
            return outcomes.Refuse(reason="the message was never relayed, so there is no copy")
        if to is Side.CUSTOMER and ticket.business_connection_id is not None:
            return outcomes.Go(request=business_sends.edited_to_customer(ticket, row, target))
        chat_id = ticket.topic_chat_id if to is Side.TOPIC else ticket.customer_chat_id
        text = row.text or conversation.NO_TEXT
        if row.kind != "text":
            # The outbox has no editMessageCaption: a media message's new caption is said in
            # a reply to its copy instead, and the API keeps every version.
            return outcomes.Go(
                request=messages.SendText(
                    bot_id=ticket.bot_id,
                    chat_id=chat_id,
                    message_thread_id=ticket.topic_thread_id if to is Side.TOPIC else None,
                    text=sends.EDITED.format(text=text)[: messages.MAX_TEXT_CHARS],
                    reply_to_message_id=target,
                )
            )
        return outcomes.Go(
            request=messages.EditText(
                bot_id=ticket.bot_id, chat_id=chat_id, message_id=target, text=text
            )
        )

    async def topic_state_ready(
        conn: AsyncConnection, ref: Mapping[str, Any]
    ) -> outcomes.Readiness:
        ticket = await ticket_store.ticket(conn, str(ref["ticket_id"]))
        if ticket is None or ticket.topic_thread_id is None:
            return outcomes.Drop()
        common = {
            "bot_id": ticket.bot_id,
            "chat_id": ticket.topic_chat_id,
            "message_thread_id": ticket.topic_thread_id,
        }
        op = TopicOp(str(ref["op"]))
        request: messages.Request
        if op is TopicOp.CLOSE:
            request = messages.CloseTopic(**common)
        elif op is TopicOp.REOPEN:
            request = messages.ReopenTopic(**common)
        else:
            request = messages.EditTopic(**common, name=header.topic_title(ticket))
        return outcomes.Go(request=request)

    async def in_topic_ready(conn: AsyncConnection, ref: Mapping[str, Any]) -> outcomes.Readiness:
        ticket = await ticket_store.ticket(conn, str(ref["ticket_id"]))
        if ticket is None or ticket.topic_thread_id is None:
            return outcomes.Drop()
        return outcomes.Go(
            destination=messages.Destination(
                chat_id=ticket.topic_chat_id, message_thread_id=ticket.topic_thread_id
            )
        )

    outbox.recipient(sends.TOPIC, ready=topic_ready, finished=topic_finished)
    outbox.recipient(sends.HEADER, ready=header_ready, finished=header_finished)
    outbox.recipient(sends.RELAY, ready=relay_ready, finished=relay_finished)
    outbox.recipient(sends.EDIT, ready=edit_ready)
    outbox.recipient(sends.TOPIC_STATE, ready=topic_state_ready)
    outbox.recipient(sends.IN_TOPIC, ready=in_topic_ready)


async def sends_general(conn: AsyncConnection, rt: Runtime, ticket: Ticket, reason: str) -> None:
    """Say in the desk group's General topic that a ticket has no topic, and why."""
    await outbox_jobs.enqueue(
        conn,
        rt,
        messages.SendText(
            bot_id=ticket.bot_id,
            chat_id=ticket.topic_chat_id,
            text=TOPIC_FAILED.format(
                number=ticket.number, customer=ticket.customer.name, reason=reason
            )[: messages.MAX_TEXT_CHARS],
        ),
        ordering_key=sends.ticket_key(ticket.id),
    )


async def _created(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, topic_id: int | None
) -> None:
    """ticket.created, once the topic's creation finished (so topic_id is known)."""
    first = next(iter(await ticket_store.list_messages(conn, ticket.id)), None)
    customer = ticket.customer
    await events.emit(
        conn,
        rt,
        workspace_id=ticket.workspace_id,
        event_type=EventType.TICKET_CREATED,
        data=catalog.TicketCreatedData(
            ticket_id=ticket.id,
            number=ticket.number,
            desk_id=ticket.desk_id,
            customer_id=customer.id,
            customer=catalog.TicketCustomer(
                first_name=customer.first_name,
                last_name=customer.last_name,
                username=customer.username,
                language_code=customer.language_code,
            ),
            message_text=None if first is None else first.text,
            topic_id=topic_id,
            timestamp=ticket.created_at,
        ),
    )


async def _message_and_ticket(
    conn: AsyncConnection, ref: Mapping[str, Any]
) -> tuple[TicketMessage, Ticket] | None:
    row = await ticket_store.message(conn, int(ref["message_id"]))
    if row is None:
        return None
    ticket = await ticket_store.ticket(conn, row.ticket_id)
    return None if ticket is None else (row, ticket)


async def _mapped(conn: AsyncConnection, ticket: Ticket, reply_to: Any, to: Side) -> int | None:
    """The copy, on the `to` side, of the message replied to on the other side."""
    if reply_to is None:
        return None
    if to is Side.TOPIC:
        found = await ticket_store.message_by_customer_id(conn, ticket.id, int(reply_to))
        return None if found is None else found.topic_message_id
    found = await ticket_store.message_by_topic_id(conn, ticket.id, int(reply_to))
    return None if found is None else found.customer_message_id


def _text_of(ticket: Ticket, row: TicketMessage, to: Side) -> messages.SendText:
    text = row.text or conversation.NO_TEXT
    if to is Side.TOPIC:
        if row.direction is Direction.NOTE:
            mark = conversation.NOTE_MARK
        else:
            mark = API_MARK if row.source is MessageSource.API else SAVED_REPLY_MARK
        text = f"{mark}\n\n{text}"
    return messages.SendText(
        bot_id=ticket.bot_id,
        chat_id=ticket.topic_chat_id if to is Side.TOPIC else ticket.customer_chat_id,
        message_thread_id=ticket.topic_thread_id if to is Side.TOPIC else None,
        text=text[: messages.MAX_TEXT_CHARS],
        business_connection_id=None if to is Side.TOPIC else ticket.business_connection_id,
    )


def _why(outcome: outcomes.Failed) -> str:
    if outcome.action is Action.CHAT_GONE:
        return f"the customer blocked the bot or left the chat ({outcome.reason})"
    return outcome.reason
