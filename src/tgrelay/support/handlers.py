"""The support domain's share of processing an update (DESIGN: groups → conversations →
support), on the process_update job's connection.

It consumes what the desk acted on: a desk bot's private messages and edits (tickets), its
Telegram Business updates (support.business), the messages, edits and service messages of a
ticket's topic (commands, notes, relays), and presses of a header's buttons. Anything else goes on (nothing runs after support today, but
its inbound events say consumed_by only for what support kept).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.inbox.models import Handler, Inbound
from tgrelay.runtime import Runtime
from tgrelay.support import (
    business,
    commands,
    conversation,
    header,
    incoming,
    kb_answers,
    kb_topic,
    lifecycle,
    sends,
    snippets,
    store,
    ticket_store,
)
from tgrelay.support.commands import Kind
from tgrelay.support.models import Agent, Customer, Desk, Ticket, TicketStatus
from tgrelay.support.rules import Refused
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.updates import UpdateKind

log = structlog.get_logger(__name__)

NAME = "support"
# Forum service messages: Telegram posts them in the topic when the bot manages it.
SERVICE_KEYS = frozenset(
    {
        "forum_topic_created",
        "forum_topic_edited",
        "forum_topic_closed",
        "forum_topic_reopened",
        "general_forum_topic_hidden",
        "general_forum_topic_unhidden",
        "pinned_message",
    }
)
STATUS_OF = {
    Kind.PENDING: TicketStatus.PENDING,
    Kind.RESOLVE: TicketStatus.RESOLVED,
    Kind.REOPEN: TicketStatus.OPEN,
    Kind.CLOSE: TicketStatus.CLOSED,
}
PRESSED_STATUS = {
    header.Action.PENDING: TicketStatus.PENDING,
    header.Action.RESOLVE: TicketStatus.RESOLVED,
    header.Action.REOPEN: TicketStatus.OPEN,
}
# A bare /start is answered even when the desk turned its greeting off: every chat begins so.
BARE_START_REPLY = "👋 Hi! Write your question here and our team will answer you in this chat."
NO_SUCH_AGENT = (
    "Nobody called @{username} has written in a ticket's topic yet: "
    "an agent is known once they write in one."
)


def handler(rt: Runtime) -> Handler:
    """The handler dispatch runs for the support desk (last: groups → … → support)."""

    async def handle(conn: AsyncConnection, inbound: Inbound, desks: Mapping[int, Desk]) -> bool:
        processed = inbound.processed
        raw = processed.raw
        if processed.kind is UpdateKind.CALLBACK_QUERY:
            query = raw["callback_query"]
            kb_press = kb_topic.decode(query.get("data"))
            if kb_press is not None:
                return await _kb_pressed(rt, conn, inbound, query, kb_press)
            return await _pressed(rt, conn, inbound, query)
        if processed.kind in business.KINDS:
            return await business.handle(rt, conn, inbound)
        if processed.kind not in (UpdateKind.MESSAGE, UpdateKind.EDITED_MESSAGE):
            return False
        edited = processed.kind is UpdateKind.EDITED_MESSAGE
        message: dict[str, Any] = raw["edited_message" if edited else "message"]
        chat_type = message.get("chat", {}).get("type")
        sender = message.get("from")
        if sender is None or sender.get("is_bot"):
            return False
        if chat_type == "private":
            desk = _desk(desks, inbound)
            if desk is None:
                return False
            if edited:
                return await _customer_edit(rt, conn, desk, message)
            return await _customer_message(rt, conn, inbound, desk, message)
        thread_id = message.get("message_thread_id")
        if chat_type != "supergroup" or thread_id is None:
            return False
        ticket = await ticket_store.ticket_in_topic(
            conn, message["chat"]["id"], thread_id, for_update=True
        )
        if ticket is None or ticket.bot_id != inbound.bot.bot_id:
            return False
        if ticket.workspace_id != inbound.workspace_id:
            return False
        if SERVICE_KEYS.intersection(message):
            return True  # the topic's own service messages: nothing to do
        agent = await _seen_agent(conn, rt, ticket.workspace_id, sender)
        if edited:
            text = incoming.text_of(message)
            return await conversation.agent_edited(conn, rt, ticket, message["message_id"], text)
        return await _topic_message(rt, conn, inbound, ticket, agent, message)

    async def handle_batch(conn: AsyncConnection, batch: Sequence[Inbound]) -> Collection[int]:
        # The batch's desks in one read: a statement per private message was most of what a
        # batch of them sent to the database (bench/process.py: 83 of ~97 a transaction).
        desks = await store.desks_of_bots(conn, {inbound.bot.bot_id for inbound in batch})

        async def one(conn: AsyncConnection, inbound: Inbound) -> bool:
            return await handle(conn, inbound, desks)

        return await Handler.each(NAME, one).handle(conn, batch)

    return Handler(name=NAME, handle=handle_batch)


async def takes_bare_start(conn: AsyncConnection, bot_id: int) -> bool:
    """groups.service.BARE_START_TAKEN: a desk bot's bare /start is the desk's greeting."""
    return await store.desk_of_bot(conn, bot_id) is not None


# --- the customer's side -------------------------------------------------------------------


def _desk(desks: Mapping[int, Desk], inbound: Inbound) -> Desk | None:
    desk = desks.get(inbound.bot.bot_id)
    return desk if desk is not None and desk.workspace_id == inbound.workspace_id else None


async def _customer_message(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, desk: Desk, message: dict[str, Any]
) -> bool:
    text = message.get("text")
    if text is not None and text.split("@")[0].strip() == "/start":
        # A bare /start opens no ticket: it is how every chat with a bot begins.
        await outbox.enqueue(
            conn,
            rt,
            messages.SendText(
                bot_id=desk.bot_id,
                chat_id=message["chat"]["id"],
                text=desk.greeting_text or BARE_START_REPLY,
            ),
        )
        return True
    sender = message["from"]
    customer = Customer(
        id=sender["id"],
        first_name=sender.get("first_name") or str(sender["id"]),
        last_name=sender.get("last_name"),
        username=sender.get("username"),
        language_code=sender.get("language_code"),
    )
    written = incoming.written(message, inbound.processed.received_at)
    before = await ticket_store.latest_of_customer(conn, desk.bot_id, customer.id)
    try:
        ticket = await conversation.customer_wrote(conn, rt, desk, customer, written)
    except conversation.NoDeskGroup as exc:
        log.warning("support.no_desk_group", desk_id=desk.id, reason=str(exc))
        return False
    if before is None or before.id != ticket.id:  # it opened a ticket
        await kb_answers.opened(conn, rt, desk, ticket, written.text)
    return True


async def _customer_edit(
    rt: Runtime, conn: AsyncConnection, desk: Desk, message: dict[str, Any]
) -> bool:
    message_id = message["message_id"]
    ticket = await ticket_store.ticket_of_customer_message(
        conn, desk.bot_id, message["chat"]["id"], message_id, for_update=True
    )
    if ticket is None:
        return False
    return await conversation.customer_edited(
        conn, rt, ticket, message_id, incoming.text_of(message)
    )


# --- the agents' side ----------------------------------------------------------------------


async def _topic_message(
    rt: Runtime,
    conn: AsyncConnection,
    inbound: Inbound,
    ticket: Ticket,
    agent: Agent,
    message: dict[str, Any],
) -> bool:
    command = commands.parse(incoming.text_of(message), bot_username=inbound.bot.username)
    actor = lifecycle.agent_actor(agent.telegram_user_id)
    at = inbound.processed.received_at
    message_id = message["message_id"]
    desk = await store.desk(conn, ticket.desk_id)
    if desk is None:
        return False
    match command.kind:
        case Kind.RELAY:
            await conversation.agent_wrote(conn, rt, desk, ticket, incoming.written(message, at))
        case Kind.NOTE:
            assert command.argument is not None
            await conversation.add_note(
                conn,
                rt,
                ticket,
                command.argument,
                author_id=agent.telegram_user_id,
                topic_message_id=message_id,
                at=at,
            )
        case Kind.ASSIGN:
            target = agent
            if command.argument is not None:
                found = await store.agent_by_username(conn, ticket.workspace_id, command.argument)
                if found is None:
                    await _say(
                        conn,
                        rt,
                        ticket,
                        NO_SUCH_AGENT.format(username=command.argument),
                        message_id,
                    )
                    return True
                target = found
            await lifecycle.assign(conn, rt, ticket, target, changed_by=actor)
        case Kind.UNASSIGN:
            await lifecycle.assign(conn, rt, ticket, None, changed_by=actor)
        case Kind.PENDING | Kind.RESOLVE | Kind.REOPEN | Kind.CLOSE:
            changed = await lifecycle.change_status(
                conn,
                rt,
                ticket,
                STATUS_OF[command.kind],
                changed_by=actor,
                note=command.argument if command.kind is Kind.RESOLVE else None,
            )
            if isinstance(changed, Refused):
                await _say(conn, rt, ticket, f"⛔ {changed.reason}.", message_id)
        case Kind.SNIPPET:
            assert command.argument is not None
            try:
                text = await snippets.render_named(
                    conn, name=command.argument, ticket=ticket, desk=desk, agent=agent
                )
            except snippets.SnippetUnavailable as exc:
                await _say(conn, rt, ticket, f"⛔ {exc}", message_id)
            else:
                await conversation.reply(
                    conn, rt, desk, ticket, text, author_id=agent.telegram_user_id
                )
        case Kind.KB:
            assert command.argument is not None
            await kb_topic.search_in_topic(conn, rt, ticket, command.argument, reply_to=message_id)
        case Kind.UNKNOWN:
            await _say(
                conn,
                rt,
                ticket,
                f"Unknown command {command.argument}.\n\n{commands.HELP}",
                message_id,
            )
        case Kind.INCOMPLETE:
            await _say(
                conn,
                rt,
                ticket,
                f"{command.argument} needs some text after it.\n\n{commands.HELP}",
                message_id,
            )
    return True


async def _pressed(
    rt: Runtime, conn: AsyncConnection, inbound: Inbound, query: dict[str, Any]
) -> bool:
    """A header button: act, and answer the press with a notice or the refusal."""
    press = header.decode(query.get("data"))
    if press is None:
        return False
    ticket = await ticket_store.ticket(
        conn, press.ticket_id, workspace_id=inbound.workspace_id, for_update=True
    )
    if ticket is None or ticket.bot_id != inbound.bot.bot_id:
        return False
    agent = await _seen_agent(conn, rt, ticket.workspace_id, query["from"])
    actor = lifecycle.agent_actor(agent.telegram_user_id)
    if press.action is header.Action.ASSIGN_ME:
        await lifecycle.assign(conn, rt, ticket, agent, changed_by=actor)
        notice = f"Ticket #{ticket.number} is yours."
    else:
        target = PRESSED_STATUS[press.action]
        changed = await lifecycle.change_status(conn, rt, ticket, target, changed_by=actor)
        notice = (
            changed.reason
            if isinstance(changed, Refused)
            else f"Ticket #{ticket.number}: {target}."
        )
    await outbox.enqueue(
        conn,
        rt,
        messages.AnswerCallback(
            bot_id=ticket.bot_id,
            callback_query_id=query["id"],
            text=notice[: messages.MAX_CALLBACK_ANSWER_CHARS],
        ),
    )
    return True


async def _kb_pressed(
    rt: Runtime,
    conn: AsyncConnection,
    inbound: Inbound,
    query: dict[str, Any],
    press: kb_topic.Press,
) -> bool:
    """A knowledge-base button: an agent's "Send to customer" in the topic, or the
    customer's Yes / No under an auto-answer in their private chat."""
    ticket = await ticket_store.ticket(
        conn, press.ticket_id, workspace_id=inbound.workspace_id, for_update=True
    )
    if ticket is None or ticket.bot_id != inbound.bot.bot_id:
        return False
    chat_id = query.get("message", {}).get("chat", {}).get("id")
    if press.action is not kb_topic.Action.SEND:
        if query["from"]["id"] != ticket.customer.id or chat_id != ticket.customer_chat_id:
            return False
        await kb_answers.customer_said(conn, rt, ticket, press, query)
        return True
    if chat_id != ticket.topic_chat_id or press.article_id is None:
        return False
    agent = await _seen_agent(conn, rt, ticket.workspace_id, query["from"])
    notice = await kb_topic.send_article(conn, rt, ticket, agent, press.article_id)
    await outbox.enqueue(
        conn,
        rt,
        messages.AnswerCallback(bot_id=ticket.bot_id, callback_query_id=query["id"], text=notice),
    )
    return True


async def _seen_agent(
    conn: AsyncConnection, rt: Runtime, workspace_id: str, user: dict[str, Any]
) -> Agent:
    """The writer as an agent: recorded on first sight (inactive: only PUT makes an agent
    take round-robin turns), their @username kept current."""
    now = rt.clock()
    user_id = int(user["id"])
    username = user.get("username")
    found = await store.agent(conn, workspace_id, user_id)
    if found is None:
        name = " ".join(part for part in (user.get("first_name"), user.get("last_name")) if part)
        await store.add_agent(
            conn,
            {
                "workspace_id": workspace_id,
                "telegram_user_id": user_id,
                "name": name or str(user_id),
                "username": username,
                "active": False,
                "created_at": now,
                "updated_at": now,
            },
        )
    elif found.username != username:
        await store.change_agent(conn, workspace_id, user_id, username=username, updated_at=now)
    agent = await store.agent(conn, workspace_id, user_id)
    assert agent is not None
    return agent


# --- shared --------------------------------------------------------------------------------


async def _say(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, text: str, reply_to: int
) -> None:
    await sends.in_topic(conn, rt, ticket, text, reply_to=reply_to)
