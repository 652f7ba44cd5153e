"""A conversation's `handoff` step: a ticket for the chat, with what the flow collected shown
in its topic as an internal note. Inside the caller's transaction (the job that reached the
step); the conversations domain calls it through `support.service.open_handoff`.

The ticket opens as a customer's message would open it (`conversation.open_ticket`: number,
topic, header, assignment, greeting), but its first message has no Telegram original to
copy: it is recorded as the app's text (source api), which the relay sends as text.
A customer who already has a ticket that is not closed gets the note in that one.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from tgrelay.runtime import Runtime
from tgrelay.support import conversation, store, ticket_store
from tgrelay.support.incoming import Written
from tgrelay.support.models import Customer, MessageSource, TicketStatus

log = structlog.get_logger(__name__)

NO_DESK = "the bot has no support desk to hand the conversation to"
NOT_PRIVATE = "a handoff opens a ticket for a private chat only"
# A ticket that still takes the customer's messages takes the handoff's note instead of a
# second ticket; a closed one is final.
JOINABLE = frozenset((TicketStatus.NEW, TicketStatus.OPEN, TicketStatus.PENDING))


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
    """Open (or join) the customer's ticket and note `summary` in its topic; None when done,
    else why it could not be (no desk, not a private chat)."""
    desk = await store.desk_of_bot(conn, bot_id)
    if desk is None:
        return NO_DESK
    if chat_id != customer.id:
        return NOT_PRIVATE
    ticket = await ticket_store.latest_of_customer(conn, bot_id, customer.id, for_update=True)
    if ticket is None or ticket.status not in JOINABLE:
        written = Written(
            message_id=0, text=title, kind="text", reply_to=None, author_id=customer.id, at=at
        )
        ticket = await conversation.open_ticket(conn, rt, desk, customer, written)
        [first] = await ticket_store.list_messages(conn, ticket.id)
        # No original to copy: the relay sends the recorded text (as it does the API's).
        await ticket_store.change_message(
            conn, first.id, source=MessageSource.API.value, customer_message_id=None
        )
    await conversation.add_note(
        conn,
        rt,
        ticket,
        f"{title}\n\n{summary}".strip(),
        author_id=None,
        topic_message_id=None,
        at=at,
    )
    log.info("support.handoff", ticket_id=ticket.id, bot_id=bot_id)
    return None
