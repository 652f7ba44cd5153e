"""What a ticket asks the outbox for, queued in the caller's transaction.

Every send of a ticket shares the ordering key `ticket:<id>`: its topic exists before
anything goes into it, and both directions keep their order. Most ids a send needs (the
topic's thread, the copy to reply to, the message to edit) exist only once earlier sends of
the ticket finished, so the queued request is a draft: the recipient named in `Result`
re-derives the real one from the rows in its `ready` (see `support.relay`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.runtime import Runtime
from tgrelay.support.models import Ticket
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages
from tgrelay.telegram.outbox.registry import Result

# Outbox recipients of this domain (support.relay registers them).
TOPIC = "support.topic"  # {"ticket_id"}: the ticket's forum topic was (not) created
HEADER = "support.header"  # {"ticket_id", "version"}: the header, sent once then edited
RELAY = "support.relay"  # {"message_id", "to", "reply_to"?}: a message copied across
EDIT = "support.edit"  # {"message_id", "to"}: an edit mirrored on the other side
TOPIC_STATE = "support.topic_state"  # {"ticket_id", "op"}: title, close, reopen
IN_TOPIC = "support.in_topic"  # {"ticket_id"}: the bot's own text in the topic


class Side(enum.StrEnum):
    """Where a relayed message or edit goes."""

    TOPIC = "topic"
    CUSTOMER = "customer"


class TopicOp(enum.StrEnum):
    TITLE = "title"
    CLOSE = "close"
    REOPEN = "reopen"


# A media message's new caption (or any edit in a business chat), said in a reply to its copy.
EDITED = "✏️ Edited:\n{text}"

# A placeholder thread: the topic's real one is put in at send time.
NO_THREAD = 0


# A relay's reference key: the message has no Telegram original to copy; its text is sent.
AS_TEXT = "as_text"


# A relay's reference key: the file the message carries, {"method", "file_id"} (a business
# chat's message is sent again by file_id: copyMessage cannot reach that chat).
FILE = "file"
FILE_METHODS: dict[str, messages.FileMethod] = {
    "photo": "sendPhoto",
    "document": "sendDocument",
    "video": "sendVideo",
    "voice": "sendVoice",
    "sticker": "sendSticker",
}


@dataclass(frozen=True, kw_only=True)
class Attachment:
    """The file a Telegram message carries, as a send by file_id takes it."""

    method: messages.FileMethod
    file_id: str

    def to_json(self) -> dict[str, str]:
        return {"method": self.method, "file_id": self.file_id}


def attachment_of(message: dict[str, Any]) -> Attachment | None:
    """A message's file (a photo's largest size), or None for a text or another kind."""
    for kind, method in FILE_METHODS.items():
        found = message.get(kind)
        if isinstance(found, list) and found:
            found = found[-1]
        if isinstance(found, dict) and found.get("file_id"):
            return Attachment(method=method, file_id=str(found["file_id"]))
    return None


def ticket_key(ticket_id: str) -> str:
    return f"ticket:{ticket_id}"


async def create_topic(conn: AsyncConnection, rt: Runtime, ticket: Ticket, name: str) -> None:
    await _send(
        conn,
        rt,
        ticket,
        messages.CreateTopic(bot_id=ticket.bot_id, chat_id=ticket.topic_chat_id, name=name),
        TOPIC,
        {"ticket_id": ticket.id},
    )


async def header(conn: AsyncConnection, rt: Runtime, ticket: Ticket, text: str) -> None:
    """The header at `ticket.header_version`: sent the first time, edited after."""
    await _send(
        conn,
        rt,
        ticket,
        messages.SendText(bot_id=ticket.bot_id, chat_id=ticket.topic_chat_id, text=text),
        HEADER,
        {"ticket_id": ticket.id, "version": ticket.header_version},
    )


async def relay(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    *,
    message_id: int,
    to: Side,
    from_message_id: int,
    reply_to: int | None,
    file: Attachment | None = None,
) -> None:
    """Copy a ticket message across (`reply_to`: the id it replied to on its own side;
    `file`: its file, for a business chat, where it is sent again rather than copied)."""
    source, target = (
        (ticket.customer_chat_id, ticket.topic_chat_id)
        if to is Side.TOPIC
        else (ticket.topic_chat_id, ticket.customer_chat_id)
    )
    await _send(
        conn,
        rt,
        ticket,
        messages.CopyMessage(
            bot_id=ticket.bot_id, chat_id=target, from_chat_id=source, message_id=from_message_id
        ),
        RELAY,
        {
            "message_id": message_id,
            "to": to.value,
            "reply_to": reply_to,
            **({} if file is None else {FILE: file.to_json()}),
        },
    )


async def relay_text(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, *, message_id: int, to: Side, text: str
) -> None:
    """A text with no Telegram original (an app's answer through the API, an agent's saved
    reply) sent to one side."""
    chat_id = ticket.topic_chat_id if to is Side.TOPIC else ticket.customer_chat_id
    await _send(
        conn,
        rt,
        ticket,
        messages.SendText(bot_id=ticket.bot_id, chat_id=chat_id, text=text),
        RELAY,
        {"message_id": message_id, "to": to.value, "reply_to": None, AS_TEXT: True},
    )


async def edit(
    conn: AsyncConnection, rt: Runtime, ticket: Ticket, *, message_id: int, to: Side, text: str
) -> None:
    """Mirror an edited message's new text on the other side."""
    chat_id = ticket.topic_chat_id if to is Side.TOPIC else ticket.customer_chat_id
    await _send(
        conn,
        rt,
        ticket,
        messages.SendText(bot_id=ticket.bot_id, chat_id=chat_id, text=text),
        EDIT,
        {"message_id": message_id, "to": to.value},
    )


async def topic_state(conn: AsyncConnection, rt: Runtime, ticket: Ticket, op: TopicOp) -> None:
    """Rename (to the title the ticket has when it goes), close or reopen the topic."""
    request: messages.Request
    common: dict[str, Any] = {
        "bot_id": ticket.bot_id,
        "chat_id": ticket.topic_chat_id,
        "message_thread_id": NO_THREAD,
    }
    if op is TopicOp.CLOSE:
        request = messages.CloseTopic(**common)
    elif op is TopicOp.REOPEN:
        request = messages.ReopenTopic(**common)
    else:
        request = messages.EditTopic(**common)
    await _send(conn, rt, ticket, request, TOPIC_STATE, {"ticket_id": ticket.id, "op": op.value})


async def in_topic(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    text: str,
    *,
    reply_to: int | None = None,
    keyboard: messages.Keyboard | None = None,
    entities: tuple[messages.Entity, ...] = (),
) -> None:
    """The bot's own text in the ticket's topic (a note's mark, a refusal, the help, the
    knowledge base's articles with their buttons, an SLA escalation's mentions as
    `entities`)."""
    await _send(
        conn,
        rt,
        ticket,
        messages.SendText(
            bot_id=ticket.bot_id,
            chat_id=ticket.topic_chat_id,
            text=text[: messages.MAX_TEXT_CHARS],
            reply_to_message_id=reply_to,
            keyboard=keyboard,
            entities=entities,
        ),
        IN_TOPIC,
        {"ticket_id": ticket.id},
    )


async def to_customer(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    text: str,
    *,
    keyboard: messages.Keyboard | None = None,
) -> None:
    """The desk's own text to the customer (greeting, closing, an auto-answer and its
    question), in the ticket's order; as the business account in a business chat."""
    await outbox.enqueue(
        conn,
        rt,
        messages.SendText(
            bot_id=ticket.bot_id,
            chat_id=ticket.customer_chat_id,
            text=text[: messages.MAX_TEXT_CHARS],
            keyboard=keyboard,
            business_connection_id=ticket.business_connection_id,
        ),
        ordering_key=ticket_key(ticket.id),
    )


async def _send(
    conn: AsyncConnection,
    rt: Runtime,
    ticket: Ticket,
    request: messages.Request,
    handler: str,
    reference: dict[str, Any],
) -> None:
    await outbox.enqueue(
        conn,
        rt,
        request,
        result=Result(handler=handler, reference=reference),
        ordering_key=ticket_key(ticket.id),
    )
