"""The support handler in-process (tests/dispatching.py): what a customer's and an agent's
messages, commands, edits and button presses do to tickets, and what they queue and emit."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Any

import orjson
from sqlalchemy import select

from tests.dispatching import Dispatching, Produced
from tests.support.desks import (
    ADA,
    BOB,
    CAT,
    CLOSING,
    GREETING,
    WINDOW_SECONDS,
    DeskSetup,
    event_types,
    finish,
    latest,
    make_desk,
    requests,
    sends,
    topic_made,
)
from tgrelay.db import tables
from tgrelay.support import conversation, lifecycle, snippets, store, ticket_store
from tgrelay.support import jobs as support_jobs
from tgrelay.support.handlers import BARE_START_REPLY, NO_SUCH_AGENT
from tgrelay.support.models import (
    Assignment,
    ChangedField,
    Direction,
    RelayStatus,
    TicketMessage,
    TicketStatus,
)
from tgrelay.support.relay import NOT_DELIVERED
from tgrelay.telegram.outbox import jobs as outbox
from tgrelay.telegram.outbox import messages, outcomes
from tgrelay.telegram.outbox.actions import Action
from tgrelay.testing.clock import Clock


async def _customer_writes(relay: Dispatching, desk: DeskSetup, text: str) -> str:
    """The customer writes; the id of the ticket it went to."""
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, text)
    await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
    assert found is not None
    return found.id


async def _opened(relay: Dispatching, desk: DeskSetup) -> tuple[str, int]:
    """A ticket opened by Ada, its topic made; (ticket id, thread id)."""
    ticket_id = await _customer_writes(relay, desk, "my order never arrived")
    return ticket_id, await topic_made(relay, desk, ticket_id)


async def _agent_writes(
    relay: Dispatching, desk: DeskSetup, thread_id: int, text: str, *, who: dict[str, Any] = BOB
) -> Produced:
    relay.emulator.emulator.send_message(
        desk.bot.id, who, {"id": desk.chat_id}, text, message_thread_id=thread_id
    )
    return await relay.process_pending(desk.bot.id)


async def test_a_first_message_opens_a_ticket_with_topic_header_copy_and_greeting(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """A customer's first message makes ticket #1 (new), queues its topic, header, the copy
    and the greeting under the ticket's key, and ticket.created waits for the topic."""
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "my order never arrived")
    produced = await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        ticket = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
        assert ticket is not None
        [message] = await ticket_store.list_messages(conn, ticket.id)
    key = f"ticket:{ticket.id}"
    assert (ticket.number, ticket.status, ticket.subject, ticket.customer.name) == (
        1,
        TicketStatus.NEW,
        "my order never arrived",
        "Ada Lovelace",
    )
    assert sends(produced) == [
        ("support.topic", "createForumTopic", key),
        ("support.header", "sendMessage", key),
        ("support.relay", "copyMessage", key),
        (None, "sendMessage", key),
    ]
    topic = requests(produced)[0]
    assert isinstance(topic, messages.CreateTopic)
    assert topic.name == "#1 Ada Lovelace · my order never arrived"
    assert (message.direction, message.relay_status, message.text) == (
        Direction.CUSTOMER,
        RelayStatus.PENDING,
        "my order never arrived",
    )
    assert [(e.type, e.data.get("consumed_by")) for e in produced.events] == [
        ("ticket.message_added", None),
        ("message.received", "support"),
    ]

    thread_id = await topic_made(relay, desk, ticket.id)
    async with relay.rt.db.engine.connect() as conn:
        body = await conn.scalar(
            select(tables.events.c.body).where(tables.events.c.type == "ticket.created")
        )
    assert body is not None
    assert orjson.loads(body)["data"] == {
        "ticket_id": ticket.id,
        "number": 1,
        "desk_id": desk.desk_id,
        "customer_id": ADA["id"],
        "customer": {
            "first_name": "Ada",
            "last_name": "Lovelace",
            "username": "ada",
            "language_code": "en",
        },
        "message_text": "my order never arrived",
        "topic_id": thread_id,
        "timestamp": ticket.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    assert (await latest(relay, ticket.id)).topic_thread_id == thread_id


async def test_the_greeting_is_sent_to_the_customer(relay: Dispatching, desk: DeskSetup) -> None:
    """The desk's greeting goes to the customer's private chat when a ticket opens."""
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "hello")
    produced = await relay.process_pending(desk.bot.id)
    texts = [
        (r.chat_id, r.text)
        for r in requests(produced)
        if isinstance(r, messages.SendText) and r.chat_id == ADA["id"]
    ]
    assert texts == [(ADA["id"], GREETING)]


async def test_later_messages_join_the_open_ticket(relay: Dispatching, desk: DeskSetup) -> None:
    """A second message goes to the same ticket: one copy queued, no new ticket."""
    first, _ = await _opened(relay, desk)
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "any news?")
    produced = await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
        texts = [m.text for m in await ticket_store.list_messages(conn, first)]
    assert (found is not None and found.id, texts) == (
        first,
        ["my order never arrived", "any news?"],
    )
    assert sends(produced) == [("support.relay", "copyMessage", f"ticket:{first}")]


async def test_a_bare_start_greets_and_opens_no_ticket(relay: Dispatching, desk: DeskSetup) -> None:
    """A desk bot's bare /start gets the desk's greeting (not groups' link text), no ticket."""
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "/start")
    produced = await relay.process_pending(desk.bot.id)
    async with relay.rt.db.engine.connect() as conn:
        found = await ticket_store.latest_of_customer(conn, desk.bot.id, ADA["id"])
    assert found is None
    assert [(messages.chat_of(r), getattr(r, "text", None)) for r in requests(produced)] == [
        (ADA["id"], GREETING)
    ]
    assert [e.data["consumed_by"] for e in produced.events] == ["support"]


async def test_a_bare_start_is_answered_when_the_greeting_is_off(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """A desk whose greeting is turned off still answers a bare /start, with a reply of its own."""
    async with relay.rt.db.transaction() as conn:
        await store.change_desk(conn, desk.desk_id, greeting_text=None)
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, "/start")
    produced = await relay.process_pending(desk.bot.id)
    assert [(messages.chat_of(r), getattr(r, "text", None)) for r in requests(produced)] == [
        (ADA["id"], BARE_START_REPLY)
    ]


async def test_an_agent_reply_is_relayed_opens_claims_and_is_the_first_response(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """An agent's first reply is copied to the customer, opens the ticket, claims it for
    them (recorded as an inactive agent), and is the first response."""
    ticket_id, thread_id = await _opened(relay, desk)
    produced = await _agent_writes(relay, desk, thread_id, "we are on it")
    ticket = await latest(relay, ticket_id)
    async with relay.rt.db.engine.connect() as conn:
        agent = await store.agent(conn, relay.principal.workspace_id, BOB["id"])
        messages_ = await ticket_store.list_messages(conn, ticket_id)
        history = await ticket_store.list_changes(conn, ticket_id)
    assert (ticket.status, ticket.assignee_id, ticket.first_response_at is not None) == (
        TicketStatus.OPEN,
        BOB["id"],
        True,
    )
    assert agent is not None
    assert (agent.name, agent.username, agent.active) == ("Bob", "bob", False)
    assert [(m.direction, m.text) for m in messages_] == [
        (Direction.CUSTOMER, "my order never arrived"),
        (Direction.AGENT, "we are on it"),
    ]
    assert [(c.field, c.previous, c.value, c.changed_by) for c in history] == [
        (ChangedField.STATUS, None, "new", "customer"),
        (ChangedField.STATUS, "new", "open", f"agent:{BOB['id']}"),
        (ChangedField.ASSIGNEE, None, str(BOB["id"]), f"agent:{BOB['id']}"),
    ]
    assert event_types(produced) == [
        "ticket.message_added",
        "ticket.status_changed",
        "ticket.assigned",
        "ticket.first_response",
        "message.received",
    ]
    copy, _header_edit = requests(produced)
    assert isinstance(copy, messages.CopyMessage)
    assert (copy.chat_id, copy.from_chat_id) == (ADA["id"], desk.chat_id)
    assert sends(produced)[1][0] == "support.header"


async def test_pending_then_the_customer_writes_back_to_open(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """/pending waits on the customer; their next message makes the ticket open again."""
    ticket_id, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "/pending")
    pending = (await latest(relay, ticket_id)).status
    await _customer_writes(relay, desk, "here is the receipt")
    assert (pending, (await latest(relay, ticket_id)).status) == (
        TicketStatus.PENDING,
        TicketStatus.OPEN,
    )


async def test_resolve_closes_the_topic_and_a_message_within_the_window_reopens(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """/resolve with a note resolves (topic renamed and closed, closing text, close timer);
    the customer writing within the window reopens the same ticket and its topic."""
    ticket_id, thread_id = await _opened(relay, desk)
    produced = await _agent_writes(relay, desk, thread_id, "/resolve refund sent")
    resolved = await latest(relay, ticket_id)
    async with relay.rt.db.engine.connect() as conn:
        timers = (
            await conn.execute(
                select(tables.jobs.c.run_at).where(tables.jobs.c.kind == support_jobs.CLOSE_TICKET)
            )
        ).all()
    assert (resolved.status, resolved.resolution_note) == (TicketStatus.RESOLVED, "refund sent")
    assert [s[:2] for s in sends(produced)] == [
        ("support.topic_state", "editForumTopic"),
        ("support.topic_state", "closeForumTopic"),
        (None, "sendMessage"),
        ("support.header", "sendMessage"),
    ]
    assert requests(produced)[2] == messages.SendText(
        bot_id=desk.bot.id, chat_id=ADA["id"], text=CLOSING
    )
    assert resolved.resolved_at is not None
    assert [row.run_at for row in timers] == [
        resolved.resolved_at + timedelta(seconds=WINDOW_SECONDS)
    ]
    assert event_types(produced) == ["ticket.status_changed", "ticket.resolved", "message.received"]

    clock.advance(WINDOW_SECONDS - 60)
    produced = await _customer_says(relay, desk, "it broke again")
    reopened = await latest(relay, ticket_id)
    assert (reopened.status, reopened.resolved_at) == (TicketStatus.OPEN, None)
    assert [s[:2] for s in sends(produced)] == [
        ("support.topic_state", "reopenForumTopic"),
        ("support.topic_state", "editForumTopic"),
        ("support.header", "sendMessage"),
        ("support.relay", "copyMessage"),
    ]


async def _customer_says(relay: Dispatching, desk: DeskSetup, text: str) -> Produced:
    relay.emulator.emulator.send_message(desk.bot.id, ADA, None, text)
    return await relay.process_pending(desk.bot.id)


async def test_after_the_window_a_message_opens_a_new_ticket(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """Past the reopen window a customer's message opens ticket #2, the first stays resolved."""
    first, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "/resolve")
    clock.advance(WINDOW_SECONDS + 60)
    second = await _customer_writes(relay, desk, "new problem")
    assert (second != first, (await latest(relay, second)).number) == (True, 2)
    assert (await latest(relay, first)).status is TicketStatus.RESOLVED


async def test_the_close_timer_closes_only_a_ticket_still_resolved_then(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """The window's end closes a ticket resolved at that time, not one reopened since."""
    ticket_id, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "/resolve")
    resolved_at = (await latest(relay, ticket_id)).resolved_at
    assert resolved_at is not None
    async with relay.rt.db.transaction() as conn:
        await lifecycle.close_if_still_resolved(
            conn, relay.rt, ticket_id, resolved_at.replace(year=2000)
        )
    still = (await latest(relay, ticket_id)).status
    async with relay.rt.db.transaction() as conn:
        await lifecycle.close_if_still_resolved(conn, relay.rt, ticket_id, resolved_at)
    closed = await latest(relay, ticket_id)
    assert (still, closed.status, closed.closed_at is not None) == (
        TicketStatus.RESOLVED,
        TicketStatus.CLOSED,
        True,
    )


async def test_a_refused_transition_answers_in_the_topic(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """/pending on a resolved ticket is refused, and the topic hears why (a reply)."""
    ticket_id, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "/resolve")
    produced = await _agent_writes(relay, desk, thread_id, "/pending")
    [reply] = requests(produced)
    assert isinstance(reply, messages.SendText)
    assert reply.text == (
        "⛔ a resolved ticket must be reopened before it can wait on the customer."
    )
    assert (await latest(relay, ticket_id)).status is TicketStatus.RESOLVED


async def test_notes_are_recorded_marked_and_never_relayed(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """`//` and /note make internal notes: marked in the topic, not sent to the customer."""
    ticket_id, thread_id = await _opened(relay, desk)
    first = await _agent_writes(relay, desk, thread_id, "//check the warehouse")
    second = await _agent_writes(relay, desk, thread_id, "/note called the courier")
    async with relay.rt.db.engine.connect() as conn:
        notes = [
            (m.direction, m.text, m.relay_status)
            for m in await ticket_store.list_messages(conn, ticket_id)
            if m.direction is Direction.NOTE
        ]
    marks = requests(first) + requests(second)
    assert notes == [
        (Direction.NOTE, "check the warehouse", RelayStatus.INTERNAL),
        (Direction.NOTE, "called the courier", RelayStatus.INTERNAL),
    ]
    assert [(type(r).__name__, getattr(r, "text", None)) for r in marks] == [
        ("SendText", conversation.NOTE_MARK),
        ("SendText", conversation.NOTE_MARK),
    ]
    assert (await latest(relay, ticket_id)).status is TicketStatus.NEW


async def test_unknown_commands_get_the_help_and_are_not_relayed(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """An unknown /command is answered in the topic with the command list, nothing relayed."""
    _, thread_id = await _opened(relay, desk)
    produced = await _agent_writes(relay, desk, thread_id, f"/frob@{desk.bot.username}")
    [reply] = requests(produced)
    assert isinstance(reply, messages.SendText)
    assert (reply.chat_id, reply.text.splitlines()[0]) == (
        desk.chat_id,
        f"Unknown command /frob@{desk.bot.username}.",
    )


async def test_assign_by_username_and_unassign(relay: Dispatching, desk: DeskSetup) -> None:
    """/assign @cat gives the ticket to a known agent, an unknown name is said, /unassign
    clears it."""
    ticket_id, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "//hi", who=CAT)  # Cat becomes known
    unknown = await _agent_writes(relay, desk, thread_id, "/assign @nobody")
    await _agent_writes(relay, desk, thread_id, "/assign @cat")
    assigned = (await latest(relay, ticket_id)).assignee_id
    await _agent_writes(relay, desk, thread_id, "/unassign")
    [said] = requests(unknown)
    assert (assigned, (await latest(relay, ticket_id)).assignee_id) == (CAT["id"], None)
    assert isinstance(said, messages.SendText)
    assert said.text == NO_SUCH_AGENT.format(username="nobody")


async def test_round_robin_gives_a_new_ticket_to_the_longest_idle_active_agent(
    relay: Dispatching,
) -> None:
    """With round_robin the new ticket goes to the active agent, and the header shows it."""
    desk = await make_desk(relay, assignment=Assignment.ROUND_ROBIN)
    now = relay.rt.clock()
    async with relay.rt.db.transaction() as conn:
        await store.add_agent(
            conn,
            {
                "workspace_id": relay.principal.workspace_id,
                "telegram_user_id": CAT["id"],
                "name": "Cat",
                "active": True,
                "created_at": now,
                "updated_at": now,
            },
        )
    ticket_id = await _customer_writes(relay, desk, "hello")
    ticket = await latest(relay, ticket_id)
    async with relay.rt.db.engine.connect() as conn:
        agent = await store.agent(conn, relay.principal.workspace_id, CAT["id"])
    assert (ticket.assignee_id, agent is not None and agent.last_assigned_at is not None) == (
        CAT["id"],
        True,
    )


async def test_header_buttons_act_and_answer_the_press(relay: Dispatching, desk: DeskSetup) -> None:
    """ "Assign to me" assigns the presser; "Resolve" resolves; each press is answered."""
    ticket_id, thread_id = await _opened(relay, desk)
    emulator = relay.emulator.emulator
    header_message = emulator.send_message(
        desk.bot.id, BOB, {"id": desk.chat_id}, "stand-in", message_thread_id=thread_id
    )
    await relay.process_pending(desk.bot.id)
    message_id = header_message["message"]["message_id"]
    updates: list[dict[str, Any]] = []
    for action in ("me", "resolve"):
        updates.append(
            {
                "update_id": 990000 + len(updates),
                "callback_query": {
                    "id": f"q{action}",
                    "from": BOB,
                    "chat_instance": "1",
                    "data": f"tkt:{action}:{ticket_id}",
                    "message": header_message["message"] | {"message_id": message_id},
                },
            }
        )
    produced = await relay.process(desk.bot.id, updates)
    answers = [r for r in requests(produced) if isinstance(r, messages.AnswerCallback)]
    ticket = await latest(relay, ticket_id)
    assert (ticket.assignee_id, ticket.status) == (BOB["id"], TicketStatus.RESOLVED)
    assert [(a.callback_query_id, a.text) for a in answers] == [
        ("qme", "Ticket #1 is yours."),
        ("qresolve", "Ticket #1: resolved."),
    ]


async def test_a_customer_edit_keeps_the_old_text_and_mirrors_the_new(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """An edited customer message keeps its earlier text as a version and queues the edit of
    its copy in the topic."""
    ticket_id, _ = await _opened(relay, desk)
    [message] = await _messages(relay, ticket_id)
    assert message.customer_message_id is not None
    relay.emulator.emulator.edit_message(
        desk.bot.id, ADA, ADA["id"], message.customer_message_id, "my order never came"
    )
    produced = await relay.process_pending(desk.bot.id)
    [edited] = await _messages(relay, ticket_id)
    assert (edited.text, [v.text for v in edited.versions]) == (
        "my order never came",
        ["my order never arrived"],
    )
    assert [s[:2] for s in sends(produced)] == [("support.edit", "sendMessage")]


async def test_a_customer_edit_in_an_earlier_ticket_is_mirrored_there(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """Ada edits a message of her first ticket after a second one opened: the first ticket's
    message takes the edit and its topic gets it; the second ticket is untouched."""
    first, thread_id = await _opened(relay, desk)
    [message] = await _messages(relay, first)
    assert message.customer_message_id is not None
    await _agent_writes(relay, desk, thread_id, "/resolve")
    clock.advance(WINDOW_SECONDS + 60)
    second = await _customer_writes(relay, desk, "a new problem")
    relay.emulator.emulator.edit_message(
        desk.bot.id, ADA, ADA["id"], message.customer_message_id, "my order never came"
    )
    produced = await relay.process_pending(desk.bot.id)

    [edited] = await _messages(relay, first)
    assert (edited.text, [v.text for v in edited.versions]) == (
        "my order never came",
        ["my order never arrived"],
    )
    assert [(m.text, m.versions) for m in await _messages(relay, second)] == [("a new problem", ())]
    assert sends(produced) == [("support.edit", "sendMessage", f"ticket:{first}")]
    assert [(e.type, e.data["consumed_by"]) for e in produced.events] == [
        ("message.edited", "support")
    ]


async def test_each_relay_accepted_is_observed_from_its_storing(
    relay: Dispatching, desk: DeskSetup, clock: Clock
) -> None:
    """A relay Telegram accepts observes tgrelay_support_relay_seconds with the time since
    its message was stored (2.5 s to the topic, 0.75 s to the customer); a failed one not."""
    ticket_id, thread_id = await _opened(relay, desk)
    clock.advance(2.5)
    [question] = await _messages(relay, ticket_id)
    await finish(
        relay,
        "support.relay",
        {"message_id": question.id, "to": "topic", "reply_to": None},
        outcomes.Sent(method="copyMessage", message_id=900),
    )
    await _agent_writes(relay, desk, thread_id, "we are on it")
    await _agent_writes(relay, desk, thread_id, "and shipping it again")
    clock.advance(0.75)
    answer, again = (await _messages(relay, ticket_id))[1:]
    await finish(
        relay,
        "support.relay",
        {"message_id": answer.id, "to": "customer", "reply_to": None},
        outcomes.Sent(method="copyMessage", message_id=901),
    )
    await finish(
        relay,
        "support.relay",
        {"message_id": again.id, "to": "customer", "reply_to": None},
        outcomes.Failed(method="copyMessage", action=Action.CHAT_GONE, reason="blocked"),
    )

    sample = relay.rt.metrics.registry.get_sample_value
    name = "tgrelay_support_relay_seconds"
    assert [
        sample(f"{name}_count"),
        sample(f"{name}_sum"),
        sample(f"{name}_bucket", {"le": "0.5"}),
        sample(f"{name}_bucket", {"le": "1.0"}),
        sample(f"{name}_bucket", {"le": "2.5"}),
    ] == [2.0, 3.25, 0.0, 1.0, 2.0]


async def test_a_failed_agent_reply_is_marked_and_said_in_the_topic(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """When the customer blocked the bot, the reply is marked failed with why, and a note
    replying to the agent's message says it was not delivered."""
    ticket_id, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "we are on it")
    reply = (await _messages(relay, ticket_id))[-1]
    await finish(
        relay,
        "support.relay",
        {"message_id": reply.id, "to": "customer", "reply_to": None},
        outcomes.Failed(
            method="copyMessage",
            action=Action.CHAT_GONE,
            reason="Forbidden: bot was blocked by the user",
        ),
    )
    failed = (await _messages(relay, ticket_id))[-1]
    async with relay.rt.db.engine.connect() as conn:
        payload = await conn.scalar(
            select(tables.jobs.c.payload).order_by(tables.jobs.c.id.desc()).limit(1)
        )
    assert (failed.relay_status, failed.relay_error) == (
        RelayStatus.FAILED,
        "Forbidden: bot was blocked by the user",
    )
    assert payload is not None
    assert messages.load(orjson.loads(payload)[outbox.REQUEST]) == messages.SendText(
        bot_id=desk.bot.id,
        chat_id=desk.chat_id,  # a draft: the topic's thread is derived when it is sent
        reply_to_message_id=reply.topic_message_id,
        text=NOT_DELIVERED.format(
            reason="the customer blocked the bot or left the chat "
            "(Forbidden: bot was blocked by the user)"
        ),
    )
    assert (await latest(relay, ticket_id)).status is TicketStatus.OPEN


async def _messages(relay: Dispatching, ticket_id: str) -> list[TicketMessage]:
    async with relay.rt.db.engine.connect() as conn:
        return await ticket_store.list_messages(conn, ticket_id)


async def test_a_snippet_is_rendered_sent_to_the_customer_and_shown_in_the_topic(
    relay: Dispatching, desk: DeskSetup
) -> None:
    """/s <name> renders the workspace's snippet for this ticket and agent and sends it like a
    reply; an unknown name is answered in the topic with the snippets there are."""
    await snippets.create_snippet(
        relay.rt,
        relay.principal,
        name="thanks",
        text="Thanks {{ customer.first_name }}, {{ agent.name }} here about #{{ ticket.number }}.",
    )
    ticket_id, thread_id = await _opened(relay, desk)
    await _agent_writes(relay, desk, thread_id, "hello")  # Bob becomes a known agent
    produced = await _agent_writes(relay, desk, thread_id, "/s thanks")
    missing = await _agent_writes(relay, desk, thread_id, "/s nope")
    ticket = await latest(relay, ticket_id)
    expected = f"Thanks Ada, Bob here about #{ticket.number}."
    assert [
        (type(r).__name__, messages.chat_of(r), getattr(r, "text", None))
        for r in requests(produced)
    ] == [
        ("SendText", ADA["id"], expected),
        ("SendText", desk.chat_id, expected),
    ]
    async with relay.rt.db.engine.connect() as conn:
        last = (await ticket_store.list_messages(conn, ticket_id))[-1]
    assert (last.direction, last.author_id, last.text) == (Direction.AGENT, BOB["id"], expected)
    [refusal] = requests(missing)
    assert getattr(refusal, "text", None) == "⛔ No snippet named “nope”. Snippets: thanks."
