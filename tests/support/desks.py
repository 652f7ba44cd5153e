"""A desk to test tickets with: a bot connected to the workspace, a forum supergroup where it
is administrator, the group's connection and the desk's row.

The row is written directly, not by `desks.create_desk`: its live getChat/getChatMember
checks cost ~0.35 s a test here, +40% on the handler tests. The desk's checks are proven by
tests/support/setup and the e2e tests, which do go through the API."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.dispatching import Dispatching, Produced
from tgrelay import wiring
from tgrelay.groups import store as groups_store
from tgrelay.support import store, ticket_store
from tgrelay.support.models import Assignment, Ticket
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.registry import Result
from tgrelay.testing.emulator import BotRecord

ADA: dict[str, Any] = {
    "id": 7001,
    "is_bot": False,
    "first_name": "Ada",
    "last_name": "Lovelace",
    "username": "ada",
    "language_code": "en",
}
BOB: dict[str, Any] = {"id": 8001, "is_bot": False, "first_name": "Bob", "username": "bob"}
CAT: dict[str, Any] = {"id": 8002, "is_bot": False, "first_name": "Cat", "username": "cat"}
GREETING = "Hi! We got your message."
CLOSING = "Glad we could help."
WINDOW_SECONDS = 3600


@dataclass(frozen=True, kw_only=True)
class DeskSetup:
    bot: BotRecord
    desk_id: str
    chat_id: int  # the forum supergroup


async def make_desk(
    relay: Dispatching,
    *,
    assignment: Assignment = Assignment.CLAIM_ON_REPLY,
    username: str = "help_bot",
) -> DeskSetup:
    """A desk of a fresh bot and forum, with greeting and closing texts and a 1-hour window."""
    bot = await relay.connect_bot(username)
    emulator = relay.emulator.emulator
    chat = emulator.create_chat("supergroup", "Support", is_forum=True)
    emulator.add_bot(chat["id"], bot.id, BOB, status="administrator")
    now = relay.rt.clock()
    workspace_id = relay.principal.workspace_id
    async with relay.rt.db.transaction() as conn:
        await groups_store.add_connection(
            conn,
            {
                "id": "conn_desk",
                "workspace_id": workspace_id,
                "bot_id": bot.id,
                "chat_id": chat["id"],
                "chat_type": "supergroup",
                "title": "Support",
                "is_forum": True,
                "status": "active",
                "created_at": now,
                "updated_at": now,
            },
        )
        await store.add_desk(
            conn,
            {
                "id": "dsk_help",
                "workspace_id": workspace_id,
                "bot_id": bot.id,
                "connection_id": "conn_desk",
                "name": "Help",
                "assignment": assignment.value,
                "reopen_window_seconds": WINDOW_SECONDS,
                "greeting_text": GREETING,
                "closing_text": CLOSING,
                "created_at": now,
                "updated_at": now,
            },
        )
    await relay.process_pending(bot.id)  # the bot's addition: no ticket's business
    return DeskSetup(bot=bot, desk_id="dsk_help", chat_id=chat["id"])


async def topic_made(relay: Dispatching, desk: DeskSetup, ticket_id: str) -> int:
    """Finish the ticket's topic send as the outbox would after Telegram made it: the
    emulator's topic, and the recipient told; its thread id."""
    ticket = await latest(relay, ticket_id)
    topic = relay.emulator.emulator.create_forum_topic(desk.bot.id, desk.chat_id, "t")
    thread_id = int(topic.message_thread_id)
    await finish(
        relay,
        "support.topic",
        {"ticket_id": ticket.id},
        outcomes.Sent(method="createForumTopic", message_thread_id=thread_id),
    )
    return thread_id


async def finish(
    relay: Dispatching, handler: str, reference: Mapping[str, Any], outcome: outcomes.Outcome
) -> None:
    """Tell a recipient a send's outcome, in a transaction, as the send job's end does."""
    recipient = wiring.outbox(relay.rt).recipient_of(Result(handler=handler, reference=reference))
    assert recipient is not None
    assert recipient.finished is not None
    async with relay.rt.db.transaction() as conn:
        await recipient.finished(conn, reference, outcome)


async def latest(relay: Dispatching, ticket_id: str) -> Ticket:
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.ticket(conn, ticket_id)
    assert found is not None
    return found


def sends(produced: Produced) -> list[tuple[str | None, str, str | None]]:
    """(recipient, method, ordering key) of each send the batch queued, in order."""
    found: list[tuple[str | None, str, str | None]] = []
    for job in produced.of_kind(outbox.SEND):
        result = job.payload.get(outbox.RESULT)
        request = messages.load(job.payload[outbox.REQUEST])
        found.append(
            (None if result is None else result["handler"], request.method, job.ordering_key)
        )
    return found


def requests(produced: Produced) -> list[messages.Request]:
    return [messages.load(job.payload[outbox.REQUEST]) for job in produced.of_kind(outbox.SEND)]


def event_types(produced: Produced) -> Sequence[str]:
    return [event.type for event in produced.events]
