"""Telegram Business chats at the desk, in-process (tests/dispatching.py): connections
recorded and announced once per change, business chats opening tickets of their own, replies
going out as the account, refusals marking the reply and the connection, edits and
deletions."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import select

from tests.dispatching import Dispatching, Produced, ProducedJob
from tests.support.desks import (
    ADA,
    BOB,
    GREETING,
    DeskSetup,
    event_types,
    finish,
    latest,
    requests,
    topic_made,
)
from tgrelay import wiring
from tgrelay.db import tables
from tgrelay.support import (
    business,
    business_store,
    conversation,
    lifecycle,
    snippets,
    store,
    ticket_store,
)
from tgrelay.support.models import ConnectionState, Direction, RelayStatus, TicketMessage
from tgrelay.support.relay import NOT_DELIVERED
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.actions import Action
from tgrelay.telegram.outbox.registry import Result

SHOP: dict[str, Any] = {
    "id": 5550001,
    "is_bot": False,
    "first_name": "Acme Shop",
    "username": "acme_shop",
}
CHANGED = "desk.business_connection_changed"


async def _connect(
    relay: Dispatching, desk: DeskSetup, *, rights: dict[str, bool] | None = None
) -> tuple[str, Produced]:
    """The shop's account connects the desk's bot; (connection id, what it produced)."""
    update = relay.emulator.emulator.connect_business(desk.bot.id, SHOP, rights=rights)
    return update["business_connection"]["id"], await relay.process_pending(desk.bot.id)


async def _change(relay: Dispatching, desk: DeskSetup, connection_id: str, **how: Any) -> Produced:
    relay.emulator.emulator.change_business_connection(connection_id, **how)
    return await relay.process_pending(desk.bot.id)


async def _customer_writes(
    relay: Dispatching, desk: DeskSetup, connection_id: str, text: str, *, who: dict[str, Any] = ADA
) -> Produced:
    relay.emulator.emulator.business_message(connection_id, who, text)
    return await relay.process_pending(desk.bot.id)


async def _business_ticket(relay: Dispatching, desk: DeskSetup, connection_id: str) -> str:
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.latest_of_customer(
            conn, desk.bot.id, ADA["id"], business_connection_id=connection_id
        )
    assert found is not None
    return found.id


async def _opened(relay: Dispatching, desk: DeskSetup) -> tuple[str, str, int]:
    """Connected, Ada wrote to the shop, the topic made: (connection id, ticket id, thread)."""
    connection_id, _ = await _connect(relay, desk)
    await _customer_writes(relay, desk, connection_id, "where is my parcel?")
    ticket_id = await _business_ticket(relay, desk, connection_id)
    return connection_id, ticket_id, await topic_made(relay, desk, ticket_id)


async def _ready(relay: Dispatching, job: ProducedJob) -> messages.Request | str:
    """What the send's recipient makes of it at send time: the request, or why not."""
    result = job.payload[outbox.RESULT]
    recipient = wiring.outbox(relay.rt).recipient_of(
        Result(handler=result["handler"], reference=result["reference"])
    )
    assert recipient is not None
    assert recipient.ready is not None
    async with relay.rt.db.engine.connect() as conn:
        readiness = await recipient.ready(conn, result["reference"])
    if isinstance(readiness, outcomes.Refuse):
        return readiness.reason
    assert isinstance(readiness, outcomes.Go)
    assert readiness.request is not None
    return readiness.request


def _relays(produced: Produced) -> list[ProducedJob]:
    return [
        job
        for job in produced.of_kind(outbox.SEND)
        if (job.payload.get(outbox.RESULT) or {}).get("handler") == "support.relay"
    ]


async def _messages(relay: Dispatching, ticket_id: str) -> list[TicketMessage]:
    async with relay.rt.db.engine.connect() as conn:
        return await ticket_store.list_messages(conn, ticket_id)


async def _connection_state(relay: Dispatching, connection_id: str) -> tuple[Any, ...]:
    async with relay.rt.db.engine.connect() as conn:
        found = await business_store.connection(conn, connection_id)
    assert found is not None
    return (found.state, found.can_reply, found.is_enabled, found.account.name)


# --- connections ---------------------------------------------------------------------------


async def test_a_connection_is_recorded_and_announced_once_per_real_change(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """Connecting, withholding the right to reply, pausing and resuming each emit
    desk.business_connection_changed with the new state; the same state told again emits
    nothing."""
    connection_id, connected = await _connect(relay, desk)
    again = await _change(relay, desk, connection_id, is_enabled=True)
    read_only = await _change(
        relay, desk, connection_id, rights={"can_reply": False, "can_read_messages": True}
    )
    paused = await _change(relay, desk, connection_id, is_enabled=False)
    resumed = await _change(
        relay,
        desk,
        connection_id,
        is_enabled=True,
        rights={"can_reply": True, "can_read_messages": True},
    )

    def told(produced: Produced) -> list[tuple[str, bool, bool]]:
        return [
            (e.data["state"], e.data["can_reply"], e.data["is_enabled"])
            for e in produced.events
            if e.type == CHANGED
        ]

    assert [told(p) for p in (connected, again, read_only, paused, resumed)] == [
        [("active", True, True)],
        [],
        [("cannot_reply", False, True)],
        [("disabled", False, False)],
        [("active", True, True)],
    ]
    [first] = [e for e in connected.events if e.type == CHANGED]
    assert first.data == {
        "desk_id": desk.desk_id,
        "business_connection_id": connection_id,
        "user": {
            "id": SHOP["id"],
            "is_bot": False,
            "first_name": "Acme Shop",
            "last_name": None,
            "username": "acme_shop",
            "language_code": None,
        },
        "state": "active",
        "can_reply": True,
        "is_enabled": True,
    }
    assert await _connection_state(relay, connection_id) == (
        ConnectionState.ACTIVE,
        True,
        True,
        "@acme_shop",
    )


async def test_a_bot_without_a_desk_leaves_business_updates_alone(relay: Dispatching) -> None:
    """A business connection of a bot that serves no desk records nothing and emits nothing."""
    bot = await relay.connect_bot("plain_bot")
    update = relay.emulator.emulator.connect_business(bot.id, SHOP)
    produced = await relay.process_pending(bot.id)
    async with relay.rt.db.engine.connect() as conn:
        found = await business_store.connection(conn, update["business_connection"]["id"])
    assert (found, event_types(produced)) == (None, [])


# --- the customer's side -------------------------------------------------------------------


async def test_a_business_chat_opens_its_own_ticket_said_in_title_and_header(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """Ada's message to the shop's account opens a ticket of that connection (its title
    marked, its header naming the channel), relayed as text into the topic and greeted as
    the account; her private message to the bot opens another ticket."""
    connection_id, _ = await _connect(relay, desk)
    produced = await _customer_writes(relay, desk, connection_id, "where is my parcel?")
    ticket_id = await _business_ticket(relay, desk, connection_id)
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "and a private question")
    await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        private = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
        header = await lifecycle.header_text(conn, relay.rt, await latest(relay, ticket_id))
    ticket = await latest(relay, ticket_id)
    assert private is not None
    assert (private.id != ticket.id, private.business_connection_id) == (True, None)
    assert (ticket.business_connection_id, ticket.customer_chat_id, ticket.subject) == (
        connection_id,
        ADA["id"],
        "where is my parcel?",
    )
    found = requests(produced)
    assert [(type(r).__name__, r.method) for r in found] == [
        ("CreateTopic", "createForumTopic"),
        ("SendText", "sendMessage"),  # the header
        ("CopyMessage", "copyMessage"),  # a draft: `ready` makes it a text (below)
        ("SendText", "sendMessage"),  # the greeting
    ]
    topic, greeting = found[0], found[3]
    assert isinstance(topic, messages.CreateTopic)
    assert topic.name == "💼 #1 Ada Lovelace · where is my parcel?"
    assert isinstance(greeting, messages.SendText)
    assert (greeting.chat_id, greeting.text, greeting.business_connection_id) == (
        ADA["id"],
        GREETING,
        connection_id,
    )
    thread_id = await topic_made(relay, desk, ticket_id)
    [copy] = _relays(produced)
    assert await _ready(relay, copy) == messages.SendText(
        bot_id=desk.bot.id,
        chat_id=desk.chat_id,
        message_thread_id=thread_id,
        text="where is my parcel?",
    )
    assert "Channel: via Business: @acme_shop" in header.splitlines()
    assert not any(line.startswith("⚠️") for line in header.splitlines())


async def test_the_accounts_own_messages_are_shown_in_the_topic_and_open_nothing(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """What the shop's owner writes in the chat from the app is shown in the customer's live
    ticket's topic, recorded as no ticket message."""
    connection_id, ticket_id, _ = await _opened(relay, desk)
    relay.emulator.emulator.business_account_message(connection_id, ADA["id"], "On its way!")
    produced = await relay.process_pending(desk.bot.id)
    [note] = requests(produced)
    assert isinstance(note, messages.SendText)
    assert (note.chat_id, note.text) == (
        desk.chat_id,
        "📱 @acme_shop answered in the chat from the app:\nOn its way!",
    )
    assert [m.text for m in await _messages(relay, ticket_id)] == ["where is my parcel?"]


async def test_edits_are_mirrored_and_deletions_noted_with_the_text_kept(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """Ada's edit in the business chat keeps the old text and edits the topic's copy; her
    deletion is said in the topic under the copy, and the ticket still holds every version."""
    connection_id, ticket_id, _ = await _opened(relay, desk)
    [first] = await _messages(relay, ticket_id)
    copy_id = 4242
    async with relay.rt.db.transaction() as conn:
        await ticket_store.change_message(conn, first.id, topic_message_id=copy_id)
    relay.emulator.emulator.edit_business_message(connection_id, ADA["id"], 1, "parcel #77?")
    edited = await relay.process_pending(desk.bot.id)
    relay.emulator.emulator.delete_business_messages(connection_id, ADA["id"], [1])
    deleted = await relay.process_pending(desk.bot.id)
    [edit] = edited.of_kind(outbox.SEND)
    assert await _ready(relay, edit) == messages.EditText(
        bot_id=desk.bot.id, chat_id=desk.chat_id, message_id=copy_id, text="parcel #77?"
    )
    [note] = requests(deleted)
    assert isinstance(note, messages.SendText)
    assert (note.text, note.reply_to_message_id) == (business.DELETED, copy_id)
    [kept] = await _messages(relay, ticket_id)
    assert (kept.text, [v.text for v in kept.versions]) == ("parcel #77?", ["where is my parcel?"])


# --- the agents' side ----------------------------------------------------------------------


async def test_agent_replies_go_out_as_the_account(relay: Dispatching, desk: DeskSetup) -> None:
    """An agent's text and photo in the topic, a saved reply and an API answer each reach
    Ada's chat with the shop as sends with the connection's id (never copyMessage)."""
    connection_id, ticket_id, thread_id = await _opened(relay, desk)
    telegram = relay.emulator.emulator
    await snippets.create_snippet(
        relay.rt, relay.principal, name="bye", text="Bye {{ customer.first_name }}"
    )
    telegram.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "it ships today", message_thread_id=thread_id
    )
    text = await relay.process_pending(desk.bot.id)
    photo_update = telegram.send_media(
        desk.bot.id,
        BOB,
        {"id": desk.chat_id},
        "photo",
        caption="the label",
        message_thread_id=thread_id,
    )
    photo = await relay.process_pending(desk.bot.id)
    telegram.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "/s bye", message_thread_id=thread_id
    )
    saved = await relay.process_pending(desk.bot.id)
    async with relay.rt.db.transaction() as conn:
        desk_row = await store.desk(conn, desk.desk_id)
        assert desk_row is not None
        await conversation.reply(
            conn, relay.rt, desk_row, await latest(relay, ticket_id), "from the app", author_id=None
        )
    file_id = photo_update["message"]["photo"][-1]["file_id"]
    to_customer = []
    for produced in (text, photo, saved):
        for job in _relays(produced):
            if job.payload[outbox.RESULT]["reference"]["to"] == "customer":
                to_customer.append(await _ready(relay, job))
    async with relay.rt.db.engine.connect() as conn:
        api_row = (await ticket_store.list_messages(conn, ticket_id))[-1]
    api_ready = await _ready(
        relay,
        ProducedJob(
            kind=outbox.SEND,
            queue="",
            payload={
                outbox.RESULT: {
                    "handler": "support.relay",
                    "reference": {
                        "message_id": api_row.id,
                        "to": "customer",
                        "reply_to": None,
                        "as_text": True,
                    },
                }
            },
            ordering_key=None,
        ),
    )
    common = {"bot_id": desk.bot.id, "chat_id": ADA["id"], "business_connection_id": connection_id}
    assert [*to_customer, api_ready] == [
        messages.SendText(**common, text="it ships today"),
        messages.SendFile(**common, method="sendPhoto", file_id=file_id, caption="the label"),
        messages.SendText(**common, text="Bye Ada"),
        messages.SendText(**common, text="from the app"),
    ]


async def test_a_refused_reply_fails_with_the_reason_and_marks_the_connection(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """Telegram refusing a reply with BUSINESS_CONNECTION_INVALID marks the reply failed with
    the reason in words, says it in the topic, marks the connection removed (announced once)
    and warns in the header."""
    connection_id, ticket_id, thread_id = await _opened(relay, desk)
    relay.emulator.emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "it ships today", message_thread_id=thread_id
    )
    produced = await relay.process_pending(desk.bot.id)
    [to_customer] = [
        job
        for job in _relays(produced)
        if job.payload[outbox.RESULT]["reference"]["to"] == "customer"
    ]
    reference = to_customer.payload[outbox.RESULT]["reference"]
    reason = "Bad Request: BUSINESS_CONNECTION_INVALID"
    await finish(
        relay,
        "support.relay",
        reference,
        outcomes.Failed(method="sendMessage", action=Action.FAIL, reason=reason),
    )
    words = f"the business account @acme_shop removed the bot's connection ({reason})"
    reply = (await _messages(relay, ticket_id))[-1]
    assert (reply.direction, reply.relay_status, reply.relay_error) == (
        Direction.AGENT,
        RelayStatus.FAILED,
        words,
    )
    assert await _connection_state(relay, connection_id) == (
        ConnectionState.REMOVED,
        True,
        True,
        "@acme_shop",
    )
    assert sorted(e["state"] for e in await _changed_events(relay)) == ["active", "removed"]
    async with relay.rt.db.engine.connect() as conn:
        note = await _last_in_topic(relay)
        header = await lifecycle.header_text(conn, relay.rt, await latest(relay, ticket_id))
    assert note == NOT_DELIVERED.format(reason=words)
    assert "⚠️ Replies cannot reach the customer: the account removed the bot." in header


async def _changed_events(relay: Dispatching) -> list[dict[str, Any]]:
    async with relay.rt.db.engine.connect() as conn:
        bodies = await conn.scalars(
            select(tables.events.c.body).where(tables.events.c.type == CHANGED)
        )
        return [orjson.loads(body)["data"] for body in bodies]


async def _last_in_topic(relay: Dispatching) -> str:
    async with relay.rt.db.engine.connect() as conn:
        payloads = await conn.scalars(
            select(tables.jobs.c.payload)
            .where(tables.jobs.c.kind == outbox.SEND)
            .order_by(tables.jobs.c.id.desc())
        )
        for payload in payloads:
            body = payload if isinstance(payload, dict) else orjson.loads(payload)
            result = body.get(outbox.RESULT) or {}
            if result.get("handler") == "support.in_topic":
                return str(messages.load(body[outbox.REQUEST]).text)  # type: ignore[union-attr]
    raise AssertionError("nothing was said in the topic")


async def test_a_header_warns_when_the_connection_cannot_reply(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """Withholding the right to reply re-renders the live ticket's header with a warning."""
    connection_id, ticket_id, _ = await _opened(relay, desk)
    before = (await latest(relay, ticket_id)).header_version
    produced = await _change(relay, desk, connection_id, rights={"can_read_messages": True})
    ticket = await latest(relay, ticket_id)
    async with relay.rt.db.engine.connect() as conn:
        header = await lifecycle.header_text(conn, relay.rt, ticket)
    assert (ticket.header_version, event_types(produced)) == (before + 1, [CHANGED])
    assert header.splitlines()[6:8] == [
        "Channel: via Business: @acme_shop",
        "⚠️ Replies cannot reach the customer: the account does not let the bot reply.",
    ]


async def test_an_agents_edit_is_said_again_in_the_business_chat(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """An agent's edit of a delivered reply reaches the business chat as an "Edited" reply to
    it, sent as the account (editMessageText cannot go through a business connection)."""
    connection_id, ticket_id, thread_id = await _opened(relay, desk)
    telegram = relay.emulator.emulator
    sent = telegram.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "it ships today", message_thread_id=thread_id
    )
    produced = await relay.process_pending(desk.bot.id)
    [to_customer] = [
        job
        for job in _relays(produced)
        if job.payload[outbox.RESULT]["reference"]["to"] == "customer"
    ]
    await finish(
        relay,
        "support.relay",
        to_customer.payload[outbox.RESULT]["reference"],
        outcomes.Sent(method="sendMessage", message_id=2),
    )
    telegram.edit_message(
        desk.bot.id, BOB, desk.chat_id, sent["message"]["message_id"], "it ships tomorrow"
    )
    [edit] = (await relay.process_pending(desk.bot.id)).of_kind(outbox.SEND)
    assert await _ready(relay, edit) == messages.SendText(
        bot_id=desk.bot.id,
        chat_id=ADA["id"],
        text="✏️ Edited:\nit ships tomorrow",
        reply_to_message_id=2,
        business_connection_id=connection_id,
    )
    reply = (await _messages(relay, ticket_id))[-1]
    assert (reply.text, [v.text for v in reply.versions]) == (
        "it ships tomorrow",
        ["it ships today"],
    )
