"""The requests that carry a business ticket's messages across, derived at send time from
its rows (support.relay's `ready`). Pure.

copyMessage cannot reach a business chat (it takes no business_connection_id, and the bot
is no member of the account's chat with the customer), so both directions send the message
again: its text, or its file by file_id with the text as caption. To the customer they go
with the ticket's business_connection_id, so the customer sees the account answering.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tgrelay.support import conversation, sends
from tgrelay.support.models import Ticket, TicketMessage
from tgrelay.support.sends import Side
from tgrelay.telegram.outbox import messages

CANNOT_SEND = "a {kind} message cannot be sent through a business connection (only texts and files)"


def relayed(
    ticket: Ticket,
    row: TicketMessage,
    to: Side,
    file: Mapping[str, Any] | None,
    *,
    reply_to: int | None,
    text: str | None = None,
) -> messages.Request | str:
    """The request relaying `row` of a business ticket to the `to` side (`text`: what to
    say instead of the row's own text), or why it cannot go."""
    assert ticket.business_connection_id is not None
    business = ticket.business_connection_id if to is Side.CUSTOMER else None
    chat_id = ticket.customer_chat_id if to is Side.CUSTOMER else ticket.topic_chat_id
    thread_id = ticket.topic_thread_id if to is Side.TOPIC else None
    words = row.text if text is None else text
    if file is not None:
        return messages.SendFile(
            bot_id=ticket.bot_id,
            chat_id=chat_id,
            message_thread_id=thread_id,
            method=file["method"],
            file_id=str(file["file_id"]),
            caption=None
            if not words or file["method"] == "sendSticker"
            else words[: messages.MAX_CAPTION_CHARS],
            reply_to_message_id=reply_to,
            business_connection_id=business,
        )
    if row.kind != "text" and to is Side.CUSTOMER:
        return CANNOT_SEND.format(kind=row.kind)
    return messages.SendText(
        bot_id=ticket.bot_id,
        chat_id=chat_id,
        message_thread_id=thread_id,
        text=(words or f"({row.kind})")[: messages.MAX_TEXT_CHARS],
        reply_to_message_id=reply_to,
        business_connection_id=business,
    )


def edited_to_customer(ticket: Ticket, row: TicketMessage, target: int) -> messages.SendText:
    """An agent's edit, said again in the business chat in reply to the message it changes
    (the outbox's editMessageText takes no business_connection_id)."""
    text = row.text or conversation.NO_TEXT
    return messages.SendText(
        bot_id=ticket.bot_id,
        chat_id=ticket.customer_chat_id,
        text=sends.EDITED.format(text=text)[: messages.MAX_TEXT_CHARS],
        reply_to_message_id=target,
        business_connection_id=ticket.business_connection_id,
    )
